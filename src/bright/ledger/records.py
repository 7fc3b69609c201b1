"""Canonical, signed ledger records: settlements, flexibility offers and activations.

A record is a small body (one of :class:`Settlement`, :class:`FlexOffer`, :class:`Activation`)
wrapped in a signed envelope (:class:`SignedRecord`)::

    {"author":"did:key:z6Mk...","body":{...},"kind":"settlement","schema":1,"sig":"<base64url>"}

Canonical form
    JSON with keys sorted by code point, no insignificant whitespace, UTF-8, strings escaped
    minimally.  Values are strings, integers (``|x| <= 2**53 - 1``), booleans, ``null``, arrays and
    objects; floats are refused, so every amount is an integer: energy in **Wh**, money in
    **euro-cents**, power in **W**, prices in **euro-cents per MWh**.  Timestamps are UTC RFC 3339
    strings with whole seconds, ``2024-05-01T10:15:00Z``.  For such values the output coincides
    with the JSON Canonicalization Scheme (RFC 8785).  A decoder accepts a record only if it is
    byte-for-byte in canonical form, so one record has one encoding and one hash.

Signature
    Ed25519 over ``b"bright-ledger/record/v1\\x00" + canonical({author, body, kind, schema})``.
    The context prefix keeps a record signature from ever being valid as a tree-head signature.
    The Merkle leaf is the canonical JSON of the whole envelope, signature included.

Privacy
    One settlement record per member and quarter-hour lets a member prove its own lines without
    disclosing anybody else's.  Sibling hashes in a proof cannot be brute-forced back to a
    low-entropy body (a meter reading), because each leaf includes the author's signature, which
    nobody else can compute.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from dataclasses import field as dataclass_field
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal, Self

import orjson

from bright.ledger.identity import (
    IdentityError,
    NodeIdentity,
    PublicIdentity,
    b64url_decode,
    b64url_encode,
)

__all__ = [
    "RECORD_CONTEXT",
    "RECORD_TYPES",
    "SCHEMA_VERSION",
    "Activation",
    "FlexOffer",
    "RecordBody",
    "RecordError",
    "Settlement",
    "SignedRecord",
    "canonical_json",
    "cents_from_eur",
    "format_timestamp",
    "parse_canonical",
    "parse_timestamp",
    "sign_record",
    "sign_records",
    "wh_from_kwh",
]

#: Version of the record and tree-head schema; bumped on any incompatible change.
SCHEMA_VERSION = 1
#: Domain-separation prefix of record signatures.
RECORD_CONTEXT = b"bright-ledger/record/v1\x00"
#: Default settlement period (the Belgian quarter-hour), in seconds.
QUARTER_HOUR_S = 900
_MAX_SAFE_INTEGER = 2**53 - 1
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_ID_RE = re.compile(r"^[\x21-\x7e]{1,200}$")  # printable ASCII, no spaces: EANs, URNs, DIDs


class RecordError(ValueError):
    """A record is malformed, non-canonical or inconsistent; the message names the field."""


# --------------------------------------------------------------------------- canonical JSON


def _non_canonical(value: Any) -> tuple[str, str] | None:
    """Return (path suffix, reason) of the first value canonical JSON refuses, or None.

    Paths are only built on failure, so the common (valid) case costs a few type checks.
    """
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return None
    if kind is int:
        if -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER:
            return None
        return "", f"= {value} is outside the exact JSON integer range (2**53 - 1)"
    if kind is dict or isinstance(value, Mapping):
        for key, item in value.items():
            if type(key) is not str:
                return "", f"has a non-string key {key!r}"
            found = _non_canonical(item)
            if found is not None:
                return f".{key}{found[0]}", found[1]
        return None
    if kind is list or kind is tuple:
        for position, item in enumerate(value):
            found = _non_canonical(item)
            if found is not None:
                return f"[{position}]{found[0]}", found[1]
        return None
    if isinstance(value, float):
        return "", f"is a float ({value!r}); amounts are integers (Wh, W, euro-cents)"
    if isinstance(value, int) and not isinstance(value, bool):  # int subclasses (IntEnum, numpy ints are not)
        return _non_canonical(int(value))
    return "", f"has type {kind.__name__}, which canonical JSON does not encode"


def canonical_json(value: Any) -> bytes:
    """Encode a JSON value in the ledger's canonical form.

    Parameters
    ----------
    value : Any
        Nested dicts (string keys), lists, strings, integers, booleans and ``None``.

    Returns
    -------
    bytes
        UTF-8 JSON with sorted keys and no whitespace (RFC 8785 output for these values).

    Raises
    ------
    RecordError
        On a float, an integer beyond ``2**53 - 1``, a non-string key, another type, or a string
        that is not valid Unicode (a lone surrogate).

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [True, None, "é"]})
    b'{"a":[true,null,"\\xc3\\xa9"],"b":1}'
    """
    found = _non_canonical(value)
    if found is not None:
        raise RecordError(f"${found[0]} {found[1]}")
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as error:
        raise RecordError(f"value cannot be encoded as canonical JSON: {error}") from None


def parse_canonical(data: bytes, *, what: str = "record") -> Any:
    """Decode bytes that must be canonical JSON (see :func:`canonical_json`).

    Parameters
    ----------
    data : bytes
        UTF-8 JSON.
    what : str, optional
        Name of the object, for the error message.

    Returns
    -------
    Any
        The decoded value.

    Raises
    ------
    RecordError
        If ``data`` is not JSON, or not in canonical form (whitespace, key order, escapes,
        duplicate keys, floats all change the bytes and are refused).
    """
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise RecordError(f"{what} is not valid UTF-8 JSON") from None
    if canonical_json(value) != bytes(data):
        raise RecordError(f"{what} is not in canonical JSON form (sorted keys, no whitespace)")
    return value


# --------------------------------------------------------------------------- fields


def format_timestamp(moment: datetime, *, field: str = "timestamp") -> str:
    """Format a timezone-aware instant as ``YYYY-MM-DDTHH:MM:SSZ`` (UTC, whole seconds).

    Parameters
    ----------
    moment : datetime
        Timezone-aware instant, whole seconds.
    field : str, optional
        Field name for the error message.

    Returns
    -------
    str
    """
    if type(moment) is datetime and moment.tzinfo is UTC and not moment.microsecond:  # fast path
        return (
            f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
            f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
        )
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise RecordError(f"{field} must be a timezone-aware datetime, got {moment!r}")
    if moment.microsecond:
        raise RecordError(f"{field} = {moment.isoformat()} has a fraction of a second")
    utc = moment.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}Z"


def parse_timestamp(text: Any, *, field: str = "timestamp") -> datetime:
    """Parse a canonical ``YYYY-MM-DDTHH:MM:SSZ`` timestamp into an aware UTC datetime.

    Parameters
    ----------
    text : str
        Canonical UTC timestamp.
    field : str, optional
        Field name for the error message.

    Returns
    -------
    datetime
        Timezone-aware (UTC).
    """
    if not isinstance(text, str) or not _TIMESTAMP_RE.match(text):
        raise RecordError(f"{field} = {text!r} is not a UTC timestamp like 2024-05-01T10:15:00Z")
    try:
        return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        raise RecordError(f"{field} = {text!r} is not a valid date and time") from None


def wh_from_kwh(energy_kwh: float, *, field: str = "energy_kwh") -> int:
    """Convert an energy in kWh to whole Wh (rounded half to even), refusing missing values.

    Parameters
    ----------
    energy_kwh : float
        Energy in kWh (per interval).
    field : str, optional
        Name of the quantity (member and interval), for the error message.

    Returns
    -------
    int
        Energy in Wh.

    Raises
    ------
    RecordError
        If ``energy_kwh`` is NaN or infinite: a record is only written for complete data.

    Examples
    --------
    >>> wh_from_kwh(1.2345)
    1234
    """
    value = float(energy_kwh)
    if not math.isfinite(value):
        raise RecordError(f"{field} is {value}: only complete intervals are recorded")
    return round(value * 1000.0)


def cents_from_eur(amount_eur: float, *, field: str = "amount_eur") -> int:
    """Convert an amount in EUR to whole euro-cents (rounded half to even).

    Parameters
    ----------
    amount_eur : float
        Amount in EUR.
    field : str, optional
        Name of the amount, for the error message.

    Returns
    -------
    int
        Amount in euro-cents.

    Examples
    --------
    >>> cents_from_eur(-0.125)
    -12
    """
    value = float(amount_eur)
    if not math.isfinite(value):
        raise RecordError(f"{field} is {value}: only complete intervals are recorded")
    return round(value * 100.0)


def _require_int(record: RecordBody, name: str, *, minimum: int | None = 0) -> None:
    value = getattr(record, name)
    if (
        type(value) is int
        and (minimum is None or value >= minimum)
        and -_MAX_SAFE_INTEGER <= value <= _MAX_SAFE_INTEGER
    ):
        return
    if not isinstance(value, int) or isinstance(value, bool):
        raise RecordError(f"{record.label()}: {name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise RecordError(f"{record.label()}: {name} = {value} is below {minimum}")
    if abs(value) > _MAX_SAFE_INTEGER:
        raise RecordError(f"{record.label()}: {name} = {value} exceeds 2**53 - 1")


def _require_id(record: RecordBody, name: str) -> None:
    value = getattr(record, name)
    if type(value) is not str or not _ID_RE.match(value):
        raise RecordError(
            f"{record.label()}: {name} must be 1-200 printable ASCII characters without spaces, got {value!r}"
        )


def _require_interval_start(record: RecordBody, name: str, resolution_s: int) -> None:
    value = getattr(record, name)
    if (
        type(value) is datetime
        and value.tzinfo is UTC
        and not value.microsecond
        and not int(value.timestamp()) % resolution_s
    ):
        return
    format_timestamp(value, field=f"{record.label()}: {name}")
    if int(value.timestamp()) % resolution_s:
        raise RecordError(
            f"{record.label()}: {name} = {value.isoformat()} is not aligned to {resolution_s} s"
        )


# --------------------------------------------------------------------------- record bodies


class RecordBody:
    """Common behaviour of record bodies: canonical payload in, canonical payload out."""

    __slots__ = ()
    kind: ClassVar[str]
    _timestamps: ClassVar[tuple[str, ...]] = ()

    def label(self) -> str:
        """Short human identification of the record, used in error messages."""
        raise NotImplementedError

    def to_body(self) -> dict[str, Any]:
        """Return the JSON body (timestamps as canonical strings, amounts as integers)."""
        body: dict[str, Any] = {}
        timestamps = self._timestamps
        name: str
        for name in type(self).__slots__:  # dataclass(slots=True): the fields, in order
            value = getattr(self, name)
            body[name] = format_timestamp(value, field=name) if name in timestamps else value
        return body

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Rebuild a record from its JSON body, refusing missing or unknown fields.

        Parameters
        ----------
        body : Mapping
            Decoded JSON object.

        Returns
        -------
        RecordBody
        """
        if not isinstance(body, Mapping):
            raise RecordError(f"{cls.kind} body must be a JSON object")
        names = [item.name for item in fields(cls)]  # type: ignore[arg-type]
        missing = sorted(set(names) - set(body))
        unknown = sorted(set(body) - set(names))
        if missing or unknown:
            raise RecordError(f"{cls.kind} body: missing fields {missing}, unknown fields {unknown}")
        values = {
            name: parse_timestamp(body[name], field=f"{cls.kind}.{name}")
            if name in cls._timestamps
            else body[name]
            for name in names
        }
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Settlement(RecordBody):
    """One member's settlement of one interval (by default a quarter-hour) of energy sharing.

    Parameters
    ----------
    community : str
        Identifier of the energy community (e.g. its DID or a URN).
    member : str
        Identifier of the member (access point EAN, or its node's DID).
    interval_start : datetime
        Start of the interval, timezone-aware, aligned to ``resolution_s``.
    offtake_wh : int
        Gross offtake metered at the access point during the interval, in Wh (>= 0).
    injection_wh : int
        Gross injection metered during the interval, in Wh (>= 0).
    shared_offtake_wh : int
        Part of the offtake covered by energy shared in the community, in Wh
        (``0 <= shared_offtake_wh <= offtake_wh``).
    shared_injection_wh : int
        Part of the injection allocated to other members, in Wh
        (``0 <= shared_injection_wh <= injection_wh``).
    amount_cents : int
        Net amount of the sharing settlement in euro-cents: positive when the member pays the
        community, negative when the community pays the member.
    resolution_s : int, optional
        Interval length in seconds, default 900.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> s = Settlement("urn:community:1", "EAN541448000000000017", datetime(2024, 5, 1, 10, 15, tzinfo=UTC),
    ...                offtake_wh=420, injection_wh=0, shared_offtake_wh=300, shared_injection_wh=0,
    ...                amount_cents=3)
    >>> s.to_body()["interval_start"]
    '2024-05-01T10:15:00Z'
    """

    kind: ClassVar[str] = "settlement"
    _timestamps: ClassVar[tuple[str, ...]] = ("interval_start",)

    community: str
    member: str
    interval_start: datetime
    offtake_wh: int
    injection_wh: int
    shared_offtake_wh: int
    shared_injection_wh: int
    amount_cents: int
    resolution_s: int = QUARTER_HOUR_S

    def label(self) -> str:
        return f"settlement of member {self.member!r} at {self.interval_start!s}"

    def __post_init__(self) -> None:
        _require_id(self, "community")
        _require_id(self, "member")
        _require_int(self, "resolution_s", minimum=1)
        _require_interval_start(self, "interval_start", self.resolution_s)
        for name in ("offtake_wh", "injection_wh", "shared_offtake_wh", "shared_injection_wh"):
            _require_int(self, name)
        _require_int(self, "amount_cents", minimum=None)
        if self.shared_offtake_wh > self.offtake_wh:
            raise RecordError(
                f"{self.label()}: shared_offtake_wh = {self.shared_offtake_wh} "
                f"exceeds offtake_wh = {self.offtake_wh}"
            )
        if self.shared_injection_wh > self.injection_wh:
            raise RecordError(
                f"{self.label()}: shared_injection_wh = {self.shared_injection_wh} "
                f"exceeds injection_wh = {self.injection_wh}"
            )


