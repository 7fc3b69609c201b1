"""Signed requests between nodes: HTTP Message Signatures (RFC 9421) with Ed25519.

A node signs every request it sends to another node of its network with its node key (the
Ed25519 key of :mod:`bright.ledger.identity`, the same one its ledger uses). The signature covers

- ``@method``, ``@target-uri`` and ``@authority`` (RFC 9421, clause 2.2), so a signed request
  cannot be replayed against another resource or another node;
- ``content-digest`` (RFC 9530): ``sha-256=:<base64 of SHA-256(body)>:``; a request without a
  body carries the digest of the empty body, so the covered components are always the same;

with the signature parameters ``created`` (UNIX seconds), ``nonce`` (128 random bits),
``keyid`` (the signer's ``did:key``, which *is* its public key) and ``alg="ed25519"``. The
headers are::

    Content-Digest: sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:
    Signature-Input: bright=("@method" "@target-uri" "@authority" "content-digest");created=1767225600;keyid="did:key:z6Mk...";nonce="...";alg="ed25519"
    Signature: bright=:<base64 of the 64-byte Ed25519 signature>:

and the signed bytes (the *signature base*, clause 2.5) are one line per component,
``"<name>": <value>``, then ``"@signature-params": <the inner list of Signature-Input>``, lines
joined by ``\\n`` without a final newline.

A receiver (:func:`verify_request`) refuses: missing or malformed headers, another algorithm, a
component missing from the covered list, a body whose digest differs, a key it does not know
(the caller decides which keys it trusts: network members), a signature that does not verify,
``created`` more than :data:`MAX_SKEW_S` (300 s) away from its clock, and a nonce it has already
seen (:class:`NonceCache`: remembered until ``created + MAX_SKEW_S``, after which the request is
stale anyway).

Outgoing clients get signing with :func:`request_hooks` / :func:`async_request_hooks` (httpx
event hooks); the identity is looked up when the request is sent, from :func:`attach_identity`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import urlsplit

from sqlalchemy import Column, Connection, DateTime, Engine, MetaData, String, Table, delete, insert
from sqlalchemy.exc import IntegrityError

from bright.ledger.identity import IdentityError, NodeIdentity, PublicIdentity
from bright.twin import migrations

__all__ = [
    "COVERED_COMPONENTS",
    "MAX_SKEW_S",
    "SIGNATURE_LABEL",
    "DatabaseNonceCache",
    "MemoryNonceCache",
    "NonceCache",
    "SignatureError",
    "VerifiedSignature",
    "async_request_hooks",
    "attach_identity",
    "authority_of",
    "content_digest",
    "identity_of",
    "request_hooks",
    "signature_base",
    "signed_headers",
    "verify_request",
]

#: Components every BRIGHT signature covers, in this order.
COVERED_COMPONENTS = ("@method", "@target-uri", "@authority", "content-digest")
#: Largest accepted distance between ``created`` and the receiver's clock, seconds.
MAX_SKEW_S = 300
#: Label of BRIGHT's signature in ``Signature-Input`` / ``Signature``.
SIGNATURE_LABEL = "bright"
_DEFAULT_PORTS = {"http": 80, "https": 443}


class SignatureError(ValueError):
    """A signed request is refused; the message says why (never any key material)."""


# --------------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------------


def content_digest(body: bytes) -> str:
    """The RFC 9530 ``Content-Digest`` value of ``body``: ``sha-256=:<base64>:``."""
    return "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode("ascii") + ":"


def authority_of(scheme: str, host: str) -> str:
    """The ``@authority`` component: host[:port] in lower case, without the scheme's default port."""
    host = host.strip().lower()
    name, sep, port = host.rpartition(":")
    bracketed_ok = not name.startswith("[") or name.endswith("]")
    if sep and port.isdigit() and bracketed_ok and int(port) == _DEFAULT_PORTS.get(scheme.lower()):
        return name
    return host


def _sf_string(value: str) -> str:
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in value):
        raise SignatureError(f"{value!r} cannot be written as a structured-field string")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _params_value(components: tuple[str, ...], params: list[tuple[str, int | str]]) -> str:
    inner = "(" + " ".join(_sf_string(c) for c in components) + ")"
    for name, value in params:
        inner += f";{name}=" + (str(value) if isinstance(value, int) else _sf_string(value))
    return inner


