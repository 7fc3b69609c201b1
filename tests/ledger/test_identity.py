"""Node identity: did:key encoding, key files, signatures."""

from __future__ import annotations

import copy
import os
import pickle
import stat

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.ledger.identity import (
    KEY_FILE_NAME,
    IdentityError,
    NodeIdentity,
    PublicIdentity,
    b64url_decode,
    b64url_encode,
    did_from_public_key,
    public_key_from_did,
    verify_signature,
)

# RFC 8032, section 7.1, TEST 1: secret key, public key, and the signature of the empty message.
RFC8032_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
RFC8032_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
RFC8032_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

# An Ed25519 did:key with its publicKeyBase58, as published in a DID document of another
# implementation (W3C CCG did:key examples).
PUBLISHED_DID = "did:key:z6MkmjY8GnV5i9YTDtPETC2uUAW6ejw3nk5mXF5yci5ab7th"
PUBLISHED_KEY_BASE58 = "8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K"


def _base58_decode(text: str) -> bytes:
    """Independent decoder (bitcoin alphabet), so the test does not reuse the module's code."""
    alphabet = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
    number = 0
    for char in text:
        number = number * 58 + alphabet.index(char)
    return number.to_bytes(32, "big")


def test_rfc8032_test_vector_signs_as_published() -> None:
    identity = NodeIdentity.from_seed(RFC8032_SEED)
    assert identity.public_key == RFC8032_PUBLIC
    assert identity.sign(b"") == RFC8032_SIGNATURE
    assert identity.public.verify(b"", RFC8032_SIGNATURE)


def test_did_key_matches_a_published_did_document() -> None:
    public_key = _base58_decode(PUBLISHED_KEY_BASE58)
    assert did_from_public_key(public_key) == PUBLISHED_DID
    assert public_key_from_did(PUBLISHED_DID) == public_key
    # A DID URL with a fragment names the same key.
    assert public_key_from_did(PUBLISHED_DID + "#" + PUBLISHED_DID[8:]) == public_key


def test_did_key_of_ed25519_starts_with_z6mk() -> None:
    # 0xed 0x01 followed by 32 bytes always encodes to 48 base58 characters starting "6Mk".
    did = NodeIdentity.from_seed(RFC8032_SEED).did
    assert did.startswith("did:key:z6Mk")
    assert len(did) == len("did:key:z") + 47


@pytest.mark.parametrize(
    "did",
    [
        "did:web:example.org",
        "did:key:f6d6b6579",  # hex multibase, not base58btc
        "did:key:z0OIl",  # characters outside the base58 alphabet
        "did:key:zDnaerDaTF5BXEavCrfRZEk316dpbLsfPDZ3WJ5hRTPFU2169",  # a P-256 key, not Ed25519
        "did:key:z6Mk",
        42,
    ],
)
def test_malformed_or_foreign_dids_are_refused(did: object) -> None:
    with pytest.raises(IdentityError):
        public_key_from_did(did)  # type: ignore[arg-type]
    assert not verify_signature(did, b"m", bytes(64))  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=32, max_size=32))
def test_did_round_trips_for_any_seed(seed: bytes) -> None:
    identity = NodeIdentity.from_seed(seed)
    assert public_key_from_did(identity.did) == identity.public_key
    assert PublicIdentity.from_did(identity.did) == identity.public


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=100))
def test_base64url_round_trip_is_unpadded_and_strict(data: bytes) -> None:
    text = b64url_encode(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert b64url_decode(text) == data


def test_base64url_refuses_non_canonical_text() -> None:
    assert b64url_decode("AQ") == b"\x01"
    for bad in ("AQ==", "AR", "A+", "A", "!!"):
        with pytest.raises(IdentityError):
            b64url_decode(bad)


def test_signature_checks() -> None:
    alice, bob = NodeIdentity.generate(), NodeIdentity.generate()
    signature = alice.sign(b"settlement 2024-05-01T10:15Z")
    assert len(signature) == 64
    assert verify_signature(alice.did, b"settlement 2024-05-01T10:15Z", signature)
    assert not verify_signature(bob.did, b"settlement 2024-05-01T10:15Z", signature)
    assert not verify_signature(alice.did, b"settlement 2024-05-01T10:30Z", signature)
    assert not alice.verify(b"settlement 2024-05-01T10:15Z", signature[:63])
    tampered = bytes([signature[0] ^ 1]) + signature[1:]
    assert not alice.verify(b"settlement 2024-05-01T10:15Z", tampered)


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path) -> None:
    directory = tmp_path / "keys"
    first = NodeIdentity.load_or_create(directory)
    key_file = directory / KEY_FILE_NAME
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
    assert [path.name for path in directory.iterdir()] == [KEY_FILE_NAME]  # no temporary left
    second = NodeIdentity.load_or_create(directory)
    assert second.did == first.did
    assert second.sign(b"x") == first.sign(b"x")  # Ed25519 is deterministic: same private key
    with pytest.raises(IdentityError, match="already exists"):
        NodeIdentity.create(directory)


def test_key_file_readable_by_others_is_refused(tmp_path) -> None:
    NodeIdentity.create(tmp_path)
    os.chmod(tmp_path / KEY_FILE_NAME, 0o644)
    with pytest.raises(IdentityError, match="mode 0644"):
        NodeIdentity.load(tmp_path)


def test_passphrase_protected_key(tmp_path) -> None:
    created = NodeIdentity.create(tmp_path, passphrase=b"correct horse")
    assert b"ENCRYPTED" in (tmp_path / KEY_FILE_NAME).read_bytes()
    assert NodeIdentity.load(tmp_path, passphrase=b"correct horse").did == created.did
    with pytest.raises(IdentityError, match="passphrase"):
        NodeIdentity.load(tmp_path, passphrase=b"wrong")
    with pytest.raises(IdentityError, match="passphrase"):
        NodeIdentity.load(tmp_path)


def test_missing_or_corrupt_key_file(tmp_path) -> None:
    with pytest.raises(IdentityError, match="no key file"):
        NodeIdentity.load(tmp_path)
    path = tmp_path / KEY_FILE_NAME
    path.write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    os.chmod(path, 0o600)
    with pytest.raises(IdentityError, match="not a readable PKCS#8"):
        NodeIdentity.load(tmp_path)


def test_identity_cannot_be_pickled_or_copied() -> None:
    identity = NodeIdentity.generate()
    with pytest.raises(TypeError):
        pickle.dumps(identity)
    with pytest.raises(TypeError):
        copy.copy(identity)
    with pytest.raises(TypeError):
        copy.deepcopy(identity)
    assert repr(identity) == f"NodeIdentity(did={identity.did!r})"


def test_did_document_names_the_key_as_multikey() -> None:
    public = NodeIdentity.from_seed(RFC8032_SEED).public
    document = public.did_document()
    method = document["verificationMethod"][0]
    assert document["id"] == public.did
    assert method["type"] == "Multikey"
    assert method["publicKeyMultibase"] == public.did.removeprefix("did:key:")
    assert method["id"] == f"{public.did}#{method['publicKeyMultibase']}"
    assert document["assertionMethod"] == [method["id"]]


def test_public_identity_refuses_a_mismatched_pair() -> None:
    alice, bob = NodeIdentity.generate(), NodeIdentity.generate()
    with pytest.raises(IdentityError):
        PublicIdentity(alice.did, bob.public_key)