@dataclass(frozen=True, slots=True)
class FlexOffer(RecordBody):
    """A member's offer of flexibility to the community's virtual power plant.

    Parameters
    ----------
    offer_id : str
        Unique identifier of the offer (e.g. a URN with a UUID).
    community : str
        Identifier of the community whose log receives the offer.
    member : str
        Identifier of the offering member.
    device : str
        Identifier of the flexible device (battery, heat pump, charge point...).
    direction : {"up", "down"}
        ``"up"``: the device can raise injection or lower offtake; ``"down"``: the reverse.
    window_start, window_end : datetime
        Window in which the device is available, aligned to the quarter-hour,
        ``window_start < window_end``.
    power_w : int
        Power the device can shift, in W (> 0).
    price_cents_per_mwh : int
        Asked price for activated energy, in euro-cents per MWh (>= 0): 12.5 c/kWh = 12500.
    """

    kind: ClassVar[str] = "flex_offer"
    _timestamps: ClassVar[tuple[str, ...]] = ("window_start", "window_end")

    offer_id: str
    community: str
    member: str
    device: str
    direction: Literal["up", "down"]
    window_start: datetime
    window_end: datetime
    power_w: int
    price_cents_per_mwh: int

    def label(self) -> str:
        return f"flexibility offer {self.offer_id!r}"

    def __post_init__(self) -> None:
        for name in ("offer_id", "community", "member", "device"):
            _require_id(self, name)
        if self.direction not in ("up", "down"):
            raise RecordError(f"{self.label()}: direction must be 'up' or 'down', got {self.direction!r}")
        _require_interval_start(self, "window_start", QUARTER_HOUR_S)
        _require_interval_start(self, "window_end", QUARTER_HOUR_S)
        if self.window_end <= self.window_start:
            raise RecordError(f"{self.label()}: window_end must be after window_start")
        _require_int(self, "power_w", minimum=1)
        _require_int(self, "price_cents_per_mwh")