def signature_base(method: str, target_uri: str, authority: str, digest: str, params_value: str) -> bytes:
    """The signature base (RFC 9421, clause 2.5) of BRIGHT's covered components.

    Parameters
    ----------
    method
        HTTP method in upper case.
    target_uri
        The absolute target URI (scheme, authority, path and query).
    authority
        The ``@authority`` value (see :func:`authority_of`).
    digest
        The ``Content-Digest`` header value.
    params_value
        The serialised inner list with its parameters (the ``Signature-Input`` member value).
    """
    values = {
        "@method": method.upper(),
        "@target-uri": target_uri,
        "@authority": authority,
        "content-digest": digest,
    }
    lines = [f'"{name}": {values[name]}' for name in COVERED_COMPONENTS]
    lines.append(f'"@signature-params": {params_value}')
    text = "\n".join(lines)
    if any(c in text for c in "\r") or any(ord(c) > 0x7E for c in text):
        raise SignatureError("a covered component holds characters that cannot be signed")
    return text.encode("ascii")


def signed_headers(
    identity: NodeIdentity,
    method: str,
    url: str,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
    *,
    created: int | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The headers that sign one request: ``Content-Digest``, ``Signature-Input``, ``Signature``.

    Parameters
    ----------
    identity
        This node's key pair.
    method
        HTTP method.
    url
        Absolute URL of the request, exactly as sent (query included).
    headers
        The request's other headers (not signed: only the components above are; accepted so the
        call reads like the request it signs).
    body
        The request body (None or empty: the digest of the empty body).
    created, nonce
        For tests and test vectors; default now and 128 random bits.

    Returns
    -------
    dict
        Headers to add to the request.
    """
    del headers  # the covered components do not include other header fields
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        raise SignatureError(f"{url!r} is not an absolute URL")
    digest = content_digest(body or b"")
    params: list[tuple[str, int | str]] = [
        ("created", int(time.time()) if created is None else int(created)),
        ("keyid", identity.did),
        ("nonce", nonce or secrets.token_urlsafe(16)),
        ("alg", "ed25519"),
    ]
    params_value = _params_value(COVERED_COMPONENTS, params)
    base = signature_base(method, url, authority_of(parts.scheme, parts.netloc), digest, params_value)
    signature = base64.b64encode(identity.sign(base)).decode("ascii")
    return {
        "Content-Digest": digest,
        "Signature-Input": f"{SIGNATURE_LABEL}={params_value}",
        "Signature": f"{SIGNATURE_LABEL}=:{signature}:",
    }


# --------------------------------------------------------------------------------------------------
# Parsing (the subset of RFC 8941 structured fields the two headers use)
# --------------------------------------------------------------------------------------------------

_KEY = re.compile(r"[a-z*][a-z0-9_\-.*]*")
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+\-.^_`|~:/]*")
_INT = re.compile(r"-?\d{1,15}")


class _Parser:
    def __init__(self, text: str, what: str) -> None:
        self.s = text
        self.i = 0
        self.what = what

    def fail(self, why: str) -> SignatureError:
        return SignatureError(f"{self.what} is malformed: {why} at character {self.i}")

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t":
            self.i += 1

    def key(self) -> str:
        m = _KEY.match(self.s, self.i)
        if not m:
            raise self.fail("a key was expected")
        self.i = m.end()
        return m.group(0)

    def string(self) -> str:
        if self.s[self.i : self.i + 1] != '"':
            raise self.fail("a string was expected")
        self.i += 1
        out = []
        while self.i < len(self.s):
            c = self.s[self.i]
            self.i += 1
            if c == "\\":
                if self.i >= len(self.s) or self.s[self.i] not in '"\\':
                    raise self.fail("bad escape")
                out.append(self.s[self.i])
                self.i += 1
            elif c == '"':
                return "".join(out)
            elif ord(c) < 0x20 or ord(c) > 0x7E:
                raise self.fail("a control character in a string")
            else:
                out.append(c)
        raise self.fail("an unterminated string")

    def bare(self) -> int | str | bytes | bool:
        c = self.s[self.i : self.i + 1]
        if c == '"':
            return self.string()
        if c == ":":
            end = self.s.find(":", self.i + 1)
            if end < 0:
                raise self.fail("an unterminated byte sequence")
            raw = self.s[self.i + 1 : end]
            self.i = end + 1
            try:
                return base64.b64decode(raw, validate=True)
            except ValueError:
                raise self.fail("a byte sequence that is not base64") from None
        if c == "?":
            v = self.s[self.i + 1 : self.i + 2]
            if v not in ("0", "1"):
                raise self.fail("a bad boolean")
            self.i += 2
            return v == "1"
        m = _INT.match(self.s, self.i)
        if m:
            self.i = m.end()
            return int(m.group(0))
        m = _TOKEN.match(self.s, self.i)
        if m:
            self.i = m.end()
            return m.group(0)
        raise self.fail("a value was expected")

    def params(self) -> list[tuple[str, int | str | bytes | bool]]:
        out: list[tuple[str, int | str | bytes | bool]] = []
        while self.s[self.i : self.i + 1] == ";":
            self.i += 1
            self.ws()
            name = self.key()
            value: int | str | bytes | bool = True
            if self.s[self.i : self.i + 1] == "=":
                self.i += 1
                value = self.bare()
            out.append((name, value))
        return out

    def member(self) -> tuple[Any, list[tuple[str, int | str | bytes | bool]], str]:
        start = self.i
        if self.s[self.i : self.i + 1] == "(":
            self.i += 1
            items: list[Any] = []
            while True:
                self.ws()
                if self.s[self.i : self.i + 1] == ")":
                    self.i += 1
                    break
                items.append(self.bare())
                self.params()
                if self.s[self.i : self.i + 1] not in (" ", ")"):
                    raise self.fail("an inner list item must be followed by a space or ')'")
            value: Any = items
        else:
            value = self.bare()
        params = self.params()
        return value, params, self.s[start : self.i]

    def dictionary(self) -> dict[str, tuple[Any, list[tuple[str, Any]], str]]:
        out: dict[str, tuple[Any, list[tuple[str, Any]], str]] = {}
        self.ws()
        while self.i < len(self.s):
            name = self.key()
            if self.s[self.i : self.i + 1] != "=":
                raise self.fail("'=' was expected")
            self.i += 1
            out[name] = self.member()
            self.ws()
            if self.i >= len(self.s):
                break
            if self.s[self.i] != ",":
                raise self.fail("',' was expected")
            self.i += 1
            self.ws()
        return out


# --------------------------------------------------------------------------------------------------
# Replay protection
# --------------------------------------------------------------------------------------------------


class NonceCache(Protocol):
    """Nonces already accepted, each until an expiry instant."""

    def remember(self, keyid: str, nonce: str, expires_at: float) -> bool:
        """Record the nonce; False if it was already recorded and has not expired (a replay)."""


class MemoryNonceCache:
    """Nonces of one process, in memory (tests, single-process nodes)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def remember(self, keyid: str, nonce: str, expires_at: float) -> bool:
        now = time.time()
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
            old = self._seen.get((keyid, nonce))
            if old is not None and old > now:
                return False
            self._seen[(keyid, nonce)] = expires_at
            return True


