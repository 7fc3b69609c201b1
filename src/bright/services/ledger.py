"""The B-DLT ledger of a node: identity, signed settlement records, tree heads, peer cosigning, DVPP.

:class:`LedgerNode` runs :mod:`bright.ledger` (pure computations and the SQL store) inside a node:

Identity
    The node's Ed25519 key is created on first start in ``<data dir>/keys`` (directory ``0700``,
    file ``0600``) and loaded afterwards; its ``did:key`` and DID document are published as a
    ``LedgerNode`` entity of the twin. The private key never leaves :class:`NodeIdentity`: no
    response, log line or error message contains it.
Settlement records
    :meth:`LedgerNode.record_settlement` turns a community settlement
    (:func:`bright.services.energy.community_settlement`) into one signed ``settlement`` record per
    member and quarter-hour (Wh and euro-cents as integers; an incomplete interval is not settled)
    and signs a tree head after each interval. Re-recording an interval is idempotent.
Peer cosigning
    A member node checks a head it receives (:meth:`LedgerNode.receive_head`): the signature, the
    operator (pinned on first use unless configured), a same-size conflict with any head it has seen
    (a fork: the evidence, both heads, is stored and the request refused) and the consistency with
    the last head it saw (an RFC 9162 consistency proof, asked for when missing). It answers with
    its cosignature. The operator (:meth:`LedgerNode.request_cosignatures`) asks every peer over HTTP
    and stores the cosignatures with the head. A head is final once ``ceil(quorum x members)``
    members signed or cosigned it (default quorum 2/3).
DVPP
    Members post flexibility offers (device, window, kW, price) to the community's log
    (:meth:`LedgerNode.post_offer`, signed by the member's own node or, custodially, by this node);
    a community need selects offers (:data:`Selector`, by default :func:`merit_order`; the
    community scheduler plugs in here), the activations and their settlement are recorded
    (:meth:`LedgerNode.activate`, :meth:`LedgerNode.settle_activation`), and every member gets a
    statement of what it offered, what was used and what it earned (:meth:`LedgerNode.statement`).

The log, heads, cosignatures and fork evidence live in :class:`bright.ledger.store.LedgerStore`
(tables ``ledger_*``); this module adds an index of the records by kind and member
(``ledger_record_index``, rebuilt from the log when behind), the peers' last cosigned sizes
(``ledger_peers``), the node's pinned settings (``ledger_meta``) and the on-chain anchors
(``ledger_anchors``).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import httpx
import numpy as np
import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    delete,
    func,
    select,
)
from sqlalchemy.engine import make_url

from bright.ledger.heads import (
    DEFAULT_QUORUM,
    Cosignature,
    ForkDetected,
    ForkEvidence,
    HeadError,
    SignedTreeHead,
    cosign,
    finality,
)
from bright.ledger.identity import NodeIdentity, b64url_encode
from bright.ledger.merkle import ConsistencyProof, ProofError
from bright.ledger.records import (
    QUARTER_HOUR_S,
    Activation,
    FlexOffer,
    RecordBody,
    RecordError,
    Settlement,
    SignedRecord,
    cents_from_eur,
    format_timestamp,
    sign_record,
    sign_records,
    wh_from_kwh,
)
from bright.ledger.store import LedgerStore
from bright.ledger.verify import make_bundle
from bright.twin import migrations
from bright.twin.context import BRIGHT_NS
from bright.twin.errors import BadRequestData, NgsiLdError, ResourceNotFound
from bright.twin.vocabulary import bright_context

if TYPE_CHECKING:
    from bright.ledger.anchor import AnchorReceipt, PendingRoot
    from bright.services.energy import SettlementReport
    from bright.twin.service import TwinService

__all__ = [
    "KEY_DIR_NAME",
    "Allocation",
    "CosignRound",
    "FlexNeed",
    "LedgerConfig",
    "LedgerInputError",
    "LedgerNode",
    "OfferState",
    "PeerConflict",
    "PeerOutcome",
    "Selector",
    "SettlementRecording",
    "merit_order",
]

log = logging.getLogger("bright.ledger")

#: Name of the key directory inside the node's data directory.
KEY_DIR_NAME = "keys"
#: Table prefix of the node's log (LedgerStore tables ``ledger_leaves``, ``ledger_heads``...).
LOG_PREFIX = "ledger_"
_MWH_IN_WH = 1_000_000

# --------------------------------------------------------------------------------------------------
# Tables of the service (the log itself is LedgerStore's)
# --------------------------------------------------------------------------------------------------

metadata = MetaData()

index_table = Table(
    "ledger_record_index",
    metadata,
    Column("idx", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=False),
    Column("kind", String(32), nullable=False),
    Column("community", String(200), nullable=False),
    Column("member", String(200), nullable=False),
    Column("key", String(260), nullable=False),  # interval start, offer id, activation id + stage
    Column("start_s", BigInteger, nullable=False),  # interval / window / activation start, Unix s
    Column("end_s", BigInteger, nullable=False),
    Column("author", String(200), nullable=False),
    UniqueConstraint("kind", "community", "member", "key", name="uq_ledger_record_index_key"),
    Index("ix_ledger_record_index_member", "member", "kind"),
    Index("ix_ledger_record_index_start", "kind", "start_s"),
)
peers_table = Table(
    "ledger_peers",
    metadata,
    Column("url", String(500), primary_key=True),
    Column("did", String(200), nullable=True),
    Column("last_size", BigInteger, nullable=True),  # size of the last head the peer cosigned
    Column("last_contact", BigInteger, nullable=True),  # Unix s
)
meta_table = Table(
    "ledger_meta",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)
anchors_table = Table(
    "ledger_anchors",
    metadata,
    Column("community", String(200), primary_key=True),
    Column("interval_s", BigInteger, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("root", LargeBinary(32), nullable=False),
    Column("chain_id", BigInteger, nullable=False),
    Column("contract", String(42), nullable=False),
    Column("tx_hash", String(66), nullable=True),
    Column("block_number", BigInteger, nullable=True),
    Column("anchored_at", BigInteger, nullable=False),
)


def _create_tables(conn: Connection) -> None:
    metadata.create_all(conn, checkfirst=True)


migrations.register(51, "B-DLT ledger: record index, peers, node settings, anchors", _create_tables)


# --------------------------------------------------------------------------------------------------
# Errors, configuration, results
# --------------------------------------------------------------------------------------------------


class LedgerInputError(BadRequestData, ValueError):
    """A request to the ledger is invalid; the message names the record, member or field."""


class PeerConflict(NgsiLdError, ValueError):
    """A head this node was asked to cosign conflicts with what it has seen (HTTP 409).

    ``extra`` carries ``previousSize`` when a consistency proof is needed, or ``fork`` (the
    evidence with both heads) when the head forks the log.
    """

    kind, status, title = "Conflict", 409, "The head conflicts with the heads this node has seen"


class PeerRefused(NgsiLdError, ValueError):
    """This node does not witness heads of that operator (HTTP 403)."""

    kind, status, title = "Forbidden", 403, "This node does not cosign heads of that operator"


def _parse_fraction(value: Any, what: str) -> Fraction:
    try:
        q = Fraction(str(value)) if isinstance(value, float) else Fraction(value)
    except (ValueError, TypeError, ZeroDivisionError):
        raise LedgerInputError(f"{what} {value!r} is not a fraction (e.g. 2/3)") from None
    if not 0 < q <= 1:
        raise LedgerInputError(f"{what} {value!r} must be in (0, 1]")
    return q


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(p.strip() for p in (text or "").replace(";", ",").split(",") if p.strip())


def default_data_dir(database_url: str, node_name: str = "bright") -> Path:
    """The node's data directory when none is configured.

    ``<dir of the SQLite file>/<file stem>-data`` for a SQLite file, else
    ``$XDG_DATA_HOME/bright/<node name>`` (``~/.local/share/bright/<node name>``).

    Parameters
    ----------
    database_url : str
        The node's database URL.
    node_name : str
        The node's name (``BRIGHT_NODE_NAME``).
    """
    url = make_url(database_url)
    if url.drivername.startswith("sqlite") and url.database and url.database != ":memory:":
        db = Path(url.database).expanduser()
        return db.parent / f"{db.stem}-data"
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "bright" / node_name


@dataclass(frozen=True)
class LedgerConfig:
    """How a node takes part in its community's ledger.

    Attributes
    ----------
    data_dir : Path
        The node's data directory; the key lives in ``data_dir / "keys"``.
    community : str or None
        Identifier of the community whose log this node operates (pinned in the database on first
        start; default: the only ``EnergyCommunity`` of the twin, else ``urn:bright:ledger:<node>``).
    quorum : Fraction
        Fraction of members whose signatures make a head final (default 2/3).
    members : tuple of str
        ``did:key`` of the community members counted for finality; by default this node and every
        peer that has cosigned (no finality while none has).
    peers : tuple of str
        Base URLs (``http://host:port``) of the peer nodes asked to cosign this node's heads.
    operators : tuple of str
        ``did:key`` of the log operators whose heads this node cosigns; empty: the first operator
        seen for a community is pinned (trust on first use).
    peer_timeout_s : float
        HTTP timeout of a cosigning request, s.
    """

    data_dir: Path
    community: str | None = None
    quorum: Fraction = DEFAULT_QUORUM
    members: tuple[str, ...] = ()
    peers: tuple[str, ...] = ()
    operators: tuple[str, ...] = ()
    peer_timeout_s: float = 5.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir))
        if not isinstance(self.quorum, Fraction):
            object.__setattr__(self, "quorum", _parse_fraction(self.quorum, "quorum"))
        elif not 0 < self.quorum <= 1:
            raise LedgerInputError(f"quorum {self.quorum} must be in (0, 1]")
        object.__setattr__(self, "peers", tuple(str(u).rstrip("/") for u in self.peers))
        object.__setattr__(self, "members", tuple(self.members))
        object.__setattr__(self, "operators", tuple(self.operators))
        if not self.peer_timeout_s > 0:
            raise LedgerInputError(f"peer_timeout_s must be > 0, got {self.peer_timeout_s}")

    @classmethod
    def from_settings(cls, settings: Any = None, **overrides: Any) -> LedgerConfig:
        """Read the configuration from ``settings.extra`` and the environment.

        ``BRIGHT_DATA_DIR``, ``BRIGHT_LEDGER_COMMUNITY``, ``BRIGHT_LEDGER_QUORUM`` (``2/3``),
        ``BRIGHT_LEDGER_MEMBERS`` and ``BRIGHT_LEDGER_OPERATORS`` (comma-separated DIDs),
        ``BRIGHT_LEDGER_PEERS`` (comma-separated URLs), ``BRIGHT_LEDGER_PEER_TIMEOUT_S``;
        ``settings.extra`` keys are the same names in lower case without the ``BRIGHT_`` prefix
        (``data_dir``, ``ledger_peers``...). Keyword overrides win.
        """
        extra: Mapping[str, str] = getattr(settings, "extra", None) or {}

        def pick(name: str) -> str | None:
            return extra.get(name) or os.environ.get(f"BRIGHT_{name.upper()}") or None

        data_dir = pick("data_dir")
        database_url = getattr(settings, "database_url", None) or "sqlite:///bright.db"
        values: dict[str, Any] = {
            "data_dir": Path(data_dir)
            if data_dir
            else default_data_dir(database_url, getattr(settings, "node_name", "bright")),
            "community": pick("ledger_community"),
            "members": _split(pick("ledger_members")),
            "peers": tuple(u.rstrip("/") for u in _split(pick("ledger_peers"))),
            "operators": _split(pick("ledger_operators")),
        }
        quorum = pick("ledger_quorum")
        if quorum:
            values["quorum"] = _parse_fraction(quorum, "BRIGHT_LEDGER_QUORUM")
        timeout = pick("ledger_peer_timeout_s")
        if timeout:
            values["peer_timeout_s"] = float(timeout)
        values.update(overrides)
        return cls(**values)

    @property
    def key_dir(self) -> Path:
        """Directory of the node's private key (created ``0700``)."""
        return self.data_dir / KEY_DIR_NAME


@dataclass(frozen=True)
class SettlementRecording:
    """What :meth:`LedgerNode.record_settlement` appended.

    Attributes
    ----------
    community : str
        The community.
    intervals : int
        Intervals with at least one new record (one tree head each).
    records : int
        Settlement records appended (one per member and interval).
    skipped_existing : int
        Member-intervals already in the log with the same figures.
    conflicting : tuple of str
        Member-intervals already in the log with *different* figures (not appended; a correction
        needs its own record kind).
    incomplete : int
        Member-intervals left unsettled because a reading or price was missing (NaN).
    first_index, last_index : int or None
        Leaf indices of the first and last appended records.
    head : SignedTreeHead or None
        The last head signed.
    """

    community: str
    intervals: int
    records: int
    skipped_existing: int
    conflicting: tuple[str, ...]
    incomplete: int
    first_index: int | None
    last_index: int | None
    head: SignedTreeHead | None

    def to_json(self) -> dict[str, Any]:
        """JSON summary (the head without signatures' bytes decoded)."""
        return {
            "community": self.community,
            "intervals": self.intervals,
            "records": self.records,
            "skippedExisting": self.skipped_existing,
            "conflicting": list(self.conflicting),
            "incomplete": self.incomplete,
            "firstIndex": self.first_index,
            "lastIndex": self.last_index,
            "head": None if self.head is None else self.head.to_json(),
        }


@dataclass(frozen=True)
class PeerOutcome:
    """What one peer answered to a cosigning request.

    Attributes
    ----------
    url : str
        The peer's base URL.
    status : {"cosigned", "fork", "refused", "unreachable"}
        Outcome.
    did : str or None
        The peer's DID when it answered with a cosignature.
    detail : str
        Human-readable detail (the peer's ProblemDetails ``detail`` on refusal).
    """

    url: str
    status: Literal["cosigned", "fork", "refused", "unreachable"]
    did: str | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        """JSON object."""
        return {"url": self.url, "status": self.status, "did": self.did, "detail": self.detail}


@dataclass(frozen=True)
class CosignRound:
    """A head after asking the peers to cosign it.

    Attributes
    ----------
    head : SignedTreeHead
        The head with every cosignature collected so far.
    outcomes : tuple of PeerOutcome
        One per peer asked.
    """

    head: SignedTreeHead
    outcomes: tuple[PeerOutcome, ...]


@dataclass(frozen=True)
class FlexNeed:
    """A community's need for flexibility over a period.

    Attributes
    ----------
    start, end : datetime
        Period ``[start, end)``, timezone-aware, on quarter-hour boundaries.
    direction : {"up", "down"}
        ``up``: more injection or less offtake; ``down``: the reverse.
    power_kw : float
        Power needed over the whole period, kW (> 0).
    max_price_eur_per_kwh : float or None
        Highest price the community pays for activated energy, EUR/kWh (None: any).
    need_id : str
        Identifier of the need (a URN; generated when empty).
    """

    start: datetime
    end: datetime
    direction: Literal["up", "down"]
    power_kw: float
    max_price_eur_per_kwh: float | None = None
    need_id: str = ""

    def __post_init__(self) -> None:
        for name in ("start", "end"):
            moment = getattr(self, name)
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise LedgerInputError(f"need {name} must be a timezone-aware date-time, got {moment!r}")
            if int(moment.timestamp()) % QUARTER_HOUR_S or moment.microsecond:
                raise LedgerInputError(f"need {name} {moment.isoformat()} is not on a quarter-hour boundary")
        if self.end <= self.start:
            raise LedgerInputError("need end must be after its start")
        if self.direction not in ("up", "down"):
            raise LedgerInputError(f"need direction must be 'up' or 'down', got {self.direction!r}")
        if not (
            isinstance(self.power_kw, int | float) and math.isfinite(self.power_kw) and self.power_kw > 0
        ):
            raise LedgerInputError(f"need power_kw must be a positive number, got {self.power_kw!r}")
        if self.max_price_eur_per_kwh is not None and not (
            math.isfinite(self.max_price_eur_per_kwh) and self.max_price_eur_per_kwh >= 0
        ):
            raise LedgerInputError(
                f"need max_price_eur_per_kwh must be >= 0, got {self.max_price_eur_per_kwh!r}"
            )
        if not self.need_id:
            object.__setattr__(self, "need_id", f"urn:bright:need:{uuid.uuid4()}")

    @property
    def power_w(self) -> int:
        """Needed power in whole W."""
        return round(self.power_kw * 1000)


@dataclass(frozen=True)
class OfferState:
    """A flexibility offer in the log and how much of it is still free over a need's period.

    Attributes
    ----------
    index : int
        Leaf index of the offer record.
    offer : FlexOffer
        The offer.
    author : str
        DID that signed it.
    available_w : int
        Power still free over the whole need period, W (offer power minus overlapping activations).
    """

    index: int
    offer: FlexOffer
    author: str
    available_w: int


@dataclass(frozen=True)
class Allocation:
    """An offer selected for a need, and the power activated, W."""

    offer: OfferState
    power_w: int


#: A selection rule: the need and the offers that could serve it -> the allocations (power per offer).
#: The community scheduler (flexibility issue) plugs in here instead of :func:`merit_order`.
Selector = Callable[[FlexNeed, Sequence[OfferState]], Sequence[Allocation]]


def merit_order(need: FlexNeed, offers: Sequence[OfferState]) -> list[Allocation]:
    """Select offers cheapest first until the need is covered.

    Offers are sorted by asked price (euro-cents per MWh), then by position in the log (earlier
    first, so equal prices are served first come, first served); each takes
    ``min(available, still needed)``. The need may stay partly uncovered.

    Parameters
    ----------
    need : FlexNeed
        The community's need.
    offers : sequence of OfferState
        Offers of the right direction whose window covers the need period and whose price is
        acceptable, with the power still available.

    Returns
    -------
    list of Allocation
        In merit order; the powers sum to at most ``need.power_w``.

    Examples
    --------
    A 5 kW need and offers of 3 kW at 15 c/kWh, 4 kW at 12 c/kWh: the 12 c offer gives 4 kW, the
    15 c offer the remaining 1 kW.
    """
    remaining = need.power_w
    chosen: list[Allocation] = []
    for state in sorted(offers, key=lambda s: (s.offer.price_cents_per_mwh, s.index)):
        if remaining <= 0:
            break
        take = min(state.available_w, remaining)
        if take > 0:
            chosen.append(Allocation(state, take))
            remaining -= take
    return chosen


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


def _ts(moment: datetime) -> int:
    return int(moment.timestamp())


def _energy_wh(power_w: int, start: datetime, end: datetime) -> int:
    """Energy of a constant power over a period, whole Wh (rounded half to even)."""
    return round(Fraction(power_w * (_ts(end) - _ts(start)), 3600))


def _amount_cents(energy_wh: int, price_cents_per_mwh: int) -> int:
    """Remuneration of an energy at a price: Wh x c/MWh / 1e6, whole cents (half to even)."""
    return round(Fraction(energy_wh * price_cents_per_mwh, _MWH_IN_WH))


def _parse_instant(value: Any, what: str) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise LedgerInputError(f"{what} {value!r} is not an RFC 3339 date-time") from None
    else:
        raise LedgerInputError(f"{what} must be an RFC 3339 date-time, got {value!r}")
    if moment.tzinfo is None:
        raise LedgerInputError(f"{what} {value!r} needs a time zone (e.g. Z or +02:00)")
    return _utc(moment)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise LedgerInputError(f"{what} must be a finite number, got {value!r}")
    return float(value)


# --------------------------------------------------------------------------------------------------
# The node
# --------------------------------------------------------------------------------------------------


class LedgerNode:
    """The ledger of one node: its identity, its community's log, its peers, its DVPP.

    Parameters
    ----------
    engine : sqlalchemy.Engine
        The node's database.
    config : LedgerConfig
        Data directory, community, quorum, members, peers.
    twin : TwinService, optional
        The node's twin: the identity is published there, and DVPP offers are checked against the
        members and devices it knows.
    client : httpx.Client, optional
        HTTP client for the peers (a new one with ``config.peer_timeout_s`` by default).
    selector : Selector, optional
        Selection of offers for a need (default :func:`merit_order`).

    Raises
    ------
    IdentityError
        If the key file exists but is unreadable or accessible by group or others.
    LedgerIntegrityError
        If the stored log does not match its signed heads.
    """

    def __init__(
        self,
        engine: Engine,
        config: LedgerConfig,
        *,
        twin: TwinService | None = None,
        client: httpx.Client | None = None,
        selector: Selector | None = None,
    ) -> None:
        self.engine = engine
        self.config = config
        self.twin = twin
        self._lock = threading.RLock()
        self.__identity = NodeIdentity.load_or_create(config.key_dir)
        self.did = self.__identity.did
        migrations.migrate(engine)
        self.store = LedgerStore(engine, LOG_PREFIX)
        self._pinned: str | None = self._check_pinned()
        self._candidate: str | None = None
        self._client = client
        self.selector: Selector = selector or merit_order
        self._reindex()

    @classmethod
    def open(cls, settings: Any, *, twin: TwinService | None = None, **overrides: Any) -> LedgerNode:
        """Open the ledger of a node from its settings (see :meth:`LedgerConfig.from_settings`).

        Parameters
        ----------
        settings : bright.config.Settings
            The node's settings.
        twin : TwinService, optional
            The node's twin (its engine is used); a new engine on ``settings.database_url`` otherwise.
        **overrides
            Fields of :class:`LedgerConfig`.
        """
        config = LedgerConfig.from_settings(settings, **overrides)
        if twin is not None:
            engine = twin.engine
        else:
            from bright.twin.db import make_engine

            engine = make_engine(settings.database_url)
        return cls(engine, config, twin=twin)

    def __repr__(self) -> str:
        return f"LedgerNode(did={self.did!r}, community={self.community!r}, size={self.store.size})"

    # -- settings ---------------------------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                select(meta_table.c.value).where(meta_table.c.key == key)
            ).scalar_one_or_none()
        return None if value is None else str(value)

    def _set_meta(self, key: str, value: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(delete(meta_table).where(meta_table.c.key == key))
            conn.execute(meta_table.insert().values(key=key, value=value))

    def _check_pinned(self) -> str | None:
        pinned = self._meta("community")
        wanted = self.config.community
        if pinned is not None and wanted and wanted != pinned:
            raise LedgerInputError(
                f"this node's log is pinned to community {pinned!r}; it cannot operate {wanted!r} "
                "(use another database)"
            )
        return pinned

    @property
    def community(self) -> str:
        """The community whose log this node operates.

        Pinned in the database when the first record or head is written; until then the configured
        one, else the only ``EnergyCommunity`` of the twin, else ``urn:bright:ledger:<DID tail>``.
        """
        if self._pinned is not None:
            return self._pinned
        if self._candidate is None:
            self._candidate = self.config.community or self._twin_community()
        return self._candidate or f"urn:bright:ledger:{self.did[-12:]}"

    def _pin(self) -> str:
        """Pin the community before the first write (a log never changes community)."""
        if self._pinned is None:
            community = self.community
            self._set_meta("community", community)
            self._pinned = community
            if self.twin is not None:
                self.publish_identity()  # the entity names the community now pinned
        return self._pinned

    def _twin_community(self) -> str | None:
        if self.twin is None:
            return None
        from bright.services.community import list_communities

        found = list_communities(self.twin)
        return found[0].id if len(found) == 1 else None

    @property
    def client(self) -> httpx.Client:
        """HTTP client used to reach the peers."""
        if self._client is None:
            self._client = httpx.Client(timeout=self.config.peer_timeout_s)
        return self._client

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            self._client.close()

    # -- identity ---------------------------------------------------------------------------------

    def identity_document(self) -> dict[str, Any]:
        """The node's public identity: DID, DID document, community, role, known peers.

        Returns
        -------
        dict
            ``did``, ``publicKeyMultibase``, ``didDocument``, ``community``, ``operator`` (True: this
            node signs the community's heads), ``quorum``, ``members``, ``peers``.
        """
        public = self.__identity.public
        return {
            "did": self.did,
            "publicKeyMultibase": public.multibase,
            "didDocument": public.did_document(),
            "community": self.community,
            "logSize": self.store.size,
            "quorum": str(self.config.quorum),
            "members": sorted(self.members()),
            "peers": [p["url"] for p in self.peers()],
        }

    def identity_entity(self) -> dict[str, Any]:
        """The ``LedgerNode`` NGSI-LD entity publishing the DID and DID document (no private key)."""
        public = self.__identity.public
        entity: dict[str, Any] = {
            "id": f"urn:ngsi-ld:LedgerNode:{public.multibase}",
            "type": "LedgerNode",
            "name": {"type": "Property", "value": f"Ledger identity of node {self.did}"},
            BRIGHT_NS + "did": {"type": "Property", "value": self.did},
            BRIGHT_NS + "publicKeyMultibase": {"type": "Property", "value": public.multibase},
            BRIGHT_NS + "didDocument": {"type": "JsonProperty", "json": public.did_document()},
            BRIGHT_NS + "ledgerCommunity": {"type": "Property", "value": self.community},
        }
        if self.community.startswith("urn:ngsi-ld:"):
            entity[BRIGHT_NS + "refEnergyCommunity"] = {"type": "Relationship", "object": self.community}
        return entity

    def publish_identity(self, twin: TwinService | None = None, *, tenant: str = "") -> str:
        """Upsert the identity entity into the twin.

        Parameters
        ----------
        twin : TwinService, optional
            The twin (default: the node's).
        tenant : str, optional
            NGSI-LD tenant.

        Returns
        -------
        str
            Entity id.
        """
        target = twin or self.twin
        entity = self.identity_entity()
        if target is None:
            return str(entity["id"])
        res = target.batch_upsert(tenant, [entity], bright_context())
        if res["errors"]:
            raise LedgerInputError(f"identity entity rejected: {res['errors'][0]['error'].get('detail')}")
        return str(entity["id"])

    # -- members and peers ------------------------------------------------------------------------

    def peers(self) -> list[dict[str, Any]]:
        """Configured peers with what is known of them (DID, last cosigned size)."""
        with self.engine.connect() as conn:
            rows = {r.url: r for r in conn.execute(select(peers_table))}
        return [
            {
                "url": url,
                "did": rows[url].did if url in rows else None,
                "lastCosignedSize": rows[url].last_size if url in rows else None,
            }
            for url in self.config.peers
        ]

    def members(self) -> set[str]:
        """DIDs counted for finality: the configured members, else this node and the peers that have
        cosigned its heads (empty, and finality undefined, while no peer has)."""
        if self.config.members:
            return set(self.config.members)
        with self.engine.connect() as conn:
            dids = (
                conn.execute(select(peers_table.c.did).where(peers_table.c.did.is_not(None))).scalars().all()
            )
        return {self.did, *dids} if dids else set()

    def _remember_peer(self, url: str, did: str | None, size: int | None) -> None:
        with self.engine.begin() as conn:
            old = conn.execute(select(peers_table).where(peers_table.c.url == url)).first()
            conn.execute(delete(peers_table).where(peers_table.c.url == url))
            conn.execute(
                peers_table.insert().values(
                    url=url,
                    did=did or (old.did if old else None),
                    last_size=size if size is not None else (old.last_size if old else None),
                    last_contact=int(datetime.now(UTC).timestamp()),
                )
            )

    # -- records ----------------------------------------------------------------------------------

    def _index_row(self, index: int, signed: SignedRecord, body: RecordBody | None = None) -> dict[str, Any]:
        """The index row of a record (``body``: its typed body when at hand, saving a re-parse)."""
        body = signed.record() if body is None else body
        if isinstance(body, Settlement):
            key = format_timestamp(body.interval_start)
            start = _ts(body.interval_start)
            end = start + body.resolution_s
        elif isinstance(body, FlexOffer):
            key, start, end = body.offer_id, _ts(body.window_start), _ts(body.window_end)
        elif isinstance(body, Activation):
            key, start, end = f"{body.activation_id}#{index}", _ts(body.start), _ts(body.end)
        else:  # pragma: no cover - RECORD_TYPES has three kinds
            raise LedgerInputError(f"unknown record kind {signed.kind!r}")
        return {
            "idx": index,
            "kind": signed.kind,
            "community": str(signed.body["community"]),
            "member": str(signed.body["member"]),
            "key": key,
            "start_s": start,
            "end_s": end,
            "author": signed.author,
        }

    def _reindex(self) -> None:
        """Index the log's records the index does not hold yet (after a crash between the two)."""
        with self.engine.connect() as conn:
            top = conn.execute(select(func.max(index_table.c.idx))).scalar_one_or_none()
        start = 0 if top is None else int(top) + 1
        if start >= self.store.size:
            return
        rows = [
            self._index_row(i, SignedRecord.from_bytes(data))
            for i, data in enumerate(self.store.leaves(start, self.store.size), start)
        ]
        with self.engine.begin() as conn:
            conn.execute(index_table.insert(), rows)
        log.info("ledger index caught up with %d record(s) from the log", len(rows))

    def _append(self, signed: Sequence[SignedRecord], bodies: Sequence[RecordBody] | None = None) -> range:
        """Append signed records and index them (caller holds the lock); ``bodies`` are their typed
        bodies when the caller has them."""
        self._pin()
        indices = self.store.append([s.to_bytes() for s in signed])
        typed: Sequence[RecordBody | None] = bodies if bodies is not None else [None] * len(signed)
        rows = [self._index_row(i, s, b) for i, s, b in zip(indices, signed, typed, strict=True)]
        if rows:
            with self.engine.begin() as conn:
                conn.execute(index_table.insert(), rows)
        return indices

    def append_records(
        self, records: Sequence[RecordBody | SignedRecord], *, sign_head: bool = True
    ) -> range:
        """Append records to the community's log.

        Parameters
        ----------
        records : sequence of RecordBody or SignedRecord
            Bodies are signed by this node; signed records (from a member's node) are verified first.
        sign_head : bool, optional
            Sign a tree head over the new records (default True).

        Returns
        -------
        range
            Leaf indices given to the records.

        Raises
        ------
        LedgerInputError
            A signature that does not verify, a record of another community, or a record already in
            the log (same kind, member and key).
        """
        signed: list[SignedRecord] = []
        # Bodies are signed here, on both cores; records signed elsewhere are verified.
        fresh = iter(sign_records([r for r in records if not isinstance(r, SignedRecord)], self.__identity))
        for item in records:
            record = item if isinstance(item, SignedRecord) else next(fresh)
            if record is item and not record.verify():
                raise LedgerInputError(
                    f"{record.kind} record by {record.author}: the signature does not verify"
                )
            if record.body.get("community") != self.community:
                raise LedgerInputError(
                    f"{record.kind} record is for community {record.body.get('community')!r}; "
                    f"this node's log is {self.community!r}"
                )
            signed.append(record)
        with self._lock:
            keys = {(r["kind"], r["member"], r["key"]) for r in (self._index_row(-1, s) for s in signed)}
            if len(keys) != len(signed):
                raise LedgerInputError("the batch holds the same record twice")
            clash = self._existing_keys(keys)
            if clash:
                kind, member, key = sorted(clash)[0]
                raise LedgerInputError(f"{kind} record {key!r} of member {member!r} is already in the log")
            indices = self._append(signed)
            if sign_head and signed:
                self.sign_head()
        return indices

    def _existing_keys(self, keys: Iterable[tuple[str, str, str]]) -> set[tuple[str, str, str]]:
        wanted = list(keys)
        if not wanted:
            return set()
        t = index_table
        found: set[tuple[str, str, str]] = set()
        with self.engine.connect() as conn:
            for kind in sorted({k for k, _, _ in wanted}):
                keys_of_kind = sorted({key for k, _, key in wanted if k == kind})
                for chunk in range(0, len(keys_of_kind), 500):
                    part = keys_of_kind[chunk : chunk + 500]
                    for row in conn.execute(
                        select(t.c.kind, t.c.member, t.c.key).where(
                            t.c.kind == kind, t.c.community == self.community, t.c.key.in_(part)
                        )
                    ):
                        found.add((row.kind, row.member, row.key))
        return found & set(wanted)

    def record(self, index: int) -> SignedRecord:
        """The signed record at a leaf index.

        Raises
        ------
        ResourceNotFound
            If the log has no record at that index.
        """
        if not isinstance(index, int) or not 0 <= index < self.store.size:
            raise ResourceNotFound(f"the log has no record at index {index} (size {self.store.size})")
        return SignedRecord.from_bytes(self.store.leaf(index))

    # -- settlement -------------------------------------------------------------------------------

    def record_settlement(self, report: SettlementReport) -> SettlementRecording:
        """Append one signed settlement record per member and interval, one tree head per interval.

        The amounts are the money the member pays the community for its shared offtake minus what it
        receives for its shared injection (``community_purchase_eur - community_sales_eur``), in
        euro-cents; energies in Wh. Intervals with a missing value are not settled (counted in
        ``incomplete``). A member-interval already in the log with the same figures is skipped; with
        different figures it is reported in ``conflicting`` and not appended.

        Parameters
        ----------
        report : bright.services.energy.SettlementReport
            The settlement of the community this node operates.

        Returns
        -------
        SettlementRecording

        Raises
        ------
        LedgerInputError
            If the report is of another community or its resolution is not whole seconds.
        """
        run = report.sharing
        community = run.community
        if community.id != self.community:
            raise LedgerInputError(f"settlement of {community.id}; this node's log is {self.community!r}")
        step_s = int(community.resolution.total_seconds())
        if step_s <= 0 or community.resolution != pd.Timedelta(seconds=step_s):
            raise LedgerInputError(f"resolution {community.resolution} is not whole seconds")
        r = run.result
        amounts = np.asarray(report.settlement.community_purchase_eur) - np.asarray(
            report.settlement.community_sales_eur
        )
        values = np.stack(
            [r.offtake_kwh, r.injection_kwh, r.shared_offtake_kwh, r.shared_injection_kwh, amounts], axis=-1
        )
        complete: np.ndarray = np.asarray(np.isfinite(values).all(axis=-1), dtype=bool)
        members = community.member_ids
        starts = [t.to_pydatetime() for t in pd.DatetimeIndex(run.index).tz_convert("UTC")]
        candidates: list[tuple[int, Settlement]] = []
        for t, start in enumerate(starts):
            for m, member in enumerate(members):
                if not complete[t, m]:
                    continue
                row = values[t, m]
                candidates.append(
                    (
                        t,
                        Settlement(
                            self.community,
                            member,
                            start,
                            offtake_wh=wh_from_kwh(row[0]),
                            injection_wh=wh_from_kwh(row[1]),
                            shared_offtake_wh=wh_from_kwh(row[2]),
                            shared_injection_wh=wh_from_kwh(row[3]),
                            amount_cents=cents_from_eur(row[4]),
                            resolution_s=step_s,
                        ),
                    )
                )
        incomplete = int((~complete).sum())
        with self._lock:
            existing = self._existing_settlements({format_timestamp(s) for s in starts})
            skipped, conflicting = 0, []
            by_interval: dict[int, list[Settlement]] = {}
            for t, body in candidates:
                key = (body.member, format_timestamp(body.interval_start))
                if key in existing:
                    if existing[key] == body:
                        skipped += 1
                    else:
                        conflicting.append(f"{body.member} at {key[1]}")
                    continue
                by_interval.setdefault(t, []).append(body)
            bodies = [body for t in sorted(by_interval) for body in by_interval[t]]
            signed = sign_records(bodies, self.__identity)
            indices = self._append(signed, bodies) if signed else range(0)
            heads: list[SignedTreeHead] = []
            size = indices.start
            for t in sorted(by_interval):
                size += len(by_interval[t])
                heads.append(
                    SignedTreeHead.for_log(
                        self.store.log, self.__identity, community=self.community, size=size
                    )
                )
            if heads:
                self.store.add_heads(heads, check_signatures=False)
        return SettlementRecording(
            community=self.community,
            intervals=len(by_interval),
            records=len(signed),
            skipped_existing=skipped,
            conflicting=tuple(conflicting),
            incomplete=incomplete,
            first_index=indices.start if signed else None,
            last_index=indices.stop - 1 if signed else None,
            head=heads[-1] if heads else None,
        )

    def _existing_settlements(self, keys: set[str]) -> dict[tuple[str, str], Settlement]:
        t = index_table
        out: dict[tuple[str, str], Settlement] = {}
        wanted = sorted(keys)
        with self.engine.connect() as conn:
            idxs: list[int] = []
            for chunk in range(0, len(wanted), 500):
                idxs += (
                    conn.execute(
                        select(t.c.idx).where(
                            t.c.kind == "settlement",
                            t.c.community == self.community,
                            t.c.key.in_(wanted[chunk : chunk + 500]),
                        )
                    )
                    .scalars()
                    .all()
                )
        for idx in idxs:
            body = SignedRecord.from_bytes(self.store.leaf(int(idx))).record()
            assert isinstance(body, Settlement)
            out[(body.member, format_timestamp(body.interval_start))] = body
        return out

    def settle(
        self,
        twin: TwinService | None = None,
        *,
        start: Any = None,
        end: Any = None,
        tenant: str = "",
        **options: Any,
    ) -> SettlementRecording:
        """Settle the community over a period (:func:`bright.services.energy.community_settlement`)
        and record it.

        Parameters
        ----------
        twin : TwinService, optional
            The twin holding the community (default: the node's).
        start, end : datetime or ISO 8601 str, optional
            Period ``[start, end)``; a date or naive date-time is read in Europe/Brussels; default
            the span of the readings.
        tenant : str, optional
            NGSI-LD tenant of the community.
        **options
            ``method``, ``pricing`` and the price overrides of ``community_settlement``.
        """
        from bright.services.community import load_community, parse_instant
        from bright.services.energy import community_settlement
        from bright.twin.series import SeriesStore

        target = twin or self.twin
        if target is None:
            raise LedgerInputError("no twin to read the community's metering from")
        community = load_community(target, SeriesStore(target.engine), self.community, tenant=tenant)
        bounds = {
            name: None if value is None else parse_instant(value, what=name)
            for name, value in (("start", start), ("end", end))
        }
        report = community_settlement(community, start=bounds["start"], end=bounds["end"], **options)
        return self.record_settlement(report)

    # -- heads ------------------------------------------------------------------------------------

    def sign_head(self) -> SignedTreeHead:
        """Sign and store a tree head over the whole log (the current head if nothing changed)."""
        with self._lock:
            self._pin()
            latest = self.store.latest_head()
            if latest is not None and latest.size == self.store.size and latest.community == self.community:
                return latest
            head = SignedTreeHead.for_log(self.store.log, self.__identity, community=self.community)
            self.store.add_head(head, check_signatures=False)
            return head

    def latest_head(self) -> SignedTreeHead | None:
        """The largest local head, with its cosignatures."""
        return self.store.latest_head()

    def head(self, size: int) -> SignedTreeHead:
        """The local head of a size (latest timestamp), with its cosignatures.

        Raises
        ------
        ResourceNotFound
            If no head of that size was signed.
        """
        found = self.store.heads(size=size, local=True) if 0 <= size < 2**53 else []
        if not found:
            raise ResourceNotFound(f"no signed head of size {size} in the log of {self.community}")
        return found[-1]

    def heads(self, *, limit: int = 20, offset: int = 0) -> list[SignedTreeHead]:
        """Local heads, largest first.

        Parameters
        ----------
        limit, offset : int
            Page (limit 1..1000).
        """
        if not 1 <= limit <= 1000 or not 0 <= offset < 2**53:
            raise LedgerInputError(f"limit must be within 1..1000 and offset >= 0, got {limit}, {offset}")
        t = self.store.heads_table
        with self.engine.connect() as conn:
            sizes = (
                conn.execute(
                    select(t.c.size)
                    .where(t.c.local.is_(True), t.c.community == self.community)
                    .group_by(t.c.size)
                    .order_by(t.c.size.desc())
                    .limit(limit)
                    .offset(offset)
                )
                .scalars()
                .all()
            )
        out: list[SignedTreeHead] = []
        for size in sizes:
            out.extend(reversed(self.store.heads(size=int(size), local=True, community=self.community)))
        return out

    def head_json(self, head: SignedTreeHead) -> dict[str, Any]:
        """A head as JSON with its finality status (``finality``: signers, required, final)."""
        body = head.to_json()
        members = self.members()
        status = finality(head, members, self.config.quorum) if members else None
        body["finality"] = (
            None
            if status is None
            else {
                "final": status.final,
                "signers": sorted(status.signers),
                "required": status.required,
                "members": status.member_count,
                "quorum": str(self.config.quorum),
            }
        )
        return body

    def is_final(self, head: SignedTreeHead) -> bool:
        """True once the members' quorum signed or cosigned the head."""
        members = self.members()
        return bool(members) and finality(head, members, self.config.quorum).final

    def proof_bundle(self, index: int, *, size: int | None = None) -> dict[str, Any]:
        """A proof bundle for one record, verifiable offline (``bright ledger verify``).

        Parameters
        ----------
        index : int
            Leaf index of the record.
        size : int, optional
            Size of the head to prove against (default: the latest head covering the record).

        Raises
        ------
        ResourceNotFound
            No such record, or no signed head covers it yet.
        """
        with self._lock:
            record = self.record(index)
            if size is None:
                latest = self.store.latest_head()
                if latest is None or latest.size <= index:
                    raise ResourceNotFound(f"record {index} is not covered by a signed head yet")
                head = latest
            else:
                if size <= index:
                    raise LedgerInputError(f"a head of size {size} does not cover record {index}")
                head = self.head(size)
            members = self.members()
            return make_bundle(
                self.store.log,
                head,
                {index: record.to_bytes()},
                members=sorted(members) if members else None,
                quorum=self.config.quorum,
            )

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """RFC 9162 consistency proof between two sizes of the log."""
        with self._lock:
            try:
                return self.store.log.consistency_proof(old_size, new_size)
            except ProofError as exc:
                raise LedgerInputError(str(exc)) from None

    # -- cosigning: the witness side --------------------------------------------------------------

    def receive_head(self, head: SignedTreeHead, proof: ConsistencyProof | None = None) -> Cosignature:
        """Check a head of another node's log and cosign it.

        Parameters
        ----------
        head : SignedTreeHead
            The operator's head (its cosignatures are ignored).
        proof : ConsistencyProof, optional
            Consistency proof between the last head this node saw of that community and ``head``.

        Returns
        -------
        Cosignature
            This node's cosignature (the head is stored with it).

        Raises
        ------
        LedgerInputError
            Invalid signature, or a head of this node's own log.
        PeerRefused
            The head's signer is not the operator this node witnesses for that community.
        PeerConflict
            A fork (same size, another root: the evidence is stored and returned in ``fork``), a missing
            consistency proof (``previousSize`` says from which size) or a failed one.
        """
        head = head.without_cosignatures()
        if not head.verify_signature():
            raise LedgerInputError(f"invalid signature on {head.describe()}")
        if head.signer == self.did:
            raise LedgerInputError("this node does not cosign its own heads")
        with self._lock:
            self._check_operator(head)
            previous = self._last_seen(head.community)
            same_size = self.store.heads(
                size=head.size, community=head.community, local=None, with_cosignatures=False
            )
            if any(other.root != head.root for other in same_size):
                try:  # the store keeps the evidence (both heads) and raises
                    self.store.add_head(head, local=False, check_signatures=False)
                except ForkDetected as fork:
                    log.warning("fork alarm: %s", fork.evidence.describe())
                    raise PeerConflict(fork.evidence.describe(), fork=fork.evidence.to_json()) from None
            if previous is not None and previous.size != head.size:
                wanted = (min(previous.size, head.size), max(previous.size, head.size))
                if proof is None or (proof.old_size, proof.new_size) != wanted:
                    raise PeerConflict(
                        f"a consistency proof from size {wanted[0]} to {wanted[1]} is needed",
                        previousSize=previous.size,
                    )
            try:
                cosignature = cosign(head, self.__identity, previous=previous, proof=proof)
            except ForkDetected as fork:  # pragma: no cover - add_head caught same-size conflicts
                raise PeerConflict(fork.evidence.describe(), fork=fork.evidence.to_json()) from None
            except HeadError as exc:
                log.warning("refused to cosign %s: %s", head.describe(), exc)
                raise PeerConflict(str(exc)) from None
            self.store.add_head(head.with_cosignatures(cosignature), local=False, check_signatures=False)
            return cosignature

    def _check_operator(self, head: SignedTreeHead) -> None:
        if self.config.operators:
            if head.signer not in self.config.operators:
                raise PeerRefused(f"{head.signer} is not an operator this node witnesses")
            return
        pinned = self._meta(f"operator:{head.community}")
        if pinned is None:
            self._set_meta(f"operator:{head.community}", head.signer)
        elif pinned != head.signer:
            raise PeerRefused(
                f"the log of {head.community} is operated by {pinned} (pinned on first use), not {head.signer}"
            )

    def _last_seen(self, community: str) -> SignedTreeHead | None:
        t = self.store.heads_table
        with self.engine.connect() as conn:
            size = conn.execute(
                select(func.max(t.c.size)).where(t.c.community == community, t.c.local.is_(False))
            ).scalar_one_or_none()
        if size is None:
            return None
        found = self.store.heads(size=int(size), community=community, local=False, with_cosignatures=False)
        return found[-1] if found else None

    def seen_heads(self, *, limit: int = 20) -> list[SignedTreeHead]:
        """Heads of other nodes' logs this node has seen (cosigned or refused), largest first."""
        t = self.store.heads_table
        with self.engine.connect() as conn:
            sizes = (
                conn.execute(
                    select(t.c.size)
                    .where(t.c.local.is_(False))
                    .group_by(t.c.size)
                    .order_by(t.c.size.desc())
                    .limit(limit)
                )
                .scalars()
                .all()
            )
        out: list[SignedTreeHead] = []
        for size in sizes:
            out.extend(self.store.heads(size=int(size), local=False))
        return out

    # -- cosigning: the operator side -------------------------------------------------------------

    def request_cosignatures(self, head: SignedTreeHead | None = None) -> CosignRound:
        """Ask every configured peer to cosign a head of this node's log, over HTTP.

        For each peer a consistency proof from the last size it cosigned is sent along; when the
        peer asks for another one (409 with ``previousSize``) it is sent once more with that proof.
        A peer that reports a fork has its evidence stored here too.

        Parameters
        ----------
        head : SignedTreeHead, optional
            The head (default: a head over the whole log, signed now if needed).

        Returns
        -------
        CosignRound
        """
        head = head or self.sign_head()
        if head.signer != self.did:
            raise LedgerInputError("only heads this node signed can be sent for cosigning")
        bare = head.without_cosignatures()
        cosignatures: list[Cosignature] = []
        outcomes: list[PeerOutcome] = []
        known = {p["url"]: p for p in self.peers()}
        for url in self.config.peers:
            outcome, cosig = self._ask_peer(url, bare, known.get(url, {}).get("lastCosignedSize"))
            outcomes.append(outcome)
            if cosig is not None:
                cosignatures.append(cosig)
        with self._lock:
            merged = head.with_cosignatures(*cosignatures) if cosignatures else head
            if cosignatures:
                try:
                    self.store.add_head(merged, check_signatures=False)
                except ForkDetected as fork:  # a peer reported a conflicting head of this size
                    log.warning("fork alarm: %s", fork.evidence.describe())
            stored = self.store.heads(size=head.size, local=True)
            current = next((h for h in stored if h.digest == head.digest), merged)
        return CosignRound(current, tuple(outcomes))

    def _ask_peer(
        self, url: str, head: SignedTreeHead, last_size: int | None
    ) -> tuple[PeerOutcome, Cosignature | None]:
        endpoint = f"{url}/api/ledger/heads/{head.size}/cosign"
        proof_from = last_size
        for _attempt in range(2):
            payload: dict[str, Any] = {"head": head.to_json(), "consistency": None}
            if proof_from is not None and proof_from != head.size:
                if proof_from > self.store.size:
                    return PeerOutcome(url, "refused", detail=f"peer saw size {proof_from} > log size"), None
                low, high = sorted((proof_from, head.size))
                payload["consistency"] = self.store.log.consistency_proof(low, high).to_json()
            try:
                response = self.client.post(endpoint, json=payload)
            except httpx.HTTPError as exc:
                log.warning("peer %s unreachable: %s", url, type(exc).__name__)
                return PeerOutcome(url, "unreachable", detail=type(exc).__name__), None
            try:
                body = response.json()
            except ValueError:
                body = {}
            if response.status_code == 200 and isinstance(body, dict):
                try:
                    cosig = Cosignature.from_json(body.get("cosignature"))  # type: ignore[arg-type]
                except HeadError as exc:
                    return PeerOutcome(url, "refused", detail=f"malformed cosignature: {exc}"), None
                if not head.cosignature_is_valid(cosig):
                    return PeerOutcome(url, "refused", cosig.signer, "cosignature does not verify"), None
                self._remember_peer(url, cosig.signer, head.size)
                return PeerOutcome(url, "cosigned", cosig.signer), cosig
            detail = str(body.get("detail", response.reason_phrase)) if isinstance(body, dict) else ""
            if response.status_code == 409 and isinstance(body, dict) and "fork" in body:
                self._store_fork_report(body["fork"])
                return PeerOutcome(url, "fork", detail=detail), None
            if (
                response.status_code == 409
                and isinstance(body, dict)
                and isinstance(body.get("previousSize"), int)
            ):
                if proof_from == body["previousSize"]:
                    break
                proof_from = body["previousSize"]
                continue
            return PeerOutcome(url, "refused", detail=detail), None
        return PeerOutcome(url, "refused", detail="the peer keeps asking for another consistency proof"), None

    def _store_fork_report(self, raw: Any) -> None:
        """Keep the fork evidence a peer returned (checked: both heads must be validly signed)."""
        try:
            evidence = ForkEvidence.from_json(raw)
        except HeadError as exc:
            log.warning("peer sent malformed fork evidence: %s", exc)
            return
        if not evidence.is_valid():
            log.warning("peer sent fork evidence with an invalid signature; ignored")
            return
        log.warning("fork alarm from a peer: %s", evidence.describe())
        ours = self.store.heads(
            size=evidence.size, community=evidence.community, local=None, with_cosignatures=False
        )
        digests = {h.digest for h in ours}
        with self._lock:
            for candidate in (evidence.first, evidence.second):
                if candidate.digest not in digests:
                    with contextlib.suppress(ForkDetected):  # the store keeps the evidence
                        self.store.add_head(candidate, local=False, check_signatures=False)

    def forks(self) -> list[dict[str, Any]]:
        """Fork alarms: each with both heads as evidence."""
        out = []
        for evidence in self.store.forks():
            item = evidence.to_json()
            item["equivocator"] = evidence.equivocator
            item["description"] = evidence.describe()
            item["valid"] = evidence.is_valid()
            out.append(item)
        return out

    # -- DVPP ---------------------------------------------------------------------------------------

    def _check_member_device(self, member: str, device: str, tenant: str) -> None:
        if self.twin is None or not self.twin.store.tenant_exists(tenant):
            return
        ctx = bright_context()
        doc = self.twin.store.get(tenant, member)
        if doc is None:
            raise LedgerInputError(f"member {member!r} is not in the twin")
        communities = [i.get("object") for i in doc.get("attrs", {}).get(ctx.expand("memberOf"), [])]
        if self.community.startswith("urn:ngsi-ld:") and self.community not in communities:
            raise LedgerInputError(f"member {member!r} is not a member of {self.community}")
        controls: list[str] = []
        for inst in doc.get("attrs", {}).get(ctx.expand("controls"), []):
            obj = inst.get("object", inst.get("objectList"))
            controls.extend([str(o) for o in obj] if isinstance(obj, list) else [str(obj)] if obj else [])
        if device not in controls:
            raise LedgerInputError(
                f"device {device!r} is not controlled by member {member!r} (controls: {', '.join(controls) or 'none'})"
            )

    def post_offer(
        self,
        *,
        member: str | None = None,
        device: str | None = None,
        direction: str = "up",
        window_start: Any = None,
        window_end: Any = None,
        power_kw: float | None = None,
        price_eur_per_kwh: float | None = None,
        offer_id: str | None = None,
        signed: SignedRecord | None = None,
        tenant: str = "",
    ) -> tuple[int, SignedRecord]:
        """Post a flexibility offer to the community's log.

        Either ``signed`` (a ``flex_offer`` record signed by the member's own node) or the offer's
        fields, which this node then signs on the member's behalf (custodial).

        Parameters
        ----------
        member : str
            The offering member (its ``EnergyProsumer`` entity id).
        device : str
            The flexible device (entity id of a battery, heat pump, charger...), which the member
            must control in the twin.
        direction : {"up", "down"}
            ``up``: more injection or less offtake; ``down``: the reverse.
        window_start, window_end : datetime or RFC 3339 str
            Availability window, quarter-hour aligned.
        power_kw : float
            Power offered, kW (> 0; recorded in whole W).
        price_eur_per_kwh : float
            Asked price for activated energy, EUR/kWh (>= 0; recorded in euro-cents per MWh).
        offer_id : str, optional
            Identifier (a URN with a UUID is generated when omitted).
        signed : SignedRecord, optional
            The offer as signed by the member's node.
        tenant : str, optional
            NGSI-LD tenant of the member in the twin.

        Returns
        -------
        (int, SignedRecord)
            Leaf index and the signed record.
        """
        if signed is not None:
            if signed.kind != "flex_offer":
                raise LedgerInputError(f"expected a flex_offer record, got {signed.kind!r}")
            body = signed.record()
            assert isinstance(body, FlexOffer)
            self._check_member_device(body.member, body.device, tenant)
            indices = self.append_records([signed])
            return indices.start, signed
        if member is None or device is None or power_kw is None or price_eur_per_kwh is None:
            raise LedgerInputError(
                "an offer needs member, device, window_start, window_end, power_kw, price_eur_per_kwh"
            )
        power = _number(power_kw, "power_kw")
        price = _number(price_eur_per_kwh, "price_eur_per_kwh")
        if power <= 0:
            raise LedgerInputError(f"power_kw of the offer must be > 0, got {power_kw!r}")
        if price < 0:
            raise LedgerInputError(f"price_eur_per_kwh of the offer must be >= 0, got {price_eur_per_kwh!r}")
        self._check_member_device(member, device, tenant)
        try:
            offer = FlexOffer(
                offer_id or f"urn:bright:offer:{uuid.uuid4()}",
                self.community,
                member,
                device,
                direction,  # type: ignore[arg-type]
                _parse_instant(window_start, "window_start"),
                _parse_instant(window_end, "window_end"),
                power_w=round(power * 1000),
                price_cents_per_mwh=round(price * 100_000),
            )
        except RecordError as exc:
            raise LedgerInputError(str(exc)) from None
        record = sign_record(offer, self.__identity)
        indices = self.append_records([record])
        return indices.start, record

    def _records(self, kind: str, *, member: str | None = None) -> list[tuple[int, SignedRecord]]:
        t = index_table
        query = select(t.c.idx).where(t.c.kind == kind, t.c.community == self.community).order_by(t.c.idx)
        if member is not None:
            query = query.where(t.c.member == member)
        with self.engine.connect() as conn:
            idxs = conn.execute(query).scalars().all()
        return [(int(i), SignedRecord.from_bytes(self.store.leaf(int(i)))) for i in idxs]

    def _offer(self, offer_id: str, member: str) -> FlexOffer:
        for _, rec in self._records("flex_offer", member=member):
            body = rec.record()
            if isinstance(body, FlexOffer) and body.offer_id == offer_id:
                return body
        raise ResourceNotFound(f"offer {offer_id!r} of member {member!r} is not in the log")

    def _activations(self, member: str | None = None) -> dict[str, tuple[int, SignedRecord, Activation, str]]:
        """Latest record per activation id: (index, record, body, stage)."""
        out: dict[str, tuple[int, SignedRecord, Activation, str]] = {}
        for index, rec in self._records("activation", member=member):
            body = rec.record()
            assert isinstance(body, Activation)
            stage = "settled" if body.activation_id in out else "scheduled"
            out[body.activation_id] = (index, rec, body, stage)
        return out

    def offers(self, *, member: str | None = None) -> list[dict[str, Any]]:
        """Offers in the log (of one member), each with what was activated of it.

        Returns
        -------
        list of dict
            ``index``, ``offerId``, ``member``, ``device``, ``direction``, ``windowStart``,
            ``windowEnd``, ``powerKw``, ``priceEurPerKwh``, ``author``, ``custodial``,
            ``activations`` (count), ``activatedEnergyKwh``, ``earnedEur``.
        """
        used: dict[str, list[Activation]] = {}
        for _, _, body, _ in self._activations(member).values():
            used.setdefault(body.offer_id, []).append(body)
        out = []
        for index, rec in self._records("flex_offer", member=member):
            o = rec.record()
            assert isinstance(o, FlexOffer)
            acts = used.get(o.offer_id, [])
            out.append(
                {
                    "index": index,
                    "offerId": o.offer_id,
                    "member": o.member,
                    "device": o.device,
                    "direction": o.direction,
                    "windowStart": format_timestamp(o.window_start),
                    "windowEnd": format_timestamp(o.window_end),
                    "powerKw": o.power_w / 1000,
                    "priceEurPerKwh": o.price_cents_per_mwh / 100_000,
                    "powerW": o.power_w,
                    "priceCentsPerMwh": o.price_cents_per_mwh,
                    "author": rec.author,
                    "custodial": rec.author == self.did,
                    "activations": len(acts),
                    "activatedEnergyKwh": sum(a.energy_wh for a in acts) / 1000,
                    "earnedEur": sum(a.amount_cents for a in acts) / 100,
                }
            )
        return out

    def offer_states(self, need: FlexNeed) -> list[OfferState]:
        """Offers able to serve a need (direction, window, price) with the power still free."""
        acts = [body for _, _, body, _ in self._activations().values()]
        states = []
        for index, rec in self._records("flex_offer"):
            o = rec.record()
            assert isinstance(o, FlexOffer)
            if o.direction != need.direction or o.window_start > need.start or o.window_end < need.end:
                continue
            if need.max_price_eur_per_kwh is not None and o.price_cents_per_mwh > round(
                need.max_price_eur_per_kwh * 100_000
            ):
                continue
            busy = sum(
                a.power_w
                for a in acts
                if a.offer_id == o.offer_id and a.start < need.end and a.end > need.start
            )
            if o.power_w - busy > 0:
                states.append(OfferState(index, o, rec.author, o.power_w - busy))
        return states

    def activate(self, need: FlexNeed, *, selector: Selector | None = None) -> dict[str, Any]:
        """Select offers for a need and record their activations (scheduled energy and remuneration).

        Parameters
        ----------
        need : FlexNeed
            The community's need.
        selector : Selector, optional
            Selection rule (default: the node's, :func:`merit_order` unless replaced).

        Returns
        -------
        dict
            ``needId``, ``neededKw``, ``activatedKw``, ``shortfallKw``, ``activations`` (each with
            its record index, offer, member, power, energy and amount) and the new ``head``.

        Raises
        ------
        LedgerInputError
            If the selector allocates more than an offer has free, or an offer it was not given.
        """
        with self._lock:
            states = self.offer_states(need)
            by_index = {s.index: s for s in states}
            allocations = list((selector or self.selector)(need, states))
            records: list[Activation] = []
            for alloc in allocations:
                state = by_index.get(alloc.offer.index)
                if state is None or not 0 < alloc.power_w <= state.available_w:
                    raise LedgerInputError(
                        f"the selector allocated {alloc.power_w} W of offer {alloc.offer.offer.offer_id!r}, "
                        f"which has {0 if state is None else state.available_w} W free for this need"
                    )
                energy = _energy_wh(alloc.power_w, need.start, need.end)
                records.append(
                    Activation(
                        f"urn:bright:activation:{uuid.uuid4()}",
                        state.offer.offer_id,
                        self.community,
                        state.offer.member,
                        _utc(need.start),
                        _utc(need.end),
                        power_w=alloc.power_w,
                        energy_wh=energy,
                        amount_cents=_amount_cents(energy, state.offer.price_cents_per_mwh),
                    )
                )
            indices = self.append_records(records) if records else range(0)
            head = self.store.latest_head()
        activated = sum(r.power_w for r in records)
        return {
            "needId": need.need_id,
            "direction": need.direction,
            "start": format_timestamp(_utc(need.start)),
            "end": format_timestamp(_utc(need.end)),
            "neededKw": need.power_w / 1000,
            "activatedKw": activated / 1000,
            "shortfallKw": max(0, need.power_w - activated) / 1000,
            "activations": [
                self._activation_json(i, r, "scheduled", None) for i, r in zip(indices, records, strict=True)
            ],
            "head": None if head is None else head.to_json(),
        }

    def settle_activation(self, activation_id: str, delivered_kwh: float) -> dict[str, Any]:
        """Record the settlement of an activation from the metered delivered energy.

        The member is paid for ``min(delivered, scheduled)`` at its offer's price; the record has
        the same activation id, the delivered energy and the final amount.

        Parameters
        ----------
        activation_id : str
            The activation.
        delivered_kwh : float
            Energy actually shifted, kWh (>= 0, from the meter against the baseline).

        Raises
        ------
        ResourceNotFound
            Unknown activation.
        LedgerInputError
            Already settled, or a negative/NaN energy.
        """
        delivered = _number(delivered_kwh, "delivered_kwh")
        if delivered < 0:
            raise LedgerInputError(f"delivered_kwh must be >= 0, got {delivered_kwh!r}")
        with self._lock:
            found = self._activations().get(activation_id)
            if found is None:
                raise ResourceNotFound(f"activation {activation_id!r} is not in the log")
            _, _, body, stage = found
            if stage == "settled":
                raise LedgerInputError(f"activation {activation_id!r} is already settled")
            offer = self._offer(body.offer_id, body.member)
            delivered_wh = wh_from_kwh(delivered, field="delivered_kwh")
            paid_wh = min(delivered_wh, body.energy_wh)
            settled = Activation(
                body.activation_id,
                body.offer_id,
                body.community,
                body.member,
                body.start,
                body.end,
                power_w=body.power_w,
                energy_wh=delivered_wh,
                amount_cents=_amount_cents(paid_wh, offer.price_cents_per_mwh),
            )
            indices = self.append_records([settled])
        return self._activation_json(indices.start, settled, "settled", body)

    def _activation_json(
        self, index: int, body: Activation, stage: str, scheduled: Activation | None
    ) -> dict[str, Any]:
        item = {
            "index": index,
            "activationId": body.activation_id,
            "offerId": body.offer_id,
            "member": body.member,
            "start": format_timestamp(body.start),
            "end": format_timestamp(body.end),
            "powerKw": body.power_w / 1000,
            "energyKwh": body.energy_wh / 1000,
            "amountEur": body.amount_cents / 100,
            "energyWh": body.energy_wh,
            "amountCents": body.amount_cents,
            "status": stage,
        }
        if scheduled is not None:
            item["scheduledEnergyKwh"] = scheduled.energy_wh / 1000
        return item

    def activations(self, *, member: str | None = None) -> list[dict[str, Any]]:
        """Activations in the log (latest state of each), oldest first."""
        scheduled: dict[str, Activation] = {}
        for _, rec in self._records("activation", member=member):
            body = rec.record()
            assert isinstance(body, Activation)
            scheduled.setdefault(body.activation_id, body)
        return [
            self._activation_json(index, body, stage, scheduled[aid] if stage == "settled" else None)
            for aid, (index, _, body, stage) in self._activations(member).items()
        ]

    def statement(self, member: str) -> dict[str, Any]:
        """What a member offered, what was used and what it earned, from the log.

        Returns
        -------
        dict
            ``member``, ``community``, ``offers``, ``activations``, ``totals`` (``offers``,
            ``offeredKwh`` = power x window length, ``activations``, ``usedKwh`` = scheduled or
            settled energy, ``earnedEur``, ``earnedCents``), ``records`` (leaf indices, to ask for
            proofs) and the ``head`` covering them.
        """
        offers = self.offers(member=member)
        acts = self.activations(member=member)
        offered_wh = 0
        for o in offers:
            hours = Fraction(
                _ts(_parse_instant(o["windowEnd"], "windowEnd"))
                - _ts(_parse_instant(o["windowStart"], "windowStart")),
                3600,
            )
            offered_wh += round(o["powerW"] * hours)
        earned = sum(a["amountCents"] for a in acts)
        head = self.store.latest_head()
        return {
            "member": member,
            "community": self.community,
            "offers": offers,
            "activations": acts,
            "totals": {
                "offers": len(offers),
                "offeredKwh": offered_wh / 1000,
                "activations": len(acts),
                "usedKwh": sum(a["energyWh"] for a in acts) / 1000,
                "earnedEur": earned / 100,
                "earnedCents": earned,
            },
            "records": sorted([o["index"] for o in offers] + [a["index"] for a in acts]),
            "head": None if head is None else self.head_json(head),
        }

    # -- anchors ------------------------------------------------------------------------------------

    def pending_anchors(self, *, limit: int | None = None) -> list[PendingRoot]:
        """Settlement intervals whose root is not anchored yet, oldest first.

        The root of an interval is the one of the smallest local head covering all its records.
        """
        from bright.ledger.anchor import PendingRoot

        t = index_table
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.start_s, func.max(t.c.idx))
                .where(t.c.kind == "settlement", t.c.community == self.community)
                .group_by(t.c.start_s)
                .order_by(t.c.start_s)
            ).all()
            done = set(
                conn.execute(
                    select(anchors_table.c.interval_s).where(anchors_table.c.community == self.community)
                )
                .scalars()
                .all()
            )
            heads = self.store.heads_table
            sizes = sorted(
                int(s)
                for s in conn.execute(
                    select(heads.c.size)
                    .where(heads.c.local.is_(True), heads.c.community == self.community)
                    .distinct()
                ).scalars()
            )
        pending: list[PendingRoot] = []
        for start_s, top in rows:
            if int(start_s) in done:
                continue
            need = int(top) + 1
            pos = np.searchsorted(sizes, need)
            if pos == len(sizes):
                continue  # not covered by a signed head yet
            size = sizes[int(pos)]
            pending.append(
                PendingRoot(
                    self.community, datetime.fromtimestamp(int(start_s), UTC), size, self.store.log.root(size)
                )
            )
            if limit is not None and len(pending) >= limit:
                break
        return pending

    def record_anchors(self, receipts: Iterable[AnchorReceipt]) -> int:
        """Store anchoring receipts (one per community and interval); returns how many were new."""
        rows = [
            {
                "community": r.community,
                "interval_s": _ts(r.interval_start),
                "size": r.size,
                "root": r.root,
                "chain_id": r.chain_id,
                "contract": r.contract,
                "tx_hash": r.tx_hash,
                "block_number": r.block_number,
                "anchored_at": int(datetime.now(UTC).timestamp()),
            }
            for r in receipts
        ]
        if not rows:
            return 0
        with self.engine.begin() as conn:
            have = set(
                conn.execute(
                    select(anchors_table.c.interval_s).where(anchors_table.c.community == self.community)
                ).scalars()
            )
            new = [r for r in rows if r["interval_s"] not in have]
            if new:
                conn.execute(anchors_table.insert(), new)
        return len(new)

    def anchors(self, *, limit: int = 100) -> list[dict[str, Any]]:
        """Anchored roots, latest interval first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(anchors_table)
                .where(anchors_table.c.community == self.community)
                .order_by(anchors_table.c.interval_s.desc())
                .limit(limit)
            ).all()
        return [
            {
                "interval": format_timestamp(datetime.fromtimestamp(int(r.interval_s), UTC)),
                "size": int(r.size),
                "root": b64url_encode(bytes(r.root)),
                "chainId": int(r.chain_id),
                "contract": r.contract,
                "txHash": r.tx_hash,
                "blockNumber": r.block_number,
            }
            for r in rows
        ]

    def anchor_contract(self, chain_id: int) -> str | None:
        """Address of the anchor contract this node uses on a chain, if one was deployed or set."""
        return self._meta(f"anchor_contract:{chain_id}")

    def set_anchor_contract(self, chain_id: int, address: str) -> None:
        """Remember the anchor contract of a chain."""
        self._set_meta(f"anchor_contract:{chain_id}", address)

    def anchor(
        self,
        rpc_url: str,
        *,
        contract: str | None = None,
        deploy: bool = False,
        sender: str | None = None,
        limit: int | None = 100,
        transport: httpx.BaseTransport | None = None,
    ) -> list[AnchorReceipt]:
        """Anchor the pending interval roots on an EVM chain through JSON-RPC (see :mod:`bright.ledger.anchor`).

        Parameters
        ----------
        rpc_url : str
            JSON-RPC endpoint (e.g. ``http://127.0.0.1:8545`` for anvil).
        contract : str, optional
            Address of the RootAnchor contract (default: the one remembered for the chain).
        deploy : bool, optional
            Deploy the contract when none is known (needs the Vyper compiler, ``bright[evm]``).
        sender : str, optional
            Unlocked account sending the transactions (default: the node's first account).
        limit : int, optional
            Most intervals anchored in this call.
        transport : httpx.BaseTransport, optional
            HTTP transport (tests).

        Returns
        -------
        list of AnchorReceipt
        """
        from bright.ledger.anchor import AnchorError
        from bright.services.anchoring import JsonRpc, anchor_pending, deploy_contract

        rpc = JsonRpc(rpc_url, transport=transport)
        chain_id = rpc.chain_id()
        address = contract or self.anchor_contract(chain_id)
        if address is None:
            if not deploy:
                raise AnchorError(
                    f"no anchor contract known for chain {chain_id}: pass --contract or --deploy"
                )
            address = deploy_contract(rpc_url, sender=sender, transport=transport)
        self.set_anchor_contract(chain_id, address)
        pending = self.pending_anchors(limit=limit)
        receipts = anchor_pending(rpc_url, address, pending, sender=sender, transport=transport)
        self.record_anchors(receipts)
        return receipts


def parse_need(body: Mapping[str, Any]) -> FlexNeed:
    """A :class:`FlexNeed` from JSON ``{start, end, direction, powerKw, maxPriceEurPerKwh?, needId?}``.

    Raises
    ------
    LedgerInputError
        Naming the missing or invalid field.
    """
    if not isinstance(body, Mapping):
        raise LedgerInputError("the need must be an object {start, end, direction, powerKw}")
    for name in ("start", "end", "direction", "powerKw"):
        if name not in body:
            raise LedgerInputError(f"the need has no {name}")
    price = body.get("maxPriceEurPerKwh")
    return FlexNeed(
        _parse_instant(body["start"], "start"),
        _parse_instant(body["end"], "end"),
        body["direction"],
        _number(body["powerKw"], "powerKw"),
        None if price is None else _number(price, "maxPriceEurPerKwh"),
        str(body.get("needId") or ""),
    )
