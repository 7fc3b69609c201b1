"""Standalone verification of ledger proofs: a JSON bundle and the public keys, nothing else.

A *proof bundle* lets anybody check, offline, that records are in a community's log::

    {
      "format": "bright-ledger-proof/1",
      "head": {signed tree head with its cosignatures},
      "entries": [{"index": 17, "record": {signed record envelope}, "proof": {inclusion proof}}],
      "consistency": [{"head": {an earlier signed head}, "proof": {consistency proof}}],
      "keys": [{"did": "did:key:z6Mk...", "public_key": "<base64url>"}],
      "finality": {"members": ["did:key:...", ...], "quorum": "2/3"}      (optional)
    }

:func:`verify_bundle` checks that

* every key's DID encodes the listed public key, and every signer is among the trusted keys
  (those passed by the caller, or else the bundle's own ``keys``: then the report says so);
* the head's signature is valid (a forged signature is reported);
* each record is in canonical form, signed by its author, and its inclusion proof leads from
  the record's leaf hash at the stated index to the head's root: a changed record, a record
  moved to another index (reordering), a missing or altered path element all fail here;
* each earlier head is validly signed and is a prefix of the head (consistency proof), so a
  deletion or rewrite between two heads the verifier knows is caught;
* optionally, that enough members cosigned the head for it to be final.

:func:`audit_log` checks a full export (every record and every head) the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from bright.ledger.heads import (
    DEFAULT_QUORUM,
    HeadError,
    SignedTreeHead,
    detect_fork,
    finality,
)
from bright.ledger.identity import IdentityError, b64url_decode, b64url_encode, public_key_from_did
from bright.ledger.merkle import (
    ConsistencyProof,
    InclusionProof,
    MerkleLog,
    ProofError,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from bright.ledger.records import RecordError, SignedRecord, canonical_json

__all__ = [
    "BUNDLE_FORMAT",
    "VerificationReport",
    "audit_log",
    "bundle_to_bytes",
    "main",
    "make_bundle",
    "verify_bundle",
    "verify_bundle_file",
]

#: Format tag of a proof bundle.
BUNDLE_FORMAT = "bright-ledger-proof/1"


@dataclass(frozen=True, slots=True)
class VerificationReport:
    """Verdict of a verification.

    Attributes
    ----------
    problems : tuple of str
        Everything that failed, one sentence each (empty when all holds).
    records : int
        Number of records whose signature and inclusion were checked successfully.
    head : str or None
        Description of the head the records were checked against.
    final : bool or None
        Whether the head reached the members' quorum (None if not asked).
    notes : tuple of str
        Caveats that are not failures (e.g. keys trusted from the bundle itself).
    """

    problems: tuple[str, ...]
    records: int = 0
    head: str | None = None
    final: bool | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True if nothing failed."""
        return not self.problems

    def summary(self) -> str:
        """Multi-line human-readable verdict."""
        lines = ["VALID" if self.ok else "INVALID"]
        if self.head:
            lines.append(f"head: {self.head}")
        lines.append(f"records verified: {self.records}")
        if self.final is not None:
            lines.append(f"final (quorum reached): {'yes' if self.final else 'no'}")
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"problem: {problem}" for problem in self.problems]
        return "\n".join(lines)


# --------------------------------------------------------------------------- building


