"""Private keys never appear in repr/str, logs, outputs, files or exception messages."""

from __future__ import annotations

import base64
import copy
import json
import logging
import os
import pickle
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization

from bright.ledger.heads import ForkEvidence, SignedTreeHead, cosign
from bright.ledger.identity import KEY_FILE_NAME, IdentityError, NodeIdentity
from bright.ledger.records import Settlement, sign_record
from bright.ledger.store import LedgerStore
from bright.ledger.verify import bundle_to_bytes, make_bundle, verify_bundle

START = datetime(2024, 5, 1, tzinfo=UTC)


def _secret_forms(key_dir: Path, passphrase: bytes | None = None) -> tuple[list[bytes], list[str]]:
    """Every encoding of the private key a leak could take: raw, hex, base64 variants, DER, PEM body."""
    pem = (key_dir / KEY_FILE_NAME).read_bytes()
    private = serialization.load_pem_private_key(pem, password=passphrase)
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    texts = [
        seed.hex(),
        seed.hex().upper(),
        base64.b64encode(seed).decode(),
        base64.b64encode(seed).decode().rstrip("="),
    ]
    texts += [base64.urlsafe_b64encode(seed).decode().rstrip("="), base64.b64encode(der).decode().rstrip("=")]
    texts += [der.hex(), seed.decode("latin-1"), repr(seed)[2:-1]]
    texts += [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    return [seed, der, pem], texts


def _assert_clean(text: str, forms: list[str], where: str) -> None:
    for form in forms:
        assert form not in text, f"private key material found in {where}"


def test_nothing_leaks_the_private_key(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    key_dir = tmp_path / "keys"
    identity = NodeIdentity.load_or_create(key_dir)
    raw_forms, text_forms = _secret_forms(key_dir)
    outputs: dict[str, str] = {}

    # Objects that hold or derive from the key.
    outputs["repr(identity)"] = repr(identity)
    outputs["str(identity)"] = str(identity)
    outputs["format(identity)"] = f"{identity!s} {identity!r}"
    outputs["public"] = repr(identity.public) + json.dumps(identity.public.did_document())
    outputs["dir(identity)"] = " ".join(dir(identity))
    logging.getLogger("bright.test").debug("identity %r / %s", identity, identity)

    # Records, heads, proofs, a store with SQL echo on (so every statement and parameter is logged).
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'ledger.db'}", echo=True)
    store = LedgerStore(engine)
    records = [
        sign_record(Settlement("urn:c:1", f"member-{n}", START, 100, 0, 50, 0, n), identity) for n in range(4)
    ]
    store.append([record.to_bytes() for record in records])
    head = SignedTreeHead.for_log(store.log, identity, community="urn:c:1", timestamp=START)
    peer = NodeIdentity.generate()
    head = head.with_cosignatures(cosign(head, peer))
    store.add_head(head)
    other = SignedTreeHead.sign(identity, community="urn:c:1", size=4, root=bytes(32), timestamp=START)
    evidence = ForkEvidence(head, other)
    bundle = make_bundle(store.log, head, {1: records[1].to_bytes()}, members=[peer.did, identity.did])
    outputs["records"] = " ".join(repr(record) + str(record.to_json()) for record in records)
    outputs["leaf"] = records[0].to_bytes().decode()
    outputs["head"] = repr(head) + json.dumps(head.to_json()) + head.describe()
    outputs["fork"] = evidence.describe() + json.dumps(evidence.to_json())
    outputs["bundle"] = bundle_to_bytes(bundle).decode()
    outputs["report"] = verify_bundle(bundle).summary()
    outputs["store"] = repr(store) + repr(store.log)

    # Every error path around the key file.
    failures: list[Callable[[], object]] = [
        lambda: NodeIdentity.create(key_dir),
        lambda: pickle.dumps(identity),
        lambda: copy.deepcopy(identity),
        lambda: NodeIdentity.from_seed(raw_forms[0][:31]),
        lambda: NodeIdentity.load(key_dir, passphrase=b"not encrypted"),
    ]
    corrupted = tmp_path / "corrupted"
    corrupted.mkdir()
    pem = raw_forms[2]
    (corrupted / KEY_FILE_NAME).write_bytes(pem[:40] + b"!" + pem[41:])
    os.chmod(corrupted / KEY_FILE_NAME, 0o600)
    failures.append(lambda: NodeIdentity.load(corrupted))
    truncated = tmp_path / "truncated"
    truncated.mkdir()
    (truncated / KEY_FILE_NAME).write_bytes(pem[: len(pem) // 2])
    os.chmod(truncated / KEY_FILE_NAME, 0o600)
    failures.append(lambda: NodeIdentity.load(truncated))
    exposed = tmp_path / "exposed"
    exposed.mkdir()
    (exposed / KEY_FILE_NAME).write_bytes(pem)
    os.chmod(exposed / KEY_FILE_NAME, 0o644)
    failures.append(lambda: NodeIdentity.load(exposed))
    for number, action in enumerate(failures):
        with pytest.raises((IdentityError, TypeError)) as raised:
            action()
        # The whole traceback, chained causes and contexts included, as a log would print it.
        outputs[f"failure {number}"] = "".join(traceback.format_exception(raised.value))
        logging.getLogger("bright.test").exception("failure %d", number, exc_info=raised.value)

    outputs["logs"] = caplog.text + " ".join(str(record.args) for record in caplog.records)
    assert "INSERT INTO ledger_leaves" in caplog.text  # the SQL log was really captured
    for where, text in outputs.items():
        _assert_clean(text, text_forms, where)

    # The database holds records and public keys, never the private key.
    database = (tmp_path / "ledger.db").read_bytes()
    for form in raw_forms[:2]:
        assert form not in database
    # The key directory holds only the key file, owner-only.
    assert [path.name for path in key_dir.iterdir()] == [KEY_FILE_NAME]


def test_encrypted_key_file_does_not_contain_the_key_in_clear(tmp_path) -> None:
    NodeIdentity.create(tmp_path, passphrase=b"s3cret passphrase")
    raw_forms, text_forms = _secret_forms(tmp_path, b"s3cret passphrase")
    content = (tmp_path / KEY_FILE_NAME).read_bytes()
    assert raw_forms[0] not in content and raw_forms[1] not in content
    wrong = b"Xq7 mistyped Zr9"
    with pytest.raises(IdentityError) as raised:
        NodeIdentity.load(tmp_path, passphrase=wrong)
    # Messages of the exception and of everything chained to it; passphrases are secrets too.
    messages = []
    error: BaseException | None = raised.value
    while error is not None:
        messages.append("".join(traceback.format_exception_only(error)))
        error = error.__cause__ or error.__context__
    message = " ".join(messages)
    _assert_clean(message, text_forms, "wrong-passphrase error")
    assert "s3cret" not in message and "mistyped" not in message