@dataclass(frozen=True, slots=True)
class Activation(RecordBody):
    """The activation of (part of) a flexibility offer, and what it earns the member.

    Parameters
    ----------
    activation_id : str
        Unique identifier of the activation.
    offer_id : str
        The activated offer.
    community : str
        Identifier of the community.
    member : str
        Identifier of the member whose device is activated.
    start, end : datetime
        Activated period, aligned to the quarter-hour, ``start < end``.
    power_w : int
        Activated power, in W (> 0).
    energy_wh : int
        Energy shifted over the period, in Wh (>= 0); the scheduled value, or the metered one
        once settled.
    amount_cents : int
        Remuneration of the member in euro-cents (>= 0).
    """

    kind: ClassVar[str] = "activation"
    _timestamps: ClassVar[tuple[str, ...]] = ("start", "end")

    activation_id: str
    offer_id: str
    community: str
    member: str
    start: datetime
    end: datetime
    power_w: int
    energy_wh: int
    amount_cents: int

    def label(self) -> str:
        return f"activation {self.activation_id!r}"

    def __post_init__(self) -> None:
        for name in ("activation_id", "offer_id", "community", "member"):
            _require_id(self, name)
        _require_interval_start(self, "start", QUARTER_HOUR_S)
        _require_interval_start(self, "end", QUARTER_HOUR_S)
        if self.end <= self.start:
            raise RecordError(f"{self.label()}: end must be after start")
        _require_int(self, "power_w", minimum=1)
        _require_int(self, "energy_wh")
        _require_int(self, "amount_cents")