def make_bundle(
    log: MerkleLog,
    head: SignedTreeHead,
    entries: Mapping[int, bytes] | Iterable[tuple[int, bytes]],
    *,
    keys: Iterable[str] = (),
    earlier_heads: Iterable[SignedTreeHead] = (),
    members: Collection[str] | None = None,
    quorum: Fraction | str = DEFAULT_QUORUM,
) -> dict[str, Any]:
    """Build a proof bundle for some records of a log.

    Parameters
    ----------
    log : MerkleLog
        The log (at least ``head.size`` leaves).
    head : SignedTreeHead
        Head the records are proven against; must match ``log``.
    entries : mapping or iterable of (int, bytes)
        Leaf index -> stored leaf bytes of each record to prove.
    keys : iterable of str, optional
        DIDs to list as trusted keys; the head signer, record authors, earlier-head signers and
        members are always added.
    earlier_heads : iterable of SignedTreeHead, optional
        Heads the verifier may already hold; a consistency proof to ``head`` is added for each.
    members : collection of str, optional
        Member DIDs, to let the verifier check finality.
    quorum : Fraction or str, optional
        Quorum fraction for finality, default 2/3.

    Returns
    -------
    dict
        JSON-serialisable bundle.

    Raises
    ------
    ProofError
        If the head does not match the log, or a leaf does not match the log at its index.
    """
    if head.size > log.size or log.root(head.size) != head.root:
        raise ProofError(f"{head.describe()} does not match the log")
    items = sorted(entries.items() if isinstance(entries, Mapping) else entries)
    signers = {head.signer, *keys}
    bundle_entries = []
    for index, data in items:
        if not 0 <= index < head.size or log.leaf_hash(index) != leaf_hash(data):
            raise ProofError(f"record {index} is not the leaf at index {index} of the log under the head")
        record = SignedRecord.from_bytes(data)
        signers.add(record.author)
        bundle_entries.append(
            {
                "index": index,
                "record": record.to_json(),
                "proof": log.inclusion_proof(index, head.size).to_json(),
            }
        )
    consistency = []
    for earlier in earlier_heads:
        if earlier.size > head.size:
            raise ProofError(f"earlier {earlier.describe()} is larger than the bundled head")
        signers.add(earlier.signer)
        consistency.append(
            {"head": earlier.to_json(), "proof": log.consistency_proof(earlier.size, head.size).to_json()}
        )
    bundle: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "head": head.to_json(),
        "entries": bundle_entries,
        "consistency": consistency,
        "finality": None,
    }
    if members is not None:
        signers.update(members)
        bundle["finality"] = {"members": sorted(members), "quorum": str(Fraction(quorum))}
    bundle["keys"] = [
        {"did": did, "public_key": b64url_encode(public_key_from_did(did))} for did in sorted(signers)
    ]
    return bundle


# --------------------------------------------------------------------------- checking


def _bundle_keys(raw: Any, problems: list[str]) -> set[str]:
    dids: set[str] = set()
    if not isinstance(raw, list):
        problems.append("bundle 'keys' must be a list")
        return dids
    for position, item in enumerate(raw):
        if not isinstance(item, Mapping) or set(item) != {"did", "public_key"}:
            problems.append(f"keys[{position}] must be an object with did and public_key")
            continue
        try:
            if public_key_from_did(item["did"]) != b64url_decode(
                item["public_key"], what=f"keys[{position}]"
            ):
                problems.append(f"keys[{position}]: {item['did']} does not encode the listed public key")
                continue
        except IdentityError as error:
            problems.append(f"keys[{position}]: {error}")
            continue
        dids.add(item["did"])
    return dids


