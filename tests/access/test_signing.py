"""RFC 9421 signatures between nodes: what verifies, and every way a request is refused."""

from __future__ import annotations

import base64
import hashlib
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.ledger.identity import NodeIdentity, PublicIdentity
from bright.network.signing import (
    MAX_SKEW_S,
    MemoryNonceCache,
    SignatureError,
    authority_of,
    content_digest,
    signature_base,
    signed_headers,
    verify_request,
)

URL = "http://127.0.0.1:8123/ngsi-ld/v1/entities?type=Meter&limit=5"
AUTHORITY = "127.0.0.1:8123"
SEED = bytes(range(32))


def _known(*identities: NodeIdentity):
    keys = {i.did: i.public for i in identities}
    return lambda keyid: keys.get(keyid)


def _lower(h: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in h.items()}


def _verify(
    headers: dict[str, str],
    *,
    method: str = "GET",
    url: str = URL,
    body: bytes = b"",
    known=None,
    nonces=None,
    now=None,
):
    return verify_request(
        method,
        url,
        AUTHORITY,
        _lower(headers),
        body,
        known_key=known,
        nonces=nonces or MemoryNonceCache(),
        now=now,
    )


def test_content_digest_is_rfc9530_sha256() -> None:
    # RFC 9530 clause 2 example body {"hello": "world"}
    assert content_digest(b'{"hello": "world"}') == "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
    assert content_digest(b"") == "sha-256=:" + base64.b64encode(hashlib.sha256(b"").digest()).decode() + ":"


def test_authority_drops_default_port_only() -> None:
    assert authority_of("http", "Example.COM:80") == "example.com"
    assert authority_of("https", "example.com:443") == "example.com"
    assert authority_of("http", "example.com:8080") == "example.com:8080"
    assert authority_of("https", "[::1]:443") == "[::1]"


def test_signature_base_layout() -> None:
    base = signature_base("post", "http://a.b/c?d=1", "a.b", "sha-256=:x:", '("@method");created=1')
    assert base.decode().split("\n") == [
        '"@method": POST',
        '"@target-uri": http://a.b/c?d=1',
        '"@authority": a.b',
        '"content-digest": sha-256=:x:',
        '"@signature-params": ("@method");created=1',
    ]


def test_signed_request_verifies_and_names_the_signer() -> None:
    me = NodeIdentity.from_seed(SEED)
    h = signed_headers(me, "POST", URL, {}, b'{"a":1}', created=int(time.time()), nonce="n" * 22)
    assert h["Signature-Input"].startswith(
        'bright=("@method" "@target-uri" "@authority" "content-digest");created='
    )
    assert f'keyid="{me.did}"' in h["Signature-Input"] and 'alg="ed25519"' in h["Signature-Input"]
    v = _verify(h, method="POST", body=b'{"a":1}', known=_known(me))
    assert v.keyid == me.did and v.nonce == "n" * 22
    # The signature is Ed25519 over the signature base, checkable with the public key alone.
    sig = base64.b64decode(h["Signature"].split("=:", 1)[1].rstrip(":"))
    params = h["Signature-Input"].split("=", 1)[1]
    base = signature_base("POST", URL, AUTHORITY, content_digest(b'{"a":1}'), params)
    assert PublicIdentity.from_did(me.did).verify(base, sig)


def test_forged_signature_refused() -> None:
    me = NodeIdentity.generate()
    h = signed_headers(me, "GET", URL)
    sig = bytearray(base64.b64decode(h["Signature"].split("=:", 1)[1].rstrip(":")))
    sig[0] ^= 1
    h["Signature"] = "bright=:" + base64.b64encode(bytes(sig)).decode() + ":"
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(h, known=_known(me))


def test_signature_by_another_key_claiming_a_members_keyid_refused() -> None:
    member, forger = NodeIdentity.generate(), NodeIdentity.generate()
    h = signed_headers(forger, "GET", URL)
    h["Signature-Input"] = h["Signature-Input"].replace(forger.did, member.did)
    with pytest.raises(SignatureError, match="does not verify"):
        _verify(h, known=_known(member))