_meta = MetaData()
nonces_table = Table(
    "access_nonces",
    _meta,
    Column("keyid", String(128), primary_key=True),
    Column("nonce", String(128), primary_key=True),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


def _create_nonces(conn: Connection) -> None:
    _meta.create_all(conn, checkfirst=True)


migrations.register(71, "access: nonces of signed peer requests", _create_nonces)


class DatabaseNonceCache:
    """Nonces in the node's database (``access_nonces``): shared by every worker, kept on restart.

    The primary key (keyid, nonce) makes a replay fail its insert, whichever worker gets it.
    Expired rows are purged at most once a minute.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        migrations.migrate(engine)
        self._last_purge = 0.0

    def remember(self, keyid: str, nonce: str, expires_at: float) -> bool:
        now = time.time()
        if now - self._last_purge > 60:
            self._last_purge = now
            with self.engine.begin() as conn:
                conn.execute(delete(nonces_table).where(nonces_table.c.expires_at < datetime.now(UTC)))
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(nonces_table).values(
                        keyid=keyid, nonce=nonce, expires_at=datetime.fromtimestamp(expires_at, UTC)
                    )
                )
        except IntegrityError:
            return False
        return True


# --------------------------------------------------------------------------------------------------
# Verification
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSignature:
    """A signature that verified: who signed, when, with which nonce."""

    keyid: str
    created: int
    nonce: str
    label: str


def verify_request(
    method: str,
    target_uri: str,
    authority: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    known_key: Callable[[str], PublicIdentity | None],
    nonces: NonceCache,
    now: float | None = None,
) -> VerifiedSignature:
    """Check the BRIGHT signature of a received request.

    Parameters
    ----------
    method, target_uri, authority
        The request as this node received it (see :func:`authority_of`).
    headers
        Request headers, names in lower case.
    body
        The received body.
    known_key
        The trusted public identity of a ``keyid``, or None when the key is unknown.
    nonces
        Replay cache.
    now
        UNIX time, s (default the clock).

    Raises
    ------
    SignatureError
        The reason the request is refused.
    """
    now = time.time() if now is None else now
    sig_input, sig = headers.get("signature-input"), headers.get("signature")
    if not sig_input or not sig:
        raise SignatureError("the request has no Signature-Input and Signature headers")
    inputs = _Parser(sig_input, "Signature-Input").dictionary()
    signatures = _Parser(sig, "Signature").dictionary()
    label = SIGNATURE_LABEL if SIGNATURE_LABEL in inputs else next(iter(inputs), None)
    if label is None or label not in signatures:
        raise SignatureError("Signature-Input and Signature name no common signature label")
    components, params_list, params_value = inputs[label]
    if not isinstance(components, list):
        raise SignatureError("Signature-Input does not list covered components")
    params = dict(params_list)
    missing = [c for c in COVERED_COMPONENTS if c not in components]
    if missing or len(components) != len(COVERED_COMPONENTS):
        raise SignatureError(
            f"the signature must cover exactly {', '.join(COVERED_COMPONENTS)}"
            + (f" (missing {', '.join(missing)})" if missing else "")
        )
    if list(components) != list(COVERED_COMPONENTS):
        raise SignatureError(f"covered components must be in the order {' '.join(COVERED_COMPONENTS)}")
    if params.get("alg") != "ed25519":
        raise SignatureError(f"signature algorithm {params.get('alg')!r} is not ed25519")
    created, nonce, keyid = params.get("created"), params.get("nonce"), params.get("keyid")
    if not isinstance(created, int) or isinstance(created, bool):
        raise SignatureError("the signature has no integer 'created' parameter")
    if not isinstance(nonce, str) or not 16 <= len(nonce) <= 128:
        raise SignatureError("the signature has no 'nonce' parameter of 16 to 128 characters")
    if not isinstance(keyid, str):
        raise SignatureError("the signature has no 'keyid' parameter")
    if abs(now - created) > MAX_SKEW_S:
        raise SignatureError(
            f"the signature was created {int(now - created)} s from now; at most {MAX_SKEW_S} s is accepted"
        )
    expires = params.get("expires")
    if isinstance(expires, int) and not isinstance(expires, bool) and expires < now:
        raise SignatureError("the signature has expired")
    try:
        public = known_key(keyid)
    except IdentityError:
        public = None
    if public is None:
        raise SignatureError(f"unknown key {keyid!r}: not a member of this node's network")
    digest = headers.get("content-digest", "")
    if digest != content_digest(body):
        raise SignatureError("Content-Digest does not match the request body")
    signature = signatures[label][0]
    if not isinstance(signature, bytes):
        raise SignatureError("Signature is not a byte sequence")
    base = signature_base(method, target_uri, authority, digest, params_value)
    if not public.verify(base, signature):
        raise SignatureError(f"the signature of key {keyid!r} does not verify")
    if not nonces.remember(keyid, nonce, float(created + MAX_SKEW_S)):
        raise SignatureError(f"nonce {nonce!r} was already used: a replayed request")
    return VerifiedSignature(keyid, created, nonce, label)


# --------------------------------------------------------------------------------------------------
# Outgoing clients
# --------------------------------------------------------------------------------------------------

_IDENTITIES: weakref.WeakKeyDictionary[Any, NodeIdentity] = weakref.WeakKeyDictionary()


def attach_identity(owner: Any, identity: NodeIdentity | None) -> None:
    """Sign the requests of the clients built with ``request_hooks(owner)`` with ``identity``.

    ``owner`` is the object the client belongs to (the node's twin service, a notification
    delivery...); None detaches.
    """
    if identity is None:
        _IDENTITIES.pop(owner, None)
    else:
        _IDENTITIES[owner] = identity


def identity_of(owner: Any) -> NodeIdentity | None:
    """The identity attached to ``owner``, if any."""
    try:
        return _IDENTITIES.get(owner)
    except TypeError:  # not weak-referenceable
        return None


def _sign(owner: Any, request: Any) -> None:
    identity = identity_of(owner)
    if identity is None:
        return
    for name in ("signature", "signature-input", "content-digest"):
        if name in request.headers:
            del request.headers[name]
    request.headers.update(
        signed_headers(identity, request.method, str(request.url), dict(request.headers), request.content)
    )


def request_hooks(owner: Any) -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks`` for an ``httpx.Client`` whose requests ``owner``'s identity signs."""

    def hook(request: Any) -> None:
        _sign(owner, request)

    return {"request": [hook]}


def async_request_hooks(owner: Any) -> dict[str, list[Callable[..., Any]]]:
    """``event_hooks`` for an ``httpx.AsyncClient`` whose requests ``owner``'s identity signs."""

    async def hook(request: Any) -> None:
        _sign(owner, request)

    return {"request": [hook]}
