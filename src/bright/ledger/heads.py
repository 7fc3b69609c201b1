"""Signed tree heads, peer cosignatures, fork evidence and the finality quorum.

A *signed tree head* (STH) is the log operator's statement "the log of community C had ``size``
records with root ``root`` at ``timestamp``", signed with Ed25519 over::

    b"bright-ledger/tree-head/v1\\x00" + canonical({community, root, schema, signer, size, timestamp})

Member nodes that checked the head (its signature, and its consistency with the last head they
cosigned) add a *cosignature*: their Ed25519 signature over the same statement with the context
``b"bright-ledger/cosignature/v1\\x00"``.  A head carries the cosignatures of the peers that
checked it.

Fork
    Two validly signed heads of the same community and size with different roots cannot both be
    prefixes of one append-only log: whoever signed both equivocated.  :func:`detect_fork` turns
    such a pair into :class:`ForkEvidence`, which anybody can re-check offline.

Finality
    An interval is *final* once the head that covers it is signed or cosigned by at least
    ``ceil(quorum * N)`` of the ``N`` community members (default quorum 2/3, so 67 of 100).
    Signatures by non-members, invalid signatures and duplicates do not count.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from hashlib import sha256
from typing import Any

from bright.ledger.identity import (
    IdentityError,
    NodeIdentity,
    PublicIdentity,
    b64url_decode,
    b64url_encode,
    public_key_from_did,
)
from bright.ledger.merkle import HASH_SIZE, ConsistencyProof, MerkleLog, verify_consistency
from bright.ledger.records import (
    SCHEMA_VERSION,
    RecordError,
    canonical_json,
    format_timestamp,
    parse_timestamp,
)

__all__ = [
    "COSIGNATURE_CONTEXT",
    "DEFAULT_QUORUM",
    "HEAD_CONTEXT",
    "Cosignature",
    "Finality",
    "ForkDetected",
    "ForkEvidence",
    "ForkMonitor",
    "HeadError",
    "SignedTreeHead",
    "cosign",
    "detect_fork",
    "finality",
    "is_final",
    "quorum_size",
]

#: Domain-separation prefix of a tree-head signature.
HEAD_CONTEXT = b"bright-ledger/tree-head/v1\x00"
#: Domain-separation prefix of a cosignature.
COSIGNATURE_CONTEXT = b"bright-ledger/cosignature/v1\x00"
#: Default fraction of members whose signatures make a head final.
DEFAULT_QUORUM = Fraction(2, 3)


class HeadError(ValueError):
    """A tree head or cosignature is malformed, badly signed or inconsistent."""


def _did_or_raise(did: Any, what: str) -> str:
    try:
        public_key_from_did(did)
    except IdentityError as error:
        raise HeadError(f"{what}: {error}") from None
    return str(did)


def _bytes_or_raise(value: Any, size: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != size:
        raise HeadError(f"{what} must be {size} bytes")
    return value


@dataclass(frozen=True, slots=True)
class Cosignature:
    """A peer's signature over a tree head's statement.

    Attributes
    ----------
    signer : str
        ``did:key`` of the cosigning peer.
    signature : bytes
        64-byte Ed25519 signature over ``COSIGNATURE_CONTEXT + head.statement()``.
    """

    signer: str
    signature: bytes

    def __post_init__(self) -> None:
        _did_or_raise(self.signer, "cosignature signer")
        _bytes_or_raise(self.signature, 64, f"cosignature of {self.signer}")

    def to_json(self) -> dict[str, str]:
        """JSON object ``{"signer", "signature"}`` (signature in base64url)."""
        return {"signer": self.signer, "signature": b64url_encode(self.signature)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Cosignature:
        """Parse :meth:`to_json` output.

        Parameters
        ----------
        data : Mapping
            Decoded JSON object.

        Returns
        -------
        Cosignature
        """
        if not isinstance(data, Mapping) or set(data) != {"signer", "signature"}:
            raise HeadError("cosignature must be an object with keys signer, signature")
        try:
            signature = b64url_decode(data["signature"], what=f"cosignature of {data['signer']}")
        except IdentityError as error:
            raise HeadError(str(error)) from None
        return cls(data["signer"], signature)


@dataclass(frozen=True, slots=True)
class SignedTreeHead:
    """A tree head signed by the log operator, with the cosignatures of the peers that checked it.

    Attributes
    ----------
    community : str
        Identifier of the community whose log this is.
    size : int
        Number of records in the log.
    root : bytes
        32-byte Merkle root of the first ``size`` records.
    timestamp : datetime
        When the head was signed (UTC, whole seconds).
    signer : str
        ``did:key`` of the log operator that signed it.
    signature : bytes
        64-byte Ed25519 signature over ``HEAD_CONTEXT + statement()``.
    cosignatures : tuple of Cosignature
        Peer cosignatures, one per signer, sorted by signer.

    Examples
    --------
    >>> from bright.ledger.merkle import MerkleLog
    >>> operator, peer = NodeIdentity.generate(), NodeIdentity.generate()
    >>> log = MerkleLog(); _ = log.append(b"record")
    >>> head = SignedTreeHead.for_log(log, operator, community="urn:community:1")
    >>> head = head.with_cosignatures(cosign(head, peer))
    >>> head.verify_signature(), sorted(head.valid_cosigners()) == [peer.did]
    (True, True)
    """

    community: str
    size: int
    root: bytes
    timestamp: datetime
    signer: str
    signature: bytes
    cosignatures: tuple[Cosignature, ...] = field(default=())

    def __post_init__(self) -> None:
        if not isinstance(self.community, str) or not self.community:
            raise HeadError("tree head community must be a non-empty string")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size < 2**53:
            raise HeadError(f"tree head size must be an integer in [0, 2**53), got {self.size!r}")
        _bytes_or_raise(self.root, HASH_SIZE, "tree head root")
        try:
            format_timestamp(self.timestamp, field="tree head timestamp")
        except RecordError as error:
            raise HeadError(str(error)) from None
        _did_or_raise(self.signer, "tree head signer")
        _bytes_or_raise(self.signature, 64, "tree head signature")
        by_signer: dict[str, Cosignature] = {}
        for item in self.cosignatures:
            if not isinstance(item, Cosignature):
                raise HeadError("tree head cosignatures must be Cosignature objects")
            if by_signer.setdefault(item.signer, item) != item:
                raise HeadError(f"tree head carries two different cosignatures by {item.signer}")
        object.__setattr__(self, "cosignatures", tuple(by_signer[key] for key in sorted(by_signer)))

    # -- statement and signatures --------------------------------------------------------

    def _statement_object(self) -> dict[str, Any]:
        return {
            "community": self.community,
            "root": b64url_encode(self.root),
            "schema": SCHEMA_VERSION,
            "signer": self.signer,
            "size": self.size,
            "timestamp": format_timestamp(self.timestamp),
        }

    def statement(self) -> bytes:
        """Canonical JSON of what is signed and cosigned (without any signature)."""
        return canonical_json(self._statement_object())

    @property
    def digest(self) -> bytes:
        """SHA-256 of :meth:`statement`: identifies the head independently of its cosignatures."""
        return sha256(self.statement()).digest()

    @classmethod
    def sign(
        cls,
        identity: NodeIdentity,
        *,
        community: str,
        size: int,
        root: bytes,
        timestamp: datetime | None = None,
    ) -> SignedTreeHead:
        """Sign a tree head as the log operator.

        Parameters
        ----------
        identity : NodeIdentity
            The log operator's identity.
        community : str
            Identifier of the community.
        size : int
            Number of records.
        root : bytes
            32-byte root of those records.
        timestamp : datetime, optional
            Signing time (aware, whole seconds); defaults to now, truncated to the second.

        Returns
        -------
        SignedTreeHead
        """
        moment = datetime.now(UTC).replace(microsecond=0) if timestamp is None else timestamp
        unsigned = cls(community, size, root, moment, identity.did, bytes(64))
        return cls(
            community, size, root, moment, identity.did, identity.sign(HEAD_CONTEXT + unsigned.statement())
        )

    @classmethod
    def for_log(
        cls,
        log: MerkleLog,
        identity: NodeIdentity,
        *,
        community: str,
        size: int | None = None,
        timestamp: datetime | None = None,
    ) -> SignedTreeHead:
        """Sign the head of a Merkle log (its current size unless ``size`` is given).

        Parameters
        ----------
        log : MerkleLog
            The log.
        identity : NodeIdentity
            The log operator's identity.
        community : str
            Identifier of the community.
        size : int, optional
            Tree size to sign; defaults to ``log.size``.
        timestamp : datetime, optional
            Signing time; defaults to now.

        Returns
        -------
        SignedTreeHead
        """
        size = log.size if size is None else size
        return cls.sign(identity, community=community, size=size, root=log.root(size), timestamp=timestamp)

    def verify_signature(self) -> bool:
        """True if :attr:`signature` is the signer's over this head's statement."""
        return PublicIdentity.from_did(self.signer).verify(HEAD_CONTEXT + self.statement(), self.signature)

    def cosignature_is_valid(self, cosignature: Cosignature) -> bool:
        """True if ``cosignature`` is its signer's signature over this head's statement.

        Parameters
        ----------
        cosignature : Cosignature
            The cosignature to check.

        Returns
        -------
        bool
        """
        return PublicIdentity.from_did(cosignature.signer).verify(
            COSIGNATURE_CONTEXT + self.statement(), cosignature.signature
        )

    def valid_cosigners(self) -> frozenset[str]:
        """DIDs of the peers whose cosignature on this head is valid."""
        statement = COSIGNATURE_CONTEXT + self.statement()
        return frozenset(
            item.signer
            for item in self.cosignatures
            if PublicIdentity.from_did(item.signer).verify(statement, item.signature)
        )

    def with_cosignatures(self, *cosignatures: Cosignature) -> SignedTreeHead:
        """Return this head with more cosignatures (each checked; duplicates by signer merged).

        Parameters
        ----------
        *cosignatures : Cosignature
            Cosignatures to add.

        Returns
        -------
        SignedTreeHead

        Raises
        ------
        HeadError
            If a cosignature does not verify against this head.
        """
        known = {item.signer: item for item in self.cosignatures}
        for item in cosignatures:
            if not self.cosignature_is_valid(item):
                raise HeadError(f"cosignature by {item.signer} does not verify for head of size {self.size}")
            known[item.signer] = item
        return SignedTreeHead(
            self.community,
            self.size,
            self.root,
            self.timestamp,
            self.signer,
            self.signature,
            tuple(known.values()),
        )

    def without_cosignatures(self) -> SignedTreeHead:
        """This head with no cosignatures (what a peer receives before cosigning)."""
        return SignedTreeHead(
            self.community, self.size, self.root, self.timestamp, self.signer, self.signature
        )

    # -- JSON ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """JSON object: the statement's fields, ``signature`` and ``cosignatures``."""
        return {
            **self._statement_object(),
            "signature": b64url_encode(self.signature),
            "cosignatures": [item.to_json() for item in self.cosignatures],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignedTreeHead:
        """Parse :meth:`to_json` output, checking every field (not the signatures).

        Parameters
        ----------
        data : Mapping
            Decoded JSON object.

        Returns
        -------
        SignedTreeHead
        """
        expected = {"community", "root", "schema", "signer", "size", "timestamp", "signature", "cosignatures"}
        if not isinstance(data, Mapping) or set(data) != expected:
            raise HeadError(f"tree head must be an object with keys {sorted(expected)}")
        if data["schema"] != SCHEMA_VERSION:
            raise HeadError(f"tree head schema {data['schema']!r} is not supported (only {SCHEMA_VERSION})")
        if not isinstance(data["cosignatures"], list):
            raise HeadError("tree head cosignatures must be a list")
        try:
            root = b64url_decode(data["root"], what="tree head root")
            signature = b64url_decode(data["signature"], what="tree head signature")
            timestamp = parse_timestamp(data["timestamp"], field="tree head timestamp")
        except (IdentityError, RecordError) as error:
            raise HeadError(str(error)) from None
        return cls(
            data["community"],
            data["size"],
            root,
            timestamp,
            data["signer"],
            signature,
            tuple(Cosignature.from_json(item) for item in data["cosignatures"]),
        )

    def describe(self) -> str:
        """One-line description for messages (no signatures)."""
        return (
            f"head of {self.community} size {self.size} root {self.root.hex()[:16]}... "
            f"signed by {self.signer} at {format_timestamp(self.timestamp)}"
        )


# --------------------------------------------------------------------------- cosigning


def cosign(
    head: SignedTreeHead,
    identity: NodeIdentity,
    *,
    previous: SignedTreeHead | None = None,
    proof: ConsistencyProof | None = None,
) -> Cosignature:
    """Check a head as a witness and cosign it.

    The head's own signature must verify.  If ``previous`` (the last head this peer cosigned for
    the same log) is given, the two must be consistent: same size needs the same root (otherwise
    :class:`ForkDetected` is raised with both heads), different sizes need a valid consistency
    ``proof`` from the smaller to the larger.

    Parameters
    ----------
    head : SignedTreeHead
        The head to cosign.
    identity : NodeIdentity
        The cosigning peer.
    previous : SignedTreeHead, optional
        The last head this peer cosigned for the same community.
    proof : ConsistencyProof, optional
        Consistency proof between ``previous`` and ``head`` (needed when their sizes differ).

    Returns
    -------
    Cosignature

    Raises
    ------
    HeadError
        If a signature is invalid, the communities differ, or the proof is missing or fails.
    ForkDetected
        If ``previous`` has the same size and a different root.
    """
    if not head.verify_signature():
        raise HeadError(f"refusing to cosign: invalid signature on {head.describe()}")
    if previous is not None:
        if previous.community != head.community:
            raise HeadError(f"previous head is of {previous.community}, not {head.community}")
        if not previous.verify_signature():
            raise HeadError(f"previous head has an invalid signature: {previous.describe()}")
        if previous.size == head.size:
            if previous.root != head.root:
                raise ForkDetected(ForkEvidence(previous, head))
        else:
            old, new = (previous, head) if previous.size < head.size else (head, previous)
            if proof is None or (proof.old_size, proof.new_size) != (old.size, new.size):
                raise HeadError(
                    f"refusing to cosign: a consistency proof from size {old.size} to {new.size} is needed"
                )
            if not verify_consistency(old.root, new.root, proof):
                raise HeadError(
                    f"refusing to cosign: the log of size {new.size} does not extend the log of size {old.size}"
                )
    return Cosignature(identity.did, identity.sign(COSIGNATURE_CONTEXT + head.statement()))


# --------------------------------------------------------------------------- forks


@dataclass(frozen=True, slots=True)
class ForkEvidence:
    """Two signed heads of one log and size with different roots: proof of equivocation.

    Attributes
    ----------
    first, second : SignedTreeHead
        The conflicting heads, ordered by root.
    """

    first: SignedTreeHead
    second: SignedTreeHead

    def __post_init__(self) -> None:
        a, b = self.first, self.second
        if a.community != b.community or a.size != b.size:
            raise HeadError("fork evidence needs two heads of the same community and size")
        if a.root == b.root:
            raise HeadError("fork evidence needs two different roots")
        if a.root > b.root:  # canonical order, so equal evidence compares equal
            object.__setattr__(self, "first", b)
            object.__setattr__(self, "second", a)

    @property
    def community(self) -> str:
        """Community of the forked log."""
        return self.first.community

    @property
    def size(self) -> int:
        """Tree size at which the two heads disagree."""
        return self.first.size

    @property
    def equivocator(self) -> str | None:
        """DID that signed both heads, or None if two different signers disagree."""
        return self.first.signer if self.first.signer == self.second.signer else None

    def is_valid(self) -> bool:
        """True if both heads carry valid signatures (so the evidence holds against their signers)."""
        return self.first.verify_signature() and self.second.verify_signature()

    def describe(self) -> str:
        """Human-readable alarm text."""
        who = f"{self.equivocator} signed both" if self.equivocator else "different signers disagree"
        return (
            f"fork in the log of {self.community} at size {self.size}: roots "
            f"{self.first.root.hex()[:16]}... and {self.second.root.hex()[:16]}... ({who})"
        )

    def to_json(self) -> dict[str, Any]:
        """JSON object with both heads."""
        return {
            "community": self.community,
            "size": self.size,
            "heads": [self.first.to_json(), self.second.to_json()],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ForkEvidence:
        """Parse :meth:`to_json` output.

        Parameters
        ----------
        data : Mapping
            Decoded JSON object.

        Returns
        -------
        ForkEvidence
        """
        if (
            not isinstance(data, Mapping)
            or not isinstance(data.get("heads"), list)
            or len(data["heads"]) != 2
        ):
            raise HeadError("fork evidence must be an object with a list of two heads")
        return cls(SignedTreeHead.from_json(data["heads"][0]), SignedTreeHead.from_json(data["heads"][1]))


class ForkDetected(Exception):
    """Raised when two validly signed heads conflict; carries the :class:`ForkEvidence`."""

    def __init__(self, evidence: ForkEvidence) -> None:
        super().__init__(evidence.describe())
        self.evidence = evidence


def detect_fork(heads: Iterable[SignedTreeHead]) -> list[ForkEvidence]:
    """Find conflicting heads: same community and size, different roots, both validly signed.

    Heads whose own signature does not verify are ignored: a forged head is evidence against
    nobody.

    Parameters
    ----------
    heads : iterable of SignedTreeHead
        Heads seen from any source (own log, peers).

    Returns
    -------
    list of ForkEvidence
        One item per conflicting pair of distinct roots, sorted by community and size; empty
        if the heads are consistent.
    """
    by_position: dict[tuple[str, int], dict[bytes, SignedTreeHead]] = {}
    for head in heads:
        roots = by_position.setdefault((head.community, head.size), {})
        if head.root not in roots and head.verify_signature():
            roots[head.root] = head
    evidence = []
    for key in sorted(by_position):
        distinct = [by_position[key][root] for root in sorted(by_position[key])]
        for position, first in enumerate(distinct):
            for second in distinct[position + 1 :]:
                evidence.append(ForkEvidence(first, second))
    return evidence


class ForkMonitor:
    """Remembers the first valid head seen per (community, size) and raises on a conflicting one.

    Meant for a node that receives heads from peers: ``observe`` every head received.

    Examples
    --------
    >>> monitor = ForkMonitor()
    >>> operator = NodeIdentity.generate()
    >>> a = SignedTreeHead.sign(operator, community="c", size=1, root=bytes(32))
    >>> b = SignedTreeHead.sign(operator, community="c", size=1, root=bytes([1]) * 32)
    >>> monitor.observe(a) is None
    True
    >>> monitor.observe(b).equivocator == operator.did
    True
    """

    def __init__(self) -> None:
        self._heads: dict[tuple[str, int], SignedTreeHead] = {}
        self.evidence: list[ForkEvidence] = []

    def observe(self, head: SignedTreeHead) -> ForkEvidence | None:
        """Record a head; return fork evidence if it conflicts with one seen before.

        Parameters
        ----------
        head : SignedTreeHead
            A head from any source.

        Returns
        -------
        ForkEvidence or None
            None if the head is new or agrees; the evidence otherwise (also kept in
            :attr:`evidence`).

        Raises
        ------
        HeadError
            If the head's signature is invalid.
        """
        if not head.verify_signature():
            raise HeadError(f"ignoring head with an invalid signature: {head.describe()}")
        known = self._heads.setdefault((head.community, head.size), head)
        if known.root == head.root:
            return None
        evidence = ForkEvidence(known, head)
        if evidence not in self.evidence:
            self.evidence.append(evidence)
        return evidence


# --------------------------------------------------------------------------- finality


def _quorum_fraction(quorum: Fraction | float | int | str) -> Fraction:
    try:
        value = Fraction(str(quorum)) if isinstance(quorum, float) else Fraction(quorum)
    except (ValueError, TypeError, ZeroDivisionError):
        raise HeadError(f"quorum {quorum!r} is not a number") from None
    if not 0 < value <= 1:
        raise HeadError(f"quorum {quorum!r} must be in (0, 1]")
    return value


def quorum_size(member_count: int, quorum: Fraction | float | int | str = DEFAULT_QUORUM) -> int:
    """Number of member signatures that make a head final: ``ceil(quorum * member_count)``.

    Parameters
    ----------
    member_count : int
        Number of members of the community (> 0).
    quorum : Fraction, float, int or str, optional
        Fraction of members, in (0, 1]; default 2/3.  Floats are read through their decimal
        text (0.67 is 67/100).

    Returns
    -------
    int

    Examples
    --------
    >>> quorum_size(100), quorum_size(3), quorum_size(10, "1/2")
    (67, 2, 5)
    """
    if not isinstance(member_count, int) or member_count <= 0:
        raise HeadError(f"a community needs at least one member, got {member_count!r}")
    return math.ceil(_quorum_fraction(quorum) * member_count)


@dataclass(frozen=True, slots=True)
class Finality:
    """How far a head is from final.

    Attributes
    ----------
    size : int
        Size of the head.
    signers : frozenset of str
        Members whose valid signature or cosignature the head carries.
    required : int
        Number of member signatures needed.
    member_count : int
        Number of members.
    """

    size: int
    signers: frozenset[str]
    required: int
    member_count: int

    @property
    def final(self) -> bool:
        """True once enough members signed."""
        return len(self.signers) >= self.required

    @property
    def missing(self) -> int:
        """Member signatures still needed (0 once final)."""
        return max(0, self.required - len(self.signers))


def finality(
    head: SignedTreeHead,
    members: Collection[str],
    quorum: Fraction | float | int | str = DEFAULT_QUORUM,
) -> Finality:
    """Count the members that signed or validly cosigned a head.

    Parameters
    ----------
    head : SignedTreeHead
        The head.
    members : collection of str
        ``did:key`` of every member of the community.
    quorum : Fraction, float, int or str, optional
        Fraction of members needed, default 2/3.

    Returns
    -------
    Finality

    Raises
    ------
    HeadError
        If the head's own signature is invalid, or a member is not a valid ``did:key``.
    """
    member_set = {_did_or_raise(member, "community member") for member in members}
    required = quorum_size(len(member_set), quorum)
    if not head.verify_signature():
        raise HeadError(f"invalid signature on {head.describe()}")
    signers = set(head.valid_cosigners() & member_set)
    if head.signer in member_set:
        signers.add(head.signer)
    return Finality(head.size, frozenset(signers), required, len(member_set))


def is_final(
    head: SignedTreeHead,
    members: Collection[str],
    quorum: Fraction | float | int | str = DEFAULT_QUORUM,
) -> bool:
    """True if at least ``ceil(quorum * len(members))`` members signed or cosigned the head.

    Parameters
    ----------
    head : SignedTreeHead
        The head covering the interval.
    members : collection of str
        ``did:key`` of every member.
    quorum : Fraction, float, int or str, optional
        Fraction of members needed, default 2/3.

    Returns
    -------
    bool
    """
    return finality(head, members, quorum).final
