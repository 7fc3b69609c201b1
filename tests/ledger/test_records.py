"""Canonical records: encoding, validation, signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bright.ledger.identity import NodeIdentity, b64url_encode
from bright.ledger.records import (
    RECORD_CONTEXT,
    Activation,
    FlexOffer,
    RecordError,
    Settlement,
    SignedRecord,
    canonical_json,
    cents_from_eur,
    format_timestamp,
    parse_canonical,
    parse_timestamp,
    sign_record,
    sign_records,
    wh_from_kwh,
)

AUTHOR = NodeIdentity.from_seed(bytes(range(32)))
START = datetime(2024, 5, 1, 10, 15, tzinfo=UTC)


def _settlement(**changes: Any) -> Settlement:
    values: dict[str, Any] = {
        "community": "urn:bright:community:schaerbeek",
        "member": "EAN541448000000000017",
        "interval_start": START,
        "offtake_wh": 420,
        "injection_wh": 0,
        "shared_offtake_wh": 300,
        "shared_injection_wh": 0,
        "amount_cents": 3,
    }
    values.update(changes)
    return Settlement(**values)


def test_canonical_json_sorts_keys_and_strips_whitespace() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, "x"], "c": None}, "é": True}) == (
        b'{"a":{"c":null,"d":[1,"x"]},"b":1,"\xc3\xa9":true}'
    )
    # Same output as the standard library's canonical settings (and RFC 8785 for these values).
    value = {"z": [1, 2, {"y": "\u2028\n\x01"}], "a": -5}
    assert canonical_json(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"amount": 1.5}, r"\$\.amount is a float"),
        ({"wh": 2**53}, r"\$\.wh = 9007199254740992 is outside"),
        ({1: "x"}, "non-string key"),
        ({"list": [1, {"x": datetime(2024, 1, 1)}]}, r"\$\.list\[1\]\.x has type datetime"),
        ("\ud800", "cannot be encoded"),
    ],
)
def test_canonical_json_refuses_what_has_no_single_encoding(value: Any, message: str) -> None:
    with pytest.raises(RecordError, match=message):
        canonical_json(value)


def test_parse_canonical_refuses_other_encodings_of_the_same_value() -> None:
    assert parse_canonical(b'{"a":1,"b":2}') == {"a": 1, "b": 2}
    for other in (b'{"b":2,"a":1}', b'{"a": 1,"b":2}', b'{"a":1,"a":1,"b":2}', b'{"a":1.0,"b":2}', b"\xff"):
        with pytest.raises(RecordError):
            parse_canonical(other)


def test_timestamps_are_utc_whole_seconds() -> None:
    brussels_summer = timezone(timedelta(hours=2))
    assert format_timestamp(datetime(2024, 5, 1, 12, 15, tzinfo=brussels_summer)) == "2024-05-01T10:15:00Z"
    assert parse_timestamp("2024-05-01T10:15:00Z") == START
    with pytest.raises(RecordError, match="timezone-aware"):
        format_timestamp(datetime(2024, 5, 1, 10, 15))
    with pytest.raises(RecordError, match="fraction of a second"):
        format_timestamp(START.replace(microsecond=5))
    for bad in ("2024-05-01T10:15:00+00:00", "2024-05-01 10:15:00Z", "2024-02-30T00:00:00Z", 5):
        with pytest.raises(RecordError):
            parse_timestamp(bad)


def test_unit_conversions_round_half_even_and_refuse_missing_data() -> None:
    assert wh_from_kwh(1.2345) == 1234  # 1234.5 Wh rounds to the even 1234
    assert wh_from_kwh(0.0025) == 2  # 2.5 Wh -> 2
    assert cents_from_eur(12.345) == 1234  # floating 1234.4999... -> 1234
    assert cents_from_eur(-0.125) == -12
    with pytest.raises(RecordError, match="only complete intervals"):
        wh_from_kwh(float("nan"), field="offtake_kwh of EAN541448000000000017 at 10:15")


def test_settlement_body_is_canonical_with_integer_amounts() -> None:
    body = _settlement().to_body()
    assert canonical_json(body) == (
        b'{"amount_cents":3,"community":"urn:bright:community:schaerbeek","injection_wh":0,'
        b'"interval_start":"2024-05-01T10:15:00Z","member":"EAN541448000000000017","offtake_wh":420,'
        b'"resolution_s":900,"shared_injection_wh":0,"shared_offtake_wh":300}'
    )
    assert Settlement.from_body(body) == _settlement()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"offtake_wh": 0.42}, "offtake_wh must be an integer"),
        ({"offtake_wh": True}, "offtake_wh must be an integer"),
        ({"injection_wh": -1}, "injection_wh = -1 is below 0"),
        ({"shared_offtake_wh": 421}, "shared_offtake_wh = 421 exceeds offtake_wh = 420"),
        ({"shared_injection_wh": 1}, "shared_injection_wh = 1 exceeds injection_wh = 0"),
        ({"interval_start": START + timedelta(minutes=5)}, "not aligned to 900 s"),
        ({"interval_start": datetime(2024, 5, 1, 10, 15)}, "timezone-aware"),
        ({"member": "EAN 5414"}, "member must be 1-200 printable ASCII"),
        ({"amount_cents": 2**60}, "exceeds 2\\*\\*53 - 1"),
    ],
)
def test_settlement_refuses_bad_fields_naming_member_and_field(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(RecordError, match=message) as raised:
        _settlement(**changes)
    if "member" not in changes:
        assert "EAN541448000000000017" in str(raised.value)


def test_flex_offer_and_activation_validation() -> None:
    offer = FlexOffer(
        "urn:offer:1", "urn:community:1", "EAN541448000000000017", "battery-1", "up",
        START, START + timedelta(hours=2), power_w=3000, price_cents_per_mwh=12500,
    )  # fmt: skip
    assert offer.to_body()["window_end"] == "2024-05-01T12:15:00Z"
    with pytest.raises(RecordError, match="direction must be 'up' or 'down'"):
        FlexOffer("urn:offer:1", "c", "m", "d", "sideways", START, START + timedelta(hours=1), 1, 0)  # type: ignore[arg-type]
    with pytest.raises(RecordError, match="window_end must be after window_start"):
        FlexOffer("urn:offer:1", "c", "m", "d", "up", START, START, 1, 0)
    with pytest.raises(RecordError, match=r"offer 'urn:offer:1'.*power_w = 0 is below 1"):
        FlexOffer("urn:offer:1", "c", "m", "d", "up", START, START + timedelta(hours=1), 0, 0)
    activation = Activation(
        "urn:activation:1", "urn:offer:1", "urn:community:1", "EAN541448000000000017",
        START, START + timedelta(minutes=30), power_w=2000, energy_wh=1000, amount_cents=13,
    )  # fmt: skip
    # 2 kW for 30 min = 1 kWh = 1000 Wh, paid at 12.5 c/kWh = 12.5 c -> 13 c after rounding up by the caller.
    assert Activation.from_body(activation.to_body()) == activation
    with pytest.raises(RecordError, match="activation 'urn:activation:1': amount_cents = -1 is below 0"):
        Activation("urn:activation:1", "o", "c", "m", START, START + timedelta(minutes=15), 1, 0, -1)


def test_signed_envelope_bytes_signature_and_round_trip() -> None:
    signed = sign_record(_settlement(), AUTHOR)
    data = signed.to_bytes()
    # The fast encoding equals the generic canonical encoding of the whole envelope.
    assert data == canonical_json(signed.to_json())
    assert data.startswith(b'{"author":"' + AUTHOR.did.encode() + b'","body":{"amount_cents":3,')
    assert data.endswith(
        b'"kind":"settlement","schema":1,"sig":"' + b64url_encode(signed.signature).encode() + b'"}'
    )
    # The signature covers the context and the unsigned envelope.
    unsigned = {k: v for k, v in signed.to_json().items() if k != "sig"}
    assert AUTHOR.public.verify(RECORD_CONTEXT + canonical_json(unsigned), signed.signature)
    assert signed.verify()
    decoded = SignedRecord.from_bytes(data)
    assert decoded == signed and decoded.to_bytes() == data
    assert decoded.record() == _settlement()


def test_any_change_to_a_signed_record_breaks_its_signature() -> None:
    signed = sign_record(_settlement(), AUTHOR)
    envelope = signed.to_json()
    changed = SignedRecord.from_json({**envelope, "body": {**envelope["body"], "amount_cents": 4}})
    assert not changed.verify()
    impostor = NodeIdentity.generate()
    assert not SignedRecord.from_json({**envelope, "author": impostor.did}).verify()
    other_signature = sign_record(_settlement(amount_cents=4), AUTHOR).to_json()["sig"]
    assert not SignedRecord.from_json({**envelope, "sig": other_signature}).verify()


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda e: {**e, "schema": 2}, "schema 2 is not supported"),
        (lambda e: {**e, "kind": "invoice"}, "kind 'invoice' is unknown"),
        (lambda e: {**e, "extra": 1}, "envelope keys"),
        (lambda e: {**e, "sig": "not base64!"}, "signature is not valid base64url"),
        (lambda e: {**e, "body": {**e["body"], "offtake_wh": 1.0}}, "offtake_wh must be an integer"),
        (lambda e: {**e, "body": {**e["body"], "tariff": "x"}}, "unknown fields \\['tariff'\\]"),
    ],
)
def test_malformed_envelopes_are_refused(mutate: Any, message: str) -> None:
    envelope = sign_record(_settlement(), AUTHOR).to_json()
    with pytest.raises(RecordError, match=message):
        SignedRecord.from_json(mutate(envelope))


def test_non_canonical_leaf_bytes_are_refused() -> None:
    data = sign_record(_settlement(), AUTHOR).to_bytes()
    pretty = json.dumps(json.loads(data), indent=1).encode()
    with pytest.raises(RecordError, match="canonical"):
        SignedRecord.from_bytes(pretty)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53) + 1, 2**53 - 1) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(json_values)
def test_property_canonical_encoding_is_a_fixed_point(value: Any) -> None:
    encoded = canonical_json(value)
    decoded = parse_canonical(encoded)
    assert decoded == value
    assert canonical_json(decoded) == encoded


@settings(max_examples=60, deadline=None)
@given(
    offtake=st.integers(0, 10**7),
    injection=st.integers(0, 10**7),
    data=st.data(),
    quarter=st.integers(0, 35_135),
    amount=st.integers(-(10**6), 10**6),
)
def test_property_settlements_round_trip_through_leaf_bytes(
    offtake: int, injection: int, data: st.DataObject, quarter: int, amount: int
) -> None:
    settlement = _settlement(
        interval_start=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=15 * quarter),
        offtake_wh=offtake,
        injection_wh=injection,
        shared_offtake_wh=data.draw(st.integers(0, offtake)),
        shared_injection_wh=data.draw(st.integers(0, injection)),
        amount_cents=amount,
    )
    signed = sign_record(settlement, AUTHOR)
    decoded = SignedRecord.from_bytes(signed.to_bytes())
    assert decoded.record() == settlement
    assert decoded.verify()


@settings(max_examples=25, deadline=None)
@given(
    count=st.integers(min_value=0, max_value=700),
    threads=st.integers(min_value=1, max_value=4),
    min_per_thread=st.sampled_from([1, 7, 256]),
)
def test_sign_records_in_threads_is_sign_record_in_order(
    count: int, threads: int, min_per_thread: int
) -> None:
    bodies = [
        _settlement(
            interval_start=START + timedelta(minutes=15 * (n // 3)), member=f"EAN54144800000000{n % 3:04d}"
        )
        for n in range(count)
    ]
    signed = sign_records(bodies, AUTHOR, threads=threads, min_per_thread=min_per_thread)
    assert [s.to_bytes() for s in signed] == [sign_record(b, AUTHOR).to_bytes() for b in bodies]
    assert all(s.verify() for s in signed[:20])