#: Record kinds by their ``kind`` tag.
RECORD_TYPES: dict[str, type[RecordBody]] = {cls.kind: cls for cls in (Settlement, FlexOffer, Activation)}


# --------------------------------------------------------------------------- envelope


@dataclass(frozen=True, slots=True)
class SignedRecord:
    """A record body signed by its author: the unit appended to the Merkle log.

    Attributes
    ----------
    kind : str
        One of :data:`RECORD_TYPES`.
    body : dict
        The record body as canonical JSON values.
    author : str
        ``did:key`` of the signer.
    signature : bytes
        64-byte Ed25519 signature over :meth:`signing_input`.
    schema : int
        Schema version (:data:`SCHEMA_VERSION`).
    """

    kind: str
    body: dict[str, Any]
    author: str
    signature: bytes
    schema: int = SCHEMA_VERSION
    # Leaf bytes computed once by sign_record; the body must not be mutated afterwards.
    _encoded: bytes | None = dataclass_field(default=None, init=False, repr=False, compare=False)

    def _unsigned(self) -> dict[str, Any]:
        return {"author": self.author, "body": self.body, "kind": self.kind, "schema": self.schema}

    def signing_input(self) -> bytes:
        """The bytes the author signs: context prefix + canonical unsigned envelope."""
        return RECORD_CONTEXT + canonical_json(self._unsigned())

    def to_bytes(self) -> bytes:
        """Canonical JSON of the whole envelope: the Merkle leaf.

        ``"sig"`` sorts after every other envelope key, so the signature is appended to the
        canonical unsigned envelope (checked by the tests against :func:`canonical_json`).
        """
        if self._encoded is not None:
            return self._encoded
        return self._encode(canonical_json(self._unsigned()))

    def _encode(self, unsigned: bytes) -> bytes:
        return unsigned[:-1] + b',"sig":"' + b64url_encode(self.signature).encode("ascii") + b'"}'

    def to_json(self) -> dict[str, Any]:
        """The envelope as a JSON object (for a proof bundle)."""
        return {**self._unsigned(), "sig": b64url_encode(self.signature)}

    @classmethod
    def from_json(cls, envelope: Mapping[str, Any]) -> SignedRecord:
        """Rebuild a signed record from its JSON object, checking its shape and body.

        Parameters
        ----------
        envelope : Mapping
            Decoded envelope with keys ``author, body, kind, schema, sig``.

        Returns
        -------
        SignedRecord

        Raises
        ------
        RecordError
            On a missing or unknown key, an unknown kind or schema, or an invalid body.  The
            signature is *not* checked here: call :meth:`verify`.
        """
        if not isinstance(envelope, Mapping):
            raise RecordError("record envelope must be a JSON object")
        expected = {"author", "body", "kind", "schema", "sig"}
        if set(envelope) != expected:
            raise RecordError(f"record envelope keys are {sorted(envelope)}, expected {sorted(expected)}")
        if envelope["schema"] != SCHEMA_VERSION:
            raise RecordError(
                f"record schema {envelope['schema']!r} is not supported (only {SCHEMA_VERSION})"
            )
        kind = envelope["kind"]
        if kind not in RECORD_TYPES:
            raise RecordError(f"record kind {kind!r} is unknown (expected one of {sorted(RECORD_TYPES)})")
        if not isinstance(envelope["author"], str):
            raise RecordError("record author must be a did:key string")
        body = envelope["body"]
        RECORD_TYPES[kind].from_body(body)  # validates the body
        try:
            signature = b64url_decode(envelope["sig"], what="record signature")
        except IdentityError as error:
            raise RecordError(str(error)) from None
        return cls(kind=kind, body=dict(body), author=envelope["author"], signature=signature)

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedRecord:
        """Decode a Merkle leaf, refusing anything but the canonical encoding.

        Parameters
        ----------
        data : bytes
            Canonical JSON of a signed envelope.

        Returns
        -------
        SignedRecord
        """
        return cls.from_json(parse_canonical(data, what="record"))

    def record(self) -> RecordBody:
        """The typed record body (:class:`Settlement`, :class:`FlexOffer` or :class:`Activation`)."""
        return RECORD_TYPES[self.kind].from_body(self.body)

    def verify(self) -> bool:
        """True if the signature is the author's over this exact envelope."""
        try:
            author = PublicIdentity.from_did(self.author)
        except IdentityError:
            return False
        return author.verify(self.signing_input(), self.signature)