def verify_bundle(bundle: Any, *, trusted_keys: Collection[str] | None = None) -> VerificationReport:
    """Verify a proof bundle offline.

    Parameters
    ----------
    bundle : Mapping
        Decoded JSON bundle (see the module docstring).
    trusted_keys : collection of str, optional
        DIDs the verifier trusts (the log operator, the community members).  If None, the
        bundle's own ``keys`` are trusted, which proves integrity but not authorship: the report
        carries a note.

    Returns
    -------
    VerificationReport
        ``ok`` is True only if every check passed.
    """
    problems: list[str] = []
    notes: list[str] = []
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        return VerificationReport((f"not a proof bundle (format must be {BUNDLE_FORMAT!r})",))
    listed = _bundle_keys(bundle.get("keys"), problems)
    if trusted_keys is None:
        trusted = listed
        notes.append("signers were checked against the keys listed in the bundle itself")
    else:
        trusted = set(trusted_keys)
        for did in sorted(listed - trusted):
            notes.append(f"bundle lists {did}, which is not among the trusted keys")

    try:
        head = SignedTreeHead.from_json(bundle.get("head"))  # type: ignore[arg-type]
    except HeadError as error:
        return VerificationReport((*problems, f"head: {error}"), notes=tuple(notes))
    if head.signer not in trusted:
        problems.append(f"head signer {head.signer} is not a trusted key")
    if not head.verify_signature():
        problems.append(f"forged or corrupted head signature on {head.describe()}")

    verified = 0
    entries = bundle.get("entries")
    if not isinstance(entries, list) or not entries:
        problems.append("bundle has no entries")
        entries = []
    seen_indices: set[int] = set()
    for position, entry in enumerate(entries):
        where = f"entries[{position}]"
        if not isinstance(entry, Mapping) or set(entry) != {"index", "record", "proof"}:
            problems.append(f"{where} must be an object with index, record, proof")
            continue
        index = entry["index"]
        if not isinstance(index, int) or isinstance(index, bool):
            problems.append(f"{where}: index must be an integer, got {index!r}")
            continue
        try:
            record = SignedRecord.from_json(entry["record"])
            data = record.to_bytes()
            proof = InclusionProof.from_json(entry["proof"])
        except (RecordError, ProofError, IdentityError) as error:
            problems.append(f"{where} (index {index!r}): {error}")
            continue
        label = f"record at index {index}"
        if index in seen_indices:
            problems.append(f"{label} appears twice")
        seen_indices.add(index)
        entry_ok = True
        if record.author not in trusted:
            problems.append(f"{label}: author {record.author} is not a trusted key")
            entry_ok = False
        if not record.verify():
            problems.append(f"{label}: forged or corrupted record signature (author {record.author})")
            entry_ok = False
        if proof.index != index or proof.size != head.size:
            problems.append(
                f"{label}: the proof is for index {proof.index} in a tree of {proof.size}, "
                f"not index {index} in the head's tree of {head.size}"
            )
            entry_ok = False
        elif not verify_inclusion(leaf_hash(data), proof, head.root):
            problems.append(
                f"{label}: not in the log under the head (the record was changed, moved or removed, "
                "or the proof was altered)"
            )
            entry_ok = False
        verified += entry_ok

    consistency = bundle.get("consistency", [])
    if not isinstance(consistency, list):
        problems.append("bundle 'consistency' must be a list")
        consistency = []
    for position, item in enumerate(consistency):
        where = f"consistency[{position}]"
        try:
            if not isinstance(item, Mapping) or set(item) != {"head", "proof"}:
                raise HeadError("must be an object with head and proof")
            earlier = SignedTreeHead.from_json(item["head"])
            link = ConsistencyProof.from_json(item["proof"])
        except (HeadError, ProofError) as error:
            problems.append(f"{where}: {error}")
            continue
        if earlier.signer not in trusted:
            problems.append(f"{where}: signer {earlier.signer} is not a trusted key")
        if not earlier.verify_signature():
            problems.append(f"{where}: forged or corrupted signature on {earlier.describe()}")
        if earlier.community != head.community:
            problems.append(f"{where}: earlier head is of {earlier.community}, not {head.community}")
        if (link.old_size, link.new_size) != (earlier.size, head.size) or not verify_consistency(
            earlier.root, head.root, link
        ):
            problems.append(
                f"{where}: the log of size {head.size} does not extend {earlier.describe()} "
                "(records were rewritten or deleted between the two heads)"
            )
        elif earlier.size == head.size and earlier.root != head.root:
            problems.append(f"{where}: fork: two roots for size {head.size}")

    final = None
    rule = bundle.get("finality")
    if rule is not None:
        try:
            if not isinstance(rule, Mapping) or not isinstance(rule.get("members"), list):
                raise HeadError("finality must be an object with a list of members and a quorum")
            members = rule["members"]
            if trusted_keys is not None and not set(members) <= trusted:
                notes.append(
                    "finality counted with the bundle's member list, which the trusted keys do not cover"
                )
            status = finality(head, members, rule.get("quorum", str(DEFAULT_QUORUM)))
            final = status.final
            notes.append(
                f"{len(status.signers)} of {status.member_count} members signed the head "
                f"({status.required} needed)"
            )
        except HeadError as error:
            problems.append(f"finality: {error}")

    return VerificationReport(tuple(problems), verified, head.describe(), final, tuple(notes))


