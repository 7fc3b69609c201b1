"""Node configuration from the environment (``BRIGHT_*`` variables); see README "Configuration"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///bright.db"


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """Settings of one node.

    Attributes
    ----------
    database_url
        SQLAlchemy URL: ``sqlite:///path.db`` (default) or ``postgresql://user@host/db``.
    context_dir
        Directory of cached JSON-LD contexts, files named by URL (``BRIGHT_CONTEXT_DIR``).
    fetch_contexts
        Fetch unknown remote @contexts over HTTP (``BRIGHT_FETCH_CONTEXTS=1``); off by default.
    max_body_bytes
        Largest request body accepted, in bytes (``BRIGHT_MAX_BODY_BYTES``).
    mqtt_url
        Broker to ingest SenML readings from while serving (``BRIGHT_MQTT_URL``,
        ``mqtt://127.0.0.1:1883``); unset: no MQTT ingest.
    temporal_page
        Most attribute instances in one temporal response (``BRIGHT_TEMPORAL_PAGE``); a longer
        history is cut on the time axis and answered 206 with a ``Content-Range``.
    """

    database_url: str = DEFAULT_DATABASE_URL
    context_dir: Path | None = None
    fetch_contexts: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    node_name: str = "bright"
    temporal_page: int = 10_000
    mqtt_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Read the settings from ``BRIGHT_*`` environment variables, then apply ``overrides``."""
        ctx = os.environ.get("BRIGHT_CONTEXT_DIR")
        values: dict[str, object] = {
            "database_url": os.environ.get("BRIGHT_DATABASE_URL", DEFAULT_DATABASE_URL),
            "context_dir": Path(ctx) if ctx else None,
            "fetch_contexts": _flag("BRIGHT_FETCH_CONTEXTS"),
            "max_body_bytes": int(os.environ.get("BRIGHT_MAX_BODY_BYTES", str(16 * 1024 * 1024))),
            "node_name": os.environ.get("BRIGHT_NODE_NAME", "bright"),
            "temporal_page": int(os.environ.get("BRIGHT_TEMPORAL_PAGE", "10000")),
            "mqtt_url": os.environ.get("BRIGHT_MQTT_URL") or None,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
