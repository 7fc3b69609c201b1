"""Signed tree heads, cosigning, fork detection and the finality quorum."""

from __future__ import annotations

from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.ledger.heads import (
    COSIGNATURE_CONTEXT,
    HEAD_CONTEXT,
    Cosignature,
    ForkDetected,
    ForkEvidence,
    ForkMonitor,
    HeadError,
    SignedTreeHead,
    cosign,
    detect_fork,
    finality,
    is_final,
    quorum_size,
)
from bright.ledger.identity import NodeIdentity, b64url_encode
from bright.ledger.merkle import MerkleLog

COMMUNITY = "urn:bright:community:schaerbeek"
NOON = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
OPERATOR = NodeIdentity.from_seed(bytes(32))
MEMBERS = [NodeIdentity.from_seed(bytes([i + 1]) * 32) for i in range(6)]


def _log(count: int, tag: bytes = b"") -> MerkleLog:
    log = MerkleLog()
    log.extend(tag + i.to_bytes(2, "big") for i in range(count))
    return log


def _head(log: MerkleLog, size: int | None = None, signer: NodeIdentity = OPERATOR) -> SignedTreeHead:
    return SignedTreeHead.for_log(log, signer, community=COMMUNITY, size=size, timestamp=NOON)


def test_statement_is_canonical_json_and_signature_covers_it() -> None:
    log = _log(3)
    head = _head(log)
    assert head.statement() == (
        b'{"community":"urn:bright:community:schaerbeek","root":"' + b64url_encode(log.root()).encode()
        + b'","schema":1,"signer":"' + OPERATOR.did.encode() + b'","size":3,"timestamp":"2024-05-01T12:00:00Z"}'
    )  # fmt: skip
    assert OPERATOR.public.verify(HEAD_CONTEXT + head.statement(), head.signature)
    assert head.verify_signature()
    # A cosignature is not a head signature (domain separation), and vice versa.
    peer = cosign(head, MEMBERS[0])
    assert MEMBERS[0].public.verify(COSIGNATURE_CONTEXT + head.statement(), peer.signature)
    assert not MEMBERS[0].public.verify(HEAD_CONTEXT + head.statement(), peer.signature)


def test_json_round_trip_with_cosignatures() -> None:
    head = _head(_log(5))
    head = head.with_cosignatures(cosign(head, MEMBERS[1]), cosign(head, MEMBERS[0]))
    decoded = SignedTreeHead.from_json(head.to_json())
    assert decoded == head
    assert [item.signer for item in decoded.cosignatures] == sorted([MEMBERS[0].did, MEMBERS[1].did])
    assert decoded.valid_cosigners() == {MEMBERS[0].did, MEMBERS[1].did}
    assert decoded.without_cosignatures().digest == head.digest  # cosignatures do not change identity


def test_tampered_heads_fail_verification() -> None:
    head = _head(_log(5))
    as_json = head.to_json()
    other_root = b64url_encode(_log(5, b"x").root())
    for change in (
        {"size": 4},
        {"root": other_root},
        {"timestamp": "2024-05-01T12:00:01Z"},
        {"community": "x"},
    ):
        assert not SignedTreeHead.from_json({**as_json, **change}).verify_signature()
    impostor = NodeIdentity.generate()
    assert not SignedTreeHead.from_json({**as_json, "signer": impostor.did}).verify_signature()


def test_invalid_cosignatures_are_refused_or_not_counted() -> None:
    head = _head(_log(4))
    other = _head(_log(4, b"x"))
    stolen = cosign(other, MEMBERS[0])  # valid, but for another head
    with pytest.raises(HeadError, match="does not verify"):
        head.with_cosignatures(stolen)
    smuggled = SignedTreeHead(*[getattr(head, name) for name in ("community", "size", "root", "timestamp", "signer", "signature")], (stolen,))  # fmt: skip
    assert smuggled.valid_cosigners() == frozenset()
    with pytest.raises(HeadError, match="two different cosignatures"):
        SignedTreeHead(head.community, head.size, head.root, head.timestamp, head.signer, head.signature,
                       (cosign(head, MEMBERS[0]), stolen))  # fmt: skip


def test_malformed_heads_are_refused() -> None:
    head = _head(_log(2))
    with pytest.raises(HeadError, match="root must be 32 bytes"):
        SignedTreeHead(COMMUNITY, 2, b"short", NOON, OPERATOR.did, head.signature)
    with pytest.raises(HeadError, match="timezone-aware"):
        SignedTreeHead(COMMUNITY, 2, head.root, datetime(2024, 5, 1), OPERATOR.did, head.signature)
    with pytest.raises(HeadError, match="signer"):
        SignedTreeHead(COMMUNITY, 2, head.root, NOON, "did:web:example.org", head.signature)
    with pytest.raises(HeadError, match="schema"):
        SignedTreeHead.from_json({**head.to_json(), "schema": 9})
    with pytest.raises(HeadError, match="keys"):
        SignedTreeHead.from_json({"size": 2})


