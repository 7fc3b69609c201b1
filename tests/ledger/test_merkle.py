"""Merkle log: RFC 6962 / 9162 test vectors, proofs, tampering, cross-check with pymerkle."""

from __future__ import annotations

from hashlib import sha256

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.ledger.merkle import (
    EMPTY_ROOT,
    ConsistencyProof,
    InclusionProof,
    MerkleLog,
    ProofError,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)

# Certificate Transparency reference data (RFC 6962 test vectors as published with the
# reference implementations): eight leaves and the root of every prefix.
CT_LEAVES = [
    bytes.fromhex(text)
    for text in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
CT_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
CT_INCLUSION = {
    (0, 8): ["96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
             "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (5, 8): ["bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
}  # fmt: skip
CT_CONSISTENCY = {
    (2, 8): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4"],
    (6, 8): ["0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
             "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
             "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7"],
    (2, 5): ["5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
             "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b"],
}  # fmt: skip


def _reference_root(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH, written as the RFC's recursion (a slow, independent reference)."""
    if not hashes:
        return sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    split = 1
    while split * 2 < len(hashes):
        split *= 2
    return node_hash(_reference_root(hashes[:split]), _reference_root(hashes[split:]))


def _log(count: int) -> MerkleLog:
    log = MerkleLog()
    log.extend(i.to_bytes(4, "big") for i in range(count))
    return log


def test_ct_reference_roots_for_every_size() -> None:
    log = MerkleLog()
    assert log.extend(CT_LEAVES) == range(8)
    for size, expected in enumerate(CT_ROOTS):
        assert log.root(size).hex() == expected
    assert log.root(0) == EMPTY_ROOT


def test_hashing_prefixes_by_hand() -> None:
    # Leaf: SHA-256(0x00 || data); node: SHA-256(0x01 || left || right).
    assert leaf_hash(b"") == sha256(b"\x00").digest()
    a, b, c = leaf_hash(b"a"), leaf_hash(b"b"), leaf_hash(b"c")
    log = MerkleLog()
    for data in (b"a", b"b", b"c"):
        log.append(data)
    # Three leaves: k = 2, so MTH = H(0x01 || H(0x01 || a || b) || c), not a balanced split.
    assert log.root() == sha256(b"\x01" + sha256(b"\x01" + a + b).digest() + c).digest()
    assert log.root(2) == node_hash(a, b)
    assert log.leaf_hash(2) == c


@pytest.mark.parametrize(("index", "size"), sorted(CT_INCLUSION))
def test_ct_reference_inclusion_proofs(index: int, size: int) -> None:
    log = MerkleLog()
    log.extend(CT_LEAVES)
    proof = log.inclusion_proof(index, size)
    assert [item.hex() for item in proof.path] == CT_INCLUSION[(index, size)]
    assert verify_inclusion(leaf_hash(CT_LEAVES[index]), proof, bytes.fromhex(CT_ROOTS[size]))


@pytest.mark.parametrize(("old", "new"), sorted(CT_CONSISTENCY))
def test_ct_reference_consistency_proofs(old: int, new: int) -> None:
    log = MerkleLog()
    log.extend(CT_LEAVES)
    proof = log.consistency_proof(old, new)
    assert [item.hex() for item in proof.path] == CT_CONSISTENCY[(old, new)]
    assert verify_consistency(bytes.fromhex(CT_ROOTS[old]), bytes.fromhex(CT_ROOTS[new]), proof)


def test_every_proof_of_every_small_tree_verifies_and_matches_the_reference() -> None:
    log = _log(40)
    hashes = log.leaf_hashes()
    for size in range(0, 41):
        root = log.root(size)
        assert root == _reference_root(hashes[:size])
        for index in range(size):
            assert verify_inclusion(hashes[index], log.inclusion_proof(index, size), root)
        for old in range(0, size + 1):
            assert verify_consistency(log.root(old), root, log.consistency_proof(old, size))


def test_roots_and_proofs_agree_with_pymerkle() -> None:
    pymerkle = pytest.importorskip("pymerkle")
    tree = pymerkle.InmemoryTree()
    log = MerkleLog()
    for i in range(70):
        tree.append_entry(bytes([i]) * (i % 5))
        log.append(bytes([i]) * (i % 5))
    for size in range(1, 71):
        assert log.root(size) == tree.get_root(size)
    # Proofs from pymerkle verify against our roots, and vice versa through the roots.
    for index, size in [(0, 1), (10, 37), (69, 70)]:
        theirs = tree.prove_inclusion(index + 1, size)  # pymerkle counts leaves from 1
        pymerkle.verify_inclusion(tree.get_leaf(index + 1), log.root(size), theirs)
        assert verify_inclusion(log.leaf_hash(index), log.inclusion_proof(index, size), tree.get_root(size))


def test_tampering_is_detected() -> None:
    log = _log(13)
    root = log.root()
    proof = log.inclusion_proof(6)
    leaf = log.leaf_hash(6)
    assert verify_inclusion(leaf, proof, root)
    assert not verify_inclusion(log.leaf_hash(7), proof, root)  # another record
    assert not verify_inclusion(leaf, InclusionProof(7, 13, proof.path), root)  # moved record
    # A size of another shape fails; binding the size to the root is the signed head's job.
    assert not verify_inclusion(leaf, InclusionProof(6, 7, proof.path), root)
    assert not verify_inclusion(leaf, InclusionProof(6, 13, proof.path[:-1]), root)  # element removed
    assert not verify_inclusion(leaf, InclusionProof(6, 13, (*proof.path, root)), root)  # element added
    flipped = bytes([proof.path[1][0] ^ 0x80]) + proof.path[1][1:]
    assert not verify_inclusion(leaf, InclusionProof(6, 13, (proof.path[0], flipped, *proof.path[2:])), root)
    assert not verify_inclusion(leaf, InclusionProof(13, 13, proof.path), root)  # index past the end

    link = log.consistency_proof(5, 13)
    assert verify_consistency(log.root(5), root, link)
    assert not verify_consistency(log.root(4), root, link)
    assert not verify_consistency(log.root(5), log.root(12), link)
    assert not verify_consistency(log.root(5), root, ConsistencyProof(5, 13, link.path[:-1]))
    assert not verify_consistency(log.root(5), root, ConsistencyProof(6, 13, link.path))


def test_rewritten_history_fails_consistency() -> None:
    honest = _log(10)
    rewritten = MerkleLog()
    rewritten.extend(i.to_bytes(4, "big") for i in range(10) if i != 3)  # record 3 deleted
    rewritten.extend([b"new", b"newer"])
    # The rewritten log cannot prove it extends the head the verifier holds for size 10.
    assert rewritten.size == 11
    for old in (4, 10):
        proof = rewritten.consistency_proof(old, 11) if old <= 11 else None
        assert proof is not None
        assert not verify_consistency(honest.root(old), rewritten.root(11), proof)


def test_edge_sizes() -> None:
    log = _log(5)
    assert verify_consistency(EMPTY_ROOT, log.root(), log.consistency_proof(0, 5))
    assert log.consistency_proof(5, 5).path == ()
    assert verify_consistency(log.root(), log.root(), ConsistencyProof(5, 5, ()))
    assert not verify_consistency(log.root(4), log.root(), ConsistencyProof(5, 5, ()))
    single = _log(1)
    assert single.inclusion_proof(0).path == ()
    assert root_from_inclusion_proof(single.leaf_hash(0), single.inclusion_proof(0)) == single.root()
    for bad in (lambda: log.inclusion_proof(5), lambda: log.root(6), lambda: log.consistency_proof(4, 6)):
        with pytest.raises(ProofError):
            bad()
    with pytest.raises(ProofError):
        log.consistency_proof(5, 4)
    with pytest.raises(ProofError):
        log.append_hash(b"short")


def test_proof_json_round_trip_and_validation() -> None:
    log = _log(9)
    proof = log.inclusion_proof(4)
    assert InclusionProof.from_json(proof.to_json()) == proof
    link = log.consistency_proof(3)
    assert ConsistencyProof.from_json(link.to_json()) == link
    bad_path = {**proof.to_json(), "path": ["AAAA"]}
    with pytest.raises(ProofError, match="32-byte"):
        InclusionProof.from_json(bad_path)
    with pytest.raises(ProofError):
        InclusionProof.from_json({"index": True, "size": 9, "path": []})
    with pytest.raises(ProofError):
        ConsistencyProof.from_json({"old_size": 1, "new_size": 2})


def test_memory_is_about_two_hashes_per_leaf() -> None:
    log = _log(1024)
    stored = sum(len(level) for level in log._levels)
    # 1024 leaf hashes + 512 + 256 + ... + 1 perfect subtrees = 2047 hashes of 32 bytes.
    assert stored == 2047 * 32


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 300), data=st.data())
def test_property_proofs_verify_and_nothing_else_does(size: int, data: st.DataObject) -> None:
    log = _log(size)
    index = data.draw(st.integers(0, size - 1))
    old = data.draw(st.integers(1, size))
    root = log.root()
    proof = log.inclusion_proof(index)
    assert len(proof.path) <= size.bit_length()  # O(log n)
    assert verify_inclusion(log.leaf_hash(index), proof, root)
    other = data.draw(st.integers(0, size - 1))
    if other != index:
        assert not verify_inclusion(log.leaf_hash(other), proof, root)
    link = log.consistency_proof(old)
    assert verify_consistency(log.root(old), root, link)
    if link.path:
        position = data.draw(st.integers(0, len(link.path) - 1))
        broken = list(link.path)
        broken[position] = sha256(broken[position]).digest()
        assert not verify_consistency(log.root(old), root, ConsistencyProof(old, size, tuple(broken)))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.binary(max_size=20), min_size=0, max_size=70))
def test_property_root_is_rfc_mth(leaves: list[bytes]) -> None:
    log = MerkleLog()
    log.extend(leaves)
    assert log.root() == _reference_root([leaf_hash(leaf) for leaf in leaves])
    assert MerkleLog.from_leaf_hashes(log.leaf_hashes()).root() == log.root()
