"""Node configuration from the environment (``BRIGHT_*`` variables); see README "Configuration"."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_DATABASE_URL = "sqlite:///bright.db"


AUTH_MODES = ("required", "open")


def auth_mode(value: str | None) -> str:
    """The access-control mode of ``value`` (``BRIGHT_AUTH``): ``required`` when unset.

    Raises
    ------
    ValueError
        Any other value than ``required`` or ``open``.
    """
    mode = (value or "required").strip().lower()
    if mode not in AUTH_MODES:
        raise ValueError(f"BRIGHT_AUTH={value!r} is not one of {', '.join(AUTH_MODES)}")
    return mode


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
    auth
        Access control (``BRIGHT_AUTH``): ``required`` (the default: writes need an API token, a
        dashboard session or a signed peer request, and reads are filtered by the node's policies)
        or ``open`` (no access control: a caller without credentials acts as the node's manager;
        for the ETSI conformance run and tests that are not about access). See docs/access.md.
    """

    database_url: str = DEFAULT_DATABASE_URL
    context_dir: Path | None = None
    fetch_contexts: bool = False
    max_body_bytes: int = 16 * 1024 * 1024
    node_name: str = "bright"
    temporal_page: int = 10_000
    mqtt_url: str | None = None
    extra: dict[str, str] = field(default_factory=dict)
    auth: str = field(default_factory=lambda: auth_mode(os.environ.get("BRIGHT_AUTH")))

    def __post_init__(self) -> None:
        object.__setattr__(self, "auth", auth_mode(self.auth))

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
            "auth": auth_mode(os.environ.get("BRIGHT_AUTH")),
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