def test_witness_cosigns_only_consistent_extensions() -> None:
    log = _log(10)
    old, new = _head(log, 6), _head(log, 10)
    proof = log.consistency_proof(6, 10)
    assert cosign(new, MEMBERS[0], previous=old, proof=proof).signer == MEMBERS[0].did
    with pytest.raises(HeadError, match="consistency proof from size 6 to 10 is needed"):
        cosign(new, MEMBERS[0], previous=old)
    # A log rewritten after size 6 (record 2 changed) cannot prove consistency with the old head.
    rewritten = MerkleLog()
    rewritten.extend(b"X" if i == 2 else i.to_bytes(2, "big") for i in range(10))
    forged = _head(rewritten, 10)
    with pytest.raises(HeadError, match="does not extend"):
        cosign(forged, MEMBERS[0], previous=old, proof=rewritten.consistency_proof(6, 10))
    with pytest.raises(HeadError, match="invalid signature"):
        bad = SignedTreeHead(new.community, new.size, new.root, new.timestamp, new.signer, bytes(64))
        cosign(bad, MEMBERS[0])


def test_witness_raises_fork_with_both_heads_as_evidence() -> None:
    honest, forked = _log(8), _log(8, b"f")
    a, b = _head(honest), _head(forked)
    with pytest.raises(ForkDetected) as raised:
        cosign(b, MEMBERS[0], previous=a)
    evidence = raised.value.evidence
    assert {evidence.first.root, evidence.second.root} == {honest.root(), forked.root()}
    assert evidence.equivocator == OPERATOR.did
    assert evidence.is_valid()
    assert "fork in the log of urn:bright:community:schaerbeek at size 8" in str(raised.value)
    assert ForkEvidence.from_json(evidence.to_json()) == evidence


def test_detect_fork_finds_every_conflicting_pair_and_ignores_forgeries() -> None:
    logs = [_log(5, tag) for tag in (b"a", b"b", b"c")]
    heads = [_head(log) for log in logs]
    assert detect_fork([heads[0], _head(logs[0], 3), heads[0]]) == []
    found = detect_fork(heads)
    assert len(found) == 3  # three distinct roots at size 5: pairs ab, ac, bc
    assert all(item.size == 5 and item.is_valid() for item in found)
    forged = SignedTreeHead(COMMUNITY, 5, logs[1].root(), NOON, OPERATOR.did, bytes(64))
    assert detect_fork([heads[0], forged]) == []  # a forged head is evidence against nobody
    other_community = SignedTreeHead.for_log(logs[1], OPERATOR, community="urn:other", timestamp=NOON)
    assert detect_fork([heads[0], other_community]) == []
    two_signers = detect_fork([heads[0], _head(logs[1], signer=MEMBERS[0])])
    assert len(two_signers) == 1 and two_signers[0].equivocator is None


def test_fork_monitor_alarms_once_per_conflict() -> None:
    monitor = ForkMonitor()
    a, b = _head(_log(4, b"a")), _head(_log(4, b"b"))
    assert monitor.observe(a) is None
    assert monitor.observe(a) is None
    evidence = monitor.observe(b)
    assert evidence is not None and monitor.observe(b) == evidence
    assert monitor.evidence == [evidence]
    with pytest.raises(HeadError):
        monitor.observe(SignedTreeHead(a.community, a.size, a.root, a.timestamp, a.signer, bytes(64)))


def test_quorum_sizes_worked_examples() -> None:
    assert quorum_size(100) == 67  # 2/3 * 100 = 66.67 -> 67
    assert quorum_size(99) == 66  # exactly 66
    assert quorum_size(3) == 2
    assert quorum_size(10, Fraction(1, 2)) == 5
    assert quorum_size(10, 0.67) == 7  # 6.7 -> 7 (the float is read as 67/100)
    assert quorum_size(10, 1) == 10
    for bad in (0, 1.5, -1, "abc"):
        with pytest.raises(HeadError):
            quorum_size(10, bad)
    with pytest.raises(HeadError):
        quorum_size(0)


def test_finality_counts_distinct_valid_member_signatures() -> None:
    members = [member.did for member in MEMBERS]  # 6 members, 2/3 -> 4 signatures needed
    head = _head(_log(20))
    three = head.with_cosignatures(*(cosign(head, member) for member in MEMBERS[:3]))
    status = finality(three, members)
    assert (len(status.signers), status.required, status.missing, status.final) == (3, 4, 1, False)
    outsider = NodeIdentity.generate()
    assert not is_final(three.with_cosignatures(cosign(head, outsider)), members)  # non-member
    assert not is_final(three.with_cosignatures(cosign(head, MEMBERS[0])), members)  # duplicate
    four = three.with_cosignatures(cosign(head, MEMBERS[3]))
    assert is_final(four, members)
    assert not is_final(four, members, quorum=Fraction(5, 6))  # 5 needed
    # The head signer counts when it is a member.
    by_member = _head(_log(20), signer=MEMBERS[5])
    by_member = by_member.with_cosignatures(*(cosign(by_member, member) for member in MEMBERS[:3]))
    assert is_final(by_member, members)
    with pytest.raises(HeadError, match="invalid signature"):
        is_final(SignedTreeHead(head.community, head.size, head.root, NOON, head.signer, bytes(64)), members)
    with pytest.raises(HeadError, match="community member"):
        is_final(head, ["not-a-did"])


def test_cosignature_json_validation() -> None:
    item = cosign(_head(_log(1)), MEMBERS[0])
    assert Cosignature.from_json(item.to_json()) == item
    with pytest.raises(HeadError):
        Cosignature.from_json({"signer": MEMBERS[0].did, "signature": "AAAA"})


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 10_000), st.fractions(min_value=Fraction(1, 100), max_value=1))
def test_property_quorum_is_the_smallest_sufficient_count(members: int, quorum: Fraction) -> None:
    needed = quorum_size(members, quorum)
    assert 1 <= needed <= members
    assert needed >= quorum * members > needed - 1