def sign_record(record: RecordBody, identity: NodeIdentity) -> SignedRecord:
    """Sign a record body with a node identity.

    Parameters
    ----------
    record : RecordBody
        A :class:`Settlement`, :class:`FlexOffer` or :class:`Activation`.
    identity : NodeIdentity
        The author's identity.

    Returns
    -------
    SignedRecord
        The envelope; ``to_bytes()`` gives the Merkle leaf.

    Examples
    --------
    >>> from datetime import datetime, UTC
    >>> author = NodeIdentity.generate()
    >>> offer = FlexOffer("urn:offer:1", "urn:community:1", "EAN541448000000000017", "battery-1", "up",
    ...                   datetime(2024, 5, 1, 17, tzinfo=UTC), datetime(2024, 5, 1, 19, tzinfo=UTC),
    ...                   power_w=3000, price_cents_per_mwh=15000)
    >>> signed = sign_record(offer, author)
    >>> signed.verify(), SignedRecord.from_bytes(signed.to_bytes()) == signed
    (True, True)
    """
    if not isinstance(record, RecordBody) or getattr(record, "kind", None) not in RECORD_TYPES:
        raise RecordError(f"cannot sign {type(record).__name__}: not a ledger record body")
    body = record.to_body()
    unsigned = {"author": identity.did, "body": body, "kind": record.kind, "schema": SCHEMA_VERSION}
    # The body of a validated record holds only checked strings and safe integers, so orjson's
    # sorted output is already canonical: skip the generic value check on this hot path.
    encoded = orjson.dumps(unsigned, option=orjson.OPT_SORT_KEYS)
    signed = SignedRecord(
        kind=record.kind, body=body, author=identity.did, signature=identity.sign(RECORD_CONTEXT + encoded)
    )
    object.__setattr__(signed, "_encoded", signed._encode(encoded))
    return signed