def verify_bundle_file(
    path: str | Path, *, trusted_keys: Collection[str] | None = None
) -> VerificationReport:
    """Read a JSON proof bundle from a file and verify it (see :func:`verify_bundle`).

    Parameters
    ----------
    path : str or Path
        The bundle file.
    trusted_keys : collection of str, optional
        DIDs the verifier trusts.

    Returns
    -------
    VerificationReport
    """
    try:
        bundle = json.loads(Path(path).read_bytes())
    except (OSError, ValueError) as error:
        return VerificationReport((f"cannot read bundle {path}: {type(error).__name__}",))
    return verify_bundle(bundle, trusted_keys=trusted_keys)


def audit_log(
    leaves: Sequence[bytes],
    heads: Iterable[SignedTreeHead],
    *,
    trusted_keys: Collection[str] | None = None,
    check_record_signatures: bool = True,
) -> VerificationReport:
    """Audit a full log export: every record and every head.

    Parameters
    ----------
    leaves : sequence of bytes
        All leaf bytes, in log order.
    heads : iterable of SignedTreeHead
        Heads of the log.
    trusted_keys : collection of str, optional
        If given, every head signer and record author must be one of them.
    check_record_signatures : bool, optional
        Verify each record's signature (about 0.07 ms per record; default True).

    Returns
    -------
    VerificationReport
        Problems name the record index or the head.
    """
    problems: list[str] = []
    log = MerkleLog()
    verified = 0
    for index, data in enumerate(leaves):
        log.append(data)
        try:
            record = SignedRecord.from_bytes(data)
        except RecordError as error:
            problems.append(f"record {index}: {error}")
            continue
        if trusted_keys is not None and record.author not in trusted_keys:
            problems.append(f"record {index}: author {record.author} is not a trusted key")
        elif check_record_signatures and not record.verify():
            problems.append(f"record {index}: forged or corrupted signature (author {record.author})")
        else:
            verified += 1
    head_list = list(heads)
    for head in head_list:
        if trusted_keys is not None and head.signer not in trusted_keys:
            problems.append(f"{head.describe()}: signer is not a trusted key")
        if not head.verify_signature():
            problems.append(f"{head.describe()}: forged or corrupted signature")
        if head.size > log.size:
            problems.append(
                f"{head.describe()}: covers {head.size} records, the export has {log.size} (deletion)"
            )
        elif log.root(head.size) != head.root:
            problems.append(
                f"{head.describe()}: the first {head.size} records do not match (changed, reordered or deleted)"
            )
    problems += [f"fork: {evidence.describe()}" for evidence in detect_fork(head_list)]
    latest = max(head_list, key=lambda head: head.size, default=None)
    return VerificationReport(tuple(problems), verified, None if latest is None else latest.describe())


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bright.ledger.verify BUNDLE [--key DID ...]``: print the verdict.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments (defaults to ``sys.argv[1:]``).

    Returns
    -------
    int
        0 if the bundle is valid, 1 otherwise.
    """
    parser = argparse.ArgumentParser(
        prog="python -m bright.ledger.verify", description="Verify a ledger proof bundle offline."
    )
    parser.add_argument("bundle", type=Path, help="proof bundle (JSON)")
    parser.add_argument("--key", action="append", dest="keys", help="trusted did:key (repeatable)")
    arguments = parser.parse_args(argv)
    report = verify_bundle_file(arguments.bundle, trusted_keys=arguments.keys)
    sys.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


def bundle_to_bytes(bundle: Mapping[str, Any]) -> bytes:
    """Serialise a bundle as canonical JSON (stable bytes for files and hashes).

    Parameters
    ----------
    bundle : Mapping
        Bundle from :func:`make_bundle`.

    Returns
    -------
    bytes
    """
    return canonical_json(bundle)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
