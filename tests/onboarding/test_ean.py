"""The Belgian access-point EAN rule: 18 digits, prefix 54, GS1 mod-10 check digit (property tests)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bright.services.onboarding import OnboardingError, check_ean, consent_id, ean_check_digit, slugify

BODY = st.text(alphabet="0123456789", min_size=15, max_size=15).map(lambda s: "54" + s)


def test_known_values() -> None:
    # 541448000000000011: weighted sum of the first 17 digits (3,1,3,... from the right) is 29.
    assert ean_check_digit("54144800000000001") == 1
    assert check_ean("541448000000000011") == "541448000000000011"
    assert check_ean(" 5414 4800 0000 0000 11 ") == "541448000000000011"
    # By hand: 5 x 3 + 4 x 1 = 19, check digit 1; 7 x 3 + 3 x 1 + 5 x 3 + 6 x 1 = 45, check digit 5.
    assert ean_check_digit("54000000000000000") == 1
    assert ean_check_digit("73560000000000000") == 5


@given(BODY)
def test_the_computed_check_digit_is_accepted(body: str) -> None:
    ean = body + str(ean_check_digit(body))
    assert check_ean(ean) == ean


@given(BODY, st.integers(0, 17), st.integers(1, 9))
def test_any_single_digit_error_is_caught(body: str, position: int, delta: int) -> None:
    ean = body + str(ean_check_digit(body))
    wrong = ean[:position] + str((int(ean[position]) + delta) % 10) + ean[position + 1 :]
    with pytest.raises(OnboardingError):
        check_ean(wrong)


@given(BODY, st.integers(2, 16))
def test_adjacent_transpositions_are_caught_unless_the_digits_differ_by_5(body: str, i: int) -> None:
    ean = body + str(ean_check_digit(body))
    a, b = ean[i], ean[i + 1]
    swapped = ean[:i] + b + a + ean[i + 2 :]
    if a == b or abs(int(a) - int(b)) == 5:
        return  # weights 3 and 1 cannot tell these apart (GS1's documented blind spot)
    with pytest.raises(OnboardingError):
        check_ean(swapped)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("54144800000000001", "has 17 digits"),
        ("5414480000000000111", "has 19 digits"),
        ("541448000000000012", "expected 1"),
        ("441448000000000011", "does not start with 54"),
        ("54144800000000001A", "only digits"),
        (None, "only digits"),
    ],
)
def test_errors_name_the_rule(value: object, message: str) -> None:
    with pytest.raises(OnboardingError, match=message) as err:
        check_ean(value)
    assert err.value.field == "ean" and err.value.problem()["field"] == "ean"


def test_slugs_and_consent_ids() -> None:
    assert slugify("Les Tournesols d'Ixelles") == "les-tournesols-d-ixelles"
    assert slugify("École  Clair-Soleil!") == "ecole-clair-soleil"
    assert (
        consent_id("urn:ngsi-ld:EnergyProsumer:c:m-1a2b", "offer:flex 2026")
        == "urn:ngsi-ld:Consent:m-1a2b:offer-flex-2026"
    )