@pytest.mark.parametrize(
    ("what", "change"),
    [
        ("method", {"method": "DELETE"}),
        ("target", {"url": URL.replace("limit=5", "limit=500")}),
        ("body", {"body": b'{"a":2}'}),
    ],
)
def test_tampered_request_refused(what: str, change: dict) -> None:
    me = NodeIdentity.generate()
    h = signed_headers(me, "POST", URL, {}, b'{"a":1}')
    kw = {"method": "POST", "url": URL, "body": b'{"a":1}', **change}
    with pytest.raises(SignatureError, match=r"does not verify|Content-Digest"):
        _verify(h, known=_known(me), **kw)


def test_replayed_nonce_refused() -> None:
    me = NodeIdentity.generate()
    h = signed_headers(me, "GET", URL)
    cache = MemoryNonceCache()
    _verify(h, known=_known(me), nonces=cache)
    with pytest.raises(SignatureError, match="replayed"):
        _verify(h, known=_known(me), nonces=cache)


@pytest.mark.parametrize("skew", [MAX_SKEW_S + 1, -(MAX_SKEW_S + 1), 3600])
def test_stale_or_future_created_refused(skew: int) -> None:
    me = NodeIdentity.generate()
    now = time.time()
    h = signed_headers(me, "GET", URL, created=int(now) - skew)
    with pytest.raises(SignatureError, match="created"):
        _verify(h, known=_known(me), now=now)


def test_created_inside_window_accepted() -> None:
    me = NodeIdentity.generate()
    now = time.time()
    h = signed_headers(me, "GET", URL, created=int(now) - MAX_SKEW_S + 5)
    assert _verify(h, known=_known(me), now=now).keyid == me.did


def test_unknown_key_refused() -> None:
    stranger = NodeIdentity.generate()
    h = signed_headers(stranger, "GET", URL)
    with pytest.raises(SignatureError, match="unknown key"):
        _verify(h, known=_known(NodeIdentity.generate()))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h: h.pop("Signature"), "no Signature-Input and Signature"),
        (
            lambda h: h.update({"Signature-Input": h["Signature-Input"].replace(' "content-digest"', "")}),
            "must cover",
        ),
        (
            lambda h: h.update(
                {"Signature-Input": h["Signature-Input"].replace('"ed25519"', '"rsa-pss-sha512"')}
            ),
            "not ed25519",
        ),
        (lambda h: h.update({"Signature-Input": h["Signature-Input"].replace(";nonce=", ";x=")}), "nonce"),
        (lambda h: h.update({"Signature-Input": 'bright=("@method'}), "malformed"),
        (lambda h: h.update({"Signature": "other=:AAAA:"}), "common signature label"),
    ],
)
def test_malformed_signature_headers_refused(mutate, message: str) -> None:
    me = NodeIdentity.generate()
    h = signed_headers(me, "GET", URL)
    mutate(h)
    with pytest.raises(SignatureError, match=message):
        _verify(h, known=_known(me))


@settings(max_examples=40, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PATCH", "DELETE", "PUT"]),
    path=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_:/", min_size=1, max_size=40),
    body=st.binary(max_size=300),
    flip=st.integers(min_value=0, max_value=10_000),
)
def test_any_request_roundtrips_and_any_body_change_is_caught(
    method: str, path: str, body: bytes, flip: int
) -> None:
    me = NodeIdentity.from_seed(SEED)
    url = f"http://{AUTHORITY}/{path.lstrip('/')}"
    h = signed_headers(me, method, url, {}, body)
    assert _verify(h, method=method, url=url, body=body, known=_known(me)).keyid == me.did
    if body:
        changed = bytearray(body)
        changed[flip % len(body)] ^= 0x01
        with pytest.raises(SignatureError):
            _verify(h, method=method, url=url, body=bytes(changed), known=_known(me))
