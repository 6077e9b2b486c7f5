"""One reading of phone numbers for the whole service (mindo.phones)."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mindo.phones import _already_canonical, is_e164, phone_normalize


@pytest.mark.parametrize(
    ("written", "e164"),
    [
        ("+5492235961983", "+5492235961983"),
        ("5492235961983", "+5492235961983"),
        ("+54223155961983", "+5492235961983"),
        ("54223155961983", "+5492235961983"),
        ("+54 223 15-596-1983", "+5492235961983"),
        ("0054 9 223 596 1983", "+5492235961983"),
        ("+1 (202) 555-0143", "+12025550143"),
        ("+39 06 1234 5678", "+390612345678"),
        # A Mexican mobile as WhatsApp names it (wa_id) and as Mexico has written it since 2019.
        ("5215512345678", "+525512345678"),
        ("+52 1 55 1234 5678", "+525512345678"),
        ("+525512345678", "+525512345678"),
    ],
)
def test_every_spelling_reads_as_one_e164_number(written: str, e164: str) -> None:
    assert phone_normalize(written) == e164


@pytest.mark.parametrize(
    "text", ["", "hola", "+", "+54", "+0111234567", "+999123456789", "+54-223-ABC", "1" * 80]
)
def test_what_is_no_number_reads_as_none(text: str) -> None:
    assert phone_normalize(text) is None


@pytest.mark.parametrize(
    ("phone", "exact"),
    [
        ("+5492235961983", True),
        ("+390612345678", True),
        ("5492235961983", False),
        ("+54223155961983", False),
        ("+54 9 223 596 1983", False),
        ("+49 030 123456", False),
        ("+525512345678", True),
        ("+5215512345678", False),
    ],
)
def test_only_the_e164_spelling_itself_is_exact(phone: str, exact: bool) -> None:
    assert is_e164(phone) is exact


_COUNTRY_CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(_COUNTRY_CODES),
            st.integers(min_value=1, max_value=9),
            st.text(alphabet="0123456789", max_size=13),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_possible_number_is_judged_by_its_country_and_length_as_phonenumbers_does(
    numbers: list[tuple[int, int, str]],
) -> None:
    """The verdict kept for a country code and length (from whichever number asked first) is
    phonenumbers' own for every number of that country and length."""
    for country_code, first_digit, rest in numbers:
        national = f"{first_digit}{rest}"
        phone = f"+{country_code}{national}"
        if len(phone) > 16:
            continue  # past E.164's 15 digits: refused before any verdict
        number = phonenumbers.PhoneNumber(country_code=country_code, national_number=int(national))
        possible = phonenumbers.is_possible_number_with_reason(number) == (
            phonenumbers.ValidationResult.IS_POSSIBLE
        )
        assert _already_canonical(phone) is (True if possible else None)


@settings(max_examples=1000, deadline=None)
@given(
    st.one_of(
        st.text(alphabet="+0123456789 -().", max_size=20),
        st.builds(
            lambda code, first, rest: f"+{code}{first}{rest}",
            st.sampled_from(_COUNTRY_CODES),
            st.sampled_from("0123456789"),
            st.text(alphabet="0123456789", max_size=13),
        ),
        st.builds(lambda rest: f"+521{rest}", st.text(alphabet="0123456789", max_size=11)),
    )
)
def test_is_e164_is_exactly_normalizing_to_itself(text: str) -> None:
    assert is_e164(text) is (phone_normalize(text) == text)
