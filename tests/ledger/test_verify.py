"""Standalone verification of proof bundles and full log exports."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bright.ledger.heads import SignedTreeHead, cosign
from bright.ledger.identity import NodeIdentity, b64url_encode
from bright.ledger.merkle import MerkleLog, ProofError
from bright.ledger.records import FlexOffer, Settlement, sign_record
from bright.ledger.verify import (
    BUNDLE_FORMAT,
    audit_log,
    bundle_to_bytes,
    main,
    make_bundle,
    verify_bundle,
    verify_bundle_file,
)

COMMUNITY = "urn:bright:community:schaerbeek"
OPERATOR = NodeIdentity.from_seed(bytes([3]) * 32)
MEMBERS = [NodeIdentity.from_seed(bytes([i + 40]) * 32) for i in range(3)]
START = datetime(2024, 5, 1, tzinfo=UTC)


def _leaves(count: int, skip: int | None = None) -> list[bytes]:
    leaves = []
    for n in range(count):
        if n == skip:
            continue
        author = MEMBERS[n % 3]
        if n % 4 == 3:
            body: Any = FlexOffer(
                f"urn:offer:{n}", COMMUNITY, f"member-{n % 3}", "battery", "up",
                START, START + timedelta(hours=1), power_w=2500, price_cents_per_mwh=11000,
            )  # fmt: skip
        else:
            body = Settlement(
                COMMUNITY, f"member-{n % 3}", START + timedelta(minutes=15 * n), 500, 0, 200, 0, 2
            )
        leaves.append(sign_record(body, author).to_bytes())
    return leaves


@pytest.fixture
def ledger() -> tuple[MerkleLog, list[bytes], SignedTreeHead]:
    leaves = _leaves(12)
    log = MerkleLog()
    log.extend(leaves)
    head = SignedTreeHead.for_log(log, OPERATOR, community=COMMUNITY, timestamp=START + timedelta(hours=3))
    head = head.with_cosignatures(*(cosign(head, member) for member in MEMBERS[:2]))
    return log, leaves, head


def _bundle(
    ledger: tuple[MerkleLog, list[bytes], SignedTreeHead], *indices: int, **options: Any
) -> dict[str, Any]:
    log, leaves, head = ledger
    return make_bundle(log, head, {index: leaves[index] for index in indices}, **options)


def _trusted() -> set[str]:
    return {OPERATOR.did, *(member.did for member in MEMBERS)}


def test_valid_bundle_verifies_offline_through_a_file(ledger, tmp_path) -> None:
    bundle = _bundle(ledger, 2, 7, members=[member.did for member in MEMBERS])
    path = tmp_path / "proof.json"
    path.write_bytes(bundle_to_bytes(bundle))
    report = verify_bundle_file(path, trusted_keys=_trusted())
    assert report.ok, report.problems
    assert report.records == 2
    assert report.final is True  # 2 of 3 members cosigned; 2/3 of 3 = 2 needed
    assert "2 of 3 members signed the head (2 needed)" in report.notes
    assert main([str(path), *[arg for did in sorted(_trusted()) for arg in ("--key", did)]]) == 0
    # Without trusted keys the bundle's own keys are used, and the report says so.
    self_trusted = verify_bundle(json.loads(path.read_bytes()))
    assert self_trusted.ok and any("listed in the bundle itself" in note for note in self_trusted.notes)


def test_bundle_lists_every_signer_with_its_public_key(ledger) -> None:
    bundle = _bundle(ledger, 0, 1)
    listed = {item["did"]: item["public_key"] for item in bundle["keys"]}
    assert set(listed) == {OPERATOR.did, MEMBERS[0].did, MEMBERS[1].did}
    assert listed[OPERATOR.did] == b64url_encode(OPERATOR.public_key)
    assert bundle["format"] == BUNDLE_FORMAT


def test_changed_record_is_detected(ledger) -> None:
    bundle = _bundle(ledger, 2)
    bundle["entries"][0]["record"]["body"]["offtake_wh"] = 501
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert not report.ok
    assert any("forged or corrupted record signature" in problem for problem in report.problems)
    assert any("not in the log under the head" in problem for problem in report.problems)


def test_record_re_signed_by_its_author_is_still_detected(ledger) -> None:
    # Even the genuine author cannot change a logged record: its new leaf is not in the tree.
    bundle = _bundle(ledger, 2)
    forged = sign_record(
        Settlement(COMMUNITY, "member-2", START + timedelta(minutes=30), 500, 0, 200, 0, 1), MEMBERS[2]
    )
    bundle["entries"][0]["record"] = forged.to_json()
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert report.problems == ("record at index 2: not in the log under the head (the record was changed, moved or "
                               "removed, or the proof was altered)",)  # fmt: skip


def test_reordering_is_detected(ledger) -> None:
    bundle = _bundle(ledger, 4, 5)
    first, second = bundle["entries"]
    first["record"], second["record"] = second["record"], first["record"]
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert sum("not in the log under the head" in problem for problem in report.problems) == 2
    moved = _bundle(ledger, 4)
    moved["entries"][0]["index"] = 5
    assert any(
        "the proof is for index 4" in p for p in verify_bundle(moved, trusted_keys=_trusted()).problems
    )


def test_deletion_between_heads_is_detected(ledger) -> None:
    log, leaves, head = ledger
    earlier = SignedTreeHead.for_log(log, OPERATOR, community=COMMUNITY, size=8, timestamp=START)
    honest = make_bundle(log, head, {10: leaves[10]}, earlier_heads=[earlier])
    assert verify_bundle(honest, trusted_keys=_trusted()).ok
    # The operator deletes record 3 and re-signs: the new log no longer extends the earlier head.
    rewritten_leaves = _leaves(13, skip=3)
    rewritten = MerkleLog()
    rewritten.extend(rewritten_leaves)
    new_head = SignedTreeHead.for_log(
        rewritten, OPERATOR, community=COMMUNITY, timestamp=START + timedelta(hours=4)
    )
    bundle = make_bundle(rewritten, new_head, {9: rewritten_leaves[9]})
    bundle["consistency"] = [
        {"head": earlier.to_json(), "proof": rewritten.consistency_proof(8, 12).to_json()}
    ]
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert report.records == 1
    assert any("does not extend" in problem for problem in report.problems)


def test_altered_proof_path_is_detected(ledger) -> None:
    bundle = _bundle(ledger, 6)
    bundle["entries"][0]["proof"]["path"].pop()
    assert not verify_bundle(bundle, trusted_keys=_trusted()).ok
    bundle = _bundle(ledger, 6)
    bundle["entries"][0]["proof"]["path"][0] = b64url_encode(bytes(32))
    assert not verify_bundle(bundle, trusted_keys=_trusted()).ok


def test_forged_head_signature_is_detected(ledger) -> None:
    bundle = _bundle(ledger, 1)
    signature = bytearray(32) + bytearray(ledger[2].signature[32:])
    bundle["head"]["signature"] = b64url_encode(bytes(signature))
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert any("forged or corrupted head signature" in problem for problem in report.problems)
    # A head re-signed by someone else is signed validly, but not by a trusted key.
    impostor = NodeIdentity.generate()
    log, leaves, _ = ledger
    fake = SignedTreeHead.for_log(log, impostor, community=COMMUNITY, timestamp=START)
    report = verify_bundle(make_bundle(log, fake, {1: leaves[1]}), trusted_keys=_trusted())
    assert any(f"head signer {impostor.did} is not a trusted key" in problem for problem in report.problems)


def test_forged_record_signature_and_untrusted_author_are_detected(ledger) -> None:
    bundle = _bundle(ledger, 0)
    other = _bundle(ledger, 1)
    bundle["entries"][0]["record"]["sig"] = other["entries"][0]["record"]["sig"]
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert any("forged or corrupted record signature" in problem for problem in report.problems)
    report = verify_bundle(_bundle(ledger, 0), trusted_keys={OPERATOR.did})
    assert any("author" in problem and "not a trusted key" in problem for problem in report.problems)


def test_bundle_key_that_does_not_match_its_did_is_reported(ledger) -> None:
    bundle = _bundle(ledger, 0)
    bundle["keys"][0]["public_key"] = b64url_encode(bytes(32))
    report = verify_bundle(bundle)
    assert any("does not encode the listed public key" in problem for problem in report.problems)


def test_not_final_when_quorum_is_missing(ledger) -> None:
    log, leaves, head = ledger
    bundle = make_bundle(log, head.without_cosignatures(), {0: leaves[0]}, members=[m.did for m in MEMBERS])
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert report.ok and report.final is False
    assert "0 of 3 members signed the head (2 needed)" in report.notes


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b.update(format="other"),
        lambda b: b.update(head={"size": 1}),
        lambda b: b.update(entries=[]),
        lambda b: b["entries"][0].update(index="0"),
        lambda b: b["entries"][0].update(proof={"index": 0}),
        lambda b: b["entries"][0]["record"].update(kind="invoice"),
        lambda b: b.update(consistency="none"),
        lambda b: b.update(finality={"members": ["not-a-did"]}),
    ],
)
def test_malformed_bundles_give_a_verdict_not_a_crash(ledger, mutate: Any) -> None:
    bundle = copy.deepcopy(_bundle(ledger, 0))
    mutate(bundle)
    report = verify_bundle(bundle, trusted_keys=_trusted())
    assert not report.ok
    assert "INVALID" in report.summary()


def test_unreadable_file_and_cli_exit_code(tmp_path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    assert not verify_bundle_file(path).ok
    assert main([str(path)]) == 1


def test_make_bundle_refuses_inconsistent_input(ledger) -> None:
    log, leaves, head = ledger
    with pytest.raises(ProofError, match="record 3 is not the leaf"):
        make_bundle(log, head, {3: leaves[4]})
    other = MerkleLog()
    other.extend(leaves[:5])
    with pytest.raises(ProofError, match="does not match the log"):
        make_bundle(other, head, {0: leaves[0]})


def test_audit_log_detects_change_reorder_deletion_and_forks(ledger) -> None:
    log, leaves, head = ledger
    earlier = SignedTreeHead.for_log(log, OPERATOR, community=COMMUNITY, size=6, timestamp=START)
    assert audit_log(leaves, [earlier, head], trusted_keys=_trusted()).ok
    changed = [*leaves]
    changed[3] = changed[3].replace(b'"power_w":2500', b'"power_w":2600')  # record 3 is a flexibility offer
    report = audit_log(changed, [earlier, head])
    assert "record 3: forged or corrupted signature" in report.problems[0]
    assert any("the first 6 records do not match" in problem for problem in report.problems)
    reordered = [*leaves[:7], leaves[8], leaves[7], *leaves[9:]]
    problems = audit_log(reordered, [earlier, head]).problems
    assert problems == (
        f"{head.describe()}: the first 12 records do not match (changed, reordered or deleted)",
    )
    assert any("deletion" in p for p in audit_log(leaves[:-1], [earlier, head]).problems)
    rival = MerkleLog()
    rival.extend([*_leaves(12, skip=0), leaves[0]])
    fork = SignedTreeHead.for_log(rival, OPERATOR, community=COMMUNITY, size=12, timestamp=START)
    assert any(problem.startswith("fork:") for problem in audit_log(leaves, [head, fork]).problems)