def sign_records(
    records: Sequence[RecordBody], identity: NodeIdentity, *, threads: int = 2, min_per_thread: int = 256
) -> list[SignedRecord]:
    """Sign many record bodies, in order, on several cores.

    Ed25519 signing (OpenSSL through ``cryptography``) runs without Python's global interpreter
    lock, so threads sign in parallel while the canonical encoding, which needs the lock,
    interleaves with it. Each record is signed exactly as :func:`sign_record` signs it; the
    result is the same list (Ed25519 signatures are deterministic).

    Parameters
    ----------
    records : sequence of RecordBody
        :class:`Settlement`, :class:`FlexOffer` or :class:`Activation` bodies.
    identity : NodeIdentity
        The author's identity.
    threads : int, optional
        Threads to sign with (1: in the calling thread).
    min_per_thread : int, optional
        Fewest records per thread: a short batch is signed in the calling thread, where starting
        threads would cost more than it saves.

    Returns
    -------
    list of SignedRecord
        One envelope per body, in the order of ``records``.
    """
    count = len(records)
    workers = max(1, min(threads, count // max(1, min_per_thread)))
    if workers == 1:
        return [sign_record(record, identity) for record in records]
    size = -(-count // workers)  # ceiling division: contiguous slices keep the order

    def sign_slice(first: int) -> list[SignedRecord]:
        return [sign_record(record, identity) for record in records[first : first + size]]

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="ledger-sign") as pool:
        parts = list(pool.map(sign_slice, range(0, count, size)))
    return [signed for part in parts for signed in part]
