"""bulksend.recipients: the shape of each recipient, phone rules, deduplication, template fit."""

from __future__ import annotations

from typing import Any

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bulksend.recipients import (
    INVALID_PHONE,
    Recipient,
    RoundedNumber,
    check_against_template,
    deduplicate,
    parse_recipients,
)
from meta.components import TemplateButton, template_buttons
from mindo.parsers import JSONFloat

WELCOME_BUTTONS = {
    0: TemplateButton(index=0, type="URL", takes_variable=True, requires_variable=True)
}

# Every phone the contract's examples send to.
SPEC_PHONES = ["+5491112345678", "+5491187654321", "+5491199887766"]


def phone_errors(phone: Any) -> dict[str, Any]:
    _recipients, errors = parse_recipients([{"phone": phone}])
    return errors


# --- parse_recipients -------------------------------------------------------------------------


def test_it_returns_clean_recipients_in_the_order_given() -> None:
    items = [
        {"phone": "+5491112345678", "variables": {"name": "Juan"}},
        {"phone": "+5491187654321", "button_variables": {"button_0": "X"}},
        {"phone": "+14155552671"},
    ]

    recipients, errors = parse_recipients(items)

    assert errors == {}
    assert recipients == [
        Recipient("+5491112345678", {"name": "Juan"}, {}),
        Recipient("+5491187654321", {}, {"button_0": "X"}),
        Recipient("+14155552671", {}, {}),
    ]


def test_it_treats_null_variables_as_none_given() -> None:
    recipients, errors = parse_recipients(
        [{"phone": "+5491112345678", "variables": None, "button_variables": None}]
    )

    assert errors == {}
    assert recipients == [Recipient("+5491112345678", {}, {})]


def test_it_turns_numeric_values_into_the_text_the_client_wrote() -> None:
    recipients, _errors = parse_recipients(
        [
            {
                "phone": "+5491112345678",
                "variables": {"1": 12, "2": JSONFloat("1.50"), "3": 12345678901234567890123},
            }
        ]
    )

    assert recipients[0].variables == {"1": "12", "2": "1.50", "3": "12345678901234567890123"}


def test_a_float_as_orjson_reads_it_asks_for_the_exact_text() -> None:
    with pytest.raises(RoundedNumber):
        parse_recipients([{"phone": "+5491112345678", "variables": {"1": 10.5}}])


def test_a_recipient_holding_a_float_takes_its_values_from_the_exact_items() -> None:
    items: list[Any] = [
        {"phone": "+5491112345678", "variables": {"1": "a"}},
        {
            "phone": "+5491112345679",
            "variables": {"1": "b"},
            "button_variables": {"button_0": [1.5]},
        },
    ]
    exact = [
        items[0],
        {**items[1], "button_variables": {"button_0": [JSONFloat("1.50")]}},
    ]

    recipients, errors = parse_recipients(items, lambda: exact)

    assert errors == {}
    assert [r.button_variables for r in recipients] == [{}, {"button_0": "1.50"}]


def test_it_keeps_errors_by_the_index_of_the_recipient() -> None:
    items: list[Any] = [{"phone": "+5491112345678"}] * 10
    items = [*items[:7], {"phone": "+54 911 1234 5678"}, *items[8:]]

    _recipients, errors = parse_recipients(items)

    assert errors == {"7": {"phone": [INVALID_PHONE]}}


def test_it_stops_building_recipients_once_one_failed() -> None:
    recipients, errors = parse_recipients([{"phone": "nope"}, {"phone": "+5491112345678"}])

    assert list(errors) == ["0"]
    assert recipients == []


@pytest.mark.parametrize("phone", SPEC_PHONES)
def test_it_accepts_every_phone_of_the_spec_examples(phone: str) -> None:
    assert phone_errors(phone) == {}


@pytest.mark.parametrize(
    "phone",
    [
        "+14155552671",  # United States
        "+447911123456",  # United Kingdom mobile
        "+390612345678",  # Italy keeps the leading 0 of Rome in E.164
        "+5511987654321",  # Brazil mobile
        "+34612345678",  # Spain mobile
        "+8613812345678",  # China mobile
    ],
)
def test_it_accepts_valid_e164_numbers_of_other_countries(phone: str) -> None:
    assert phone_errors(phone) == {}


@pytest.mark.parametrize(
    "phone",
    [
        "+54 911 1234 5678",
        "+54(911)12345678",
        "+5491112345678 ",
        "+5491112345678\n",
        "\t+5491112345678",
        "+54911",
        "5491112345678",
        "+999111234567",
        "+4903012345678",  # a German number with its trunk 0 kept
        "+",
        "",
        "++5491112345678",
        "+٥٤٩١١١٢٣٤٥٦٧٨",  # Arabic-Indic digits
    ],
)
def test_it_refuses_what_is_not_exactly_e164(phone: str) -> None:
    assert phone_errors(phone) == {"0": {"phone": [INVALID_PHONE]}}


@pytest.mark.parametrize("region", ["AR", "BR", "MX", "ES", "US", "GB", "IT", "DE", "IN", "ZA"])
def test_it_accepts_the_example_mobile_number_of_a_country(region: str) -> None:
    number = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    phone = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)

    assert phone_errors(phone) == {}
    assert phone_errors(phone[:3] + " " + phone[3:]) == {"0": {"phone": [INVALID_PHONE]}}


# --- deduplicate ------------------------------------------------------------------------------


def test_it_keeps_the_first_occurrence_of_each_phone_in_order() -> None:
    recipients = [
        Recipient("+5491112345678", {"name": "first"}, {}),
        Recipient("+5491187654321", {"name": "other"}, {}),
        Recipient("+5491112345678", {"name": "second"}, {}),
    ]

    assert deduplicate(recipients) == [recipients[0], recipients[1]]


phone_lists = st.lists(
    st.integers(min_value=10_000_000, max_value=10_000_030).map(lambda n: f"+54911{n:08d}"),
    max_size=60,
)


@given(phone_lists)
def test_deduplication_keeps_first_occurrences_of_distinct_phones(phones: list[str]) -> None:
    recipients = [Recipient(phone, {"position": str(i)}, {}) for i, phone in enumerate(phones)]

    unique = deduplicate(recipients)

    assert len(unique) == len(set(phones))
    assert [r.phone for r in unique] == list(dict.fromkeys(phones))
    for kept in unique:
        assert kept.variables["position"] == str(phones.index(kept.phone))


@given(st.lists(st.text(max_size=20), max_size=20))
def test_parsing_any_phones_either_accepts_e164_or_names_each_bad_index(phones: list[str]) -> None:
    recipients, errors = parse_recipients([{"phone": phone} for phone in phones])

    if errors:
        assert recipients == []
        for index, item_errors in errors.items():
            assert item_errors == {"phone": [INVALID_PHONE]}
            assert phone_errors(phones[int(index)]) != {}
    else:
        assert [r.phone for r in recipients] == phones
        for phone in phones:
            assert phone.startswith("+")
            assert phone[1:].isascii()
            assert phone[1:].isdigit()


# --- check_against_template -------------------------------------------------------------------


def test_it_accepts_recipients_that_fit_the_template_exactly() -> None:
    recipients = [Recipient("+5491112345678", {"name": "J", "code": "C"}, {"button_0": "x"})]

    errors = check_against_template(
        recipients, variables=["name", "code"], buttons=WELCOME_BUTTONS, template="welcome"
    )

    assert errors == {}


def test_it_names_missing_and_unknown_variables_in_the_templates_order() -> None:
    recipients = [Recipient("+5491112345678", {"zip": "7600"}, {"button_0": "x"})]

    errors = check_against_template(
        recipients, variables=["name", "code"], buttons=WELCOME_BUTTONS, template="welcome"
    )

    assert errors == {
        "0": {
            "variables": [
                "Missing variable(s) for template 'welcome': name, code.",
                "Unknown variable(s) for template 'welcome': zip. It takes: name, code.",
            ]
        }
    }


def test_it_says_when_a_template_takes_no_variables() -> None:
    recipients = [Recipient("+5491112345678", {"name": "Juan"}, {})]

    errors = check_against_template(recipients, variables=[], buttons={}, template="plain")

    assert errors == {
        "0": {
            "variables": ["Unknown variable(s) for template 'plain': name. It takes: no variables."]
        }
    }


def test_it_reads_which_buttons_take_a_variable_from_the_components() -> None:
    buttons = template_buttons(
        [
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "url": "https://x.example/{{1}}"},
                    {"type": "URL", "url": "https://x.example/static"},
                    {"type": "PHONE_NUMBER", "phone_number": "+5491112345678"},
                    {"type": "QUICK_REPLY", "text": "Si"},
                    {"type": "COPY_CODE", "example": "ABC"},
                ],
            }
        ]
    )

    assert [(b["type"], b["takes_variable"], b["requires_variable"]) for b in buttons] == [
        ("URL", True, True),
        ("URL", False, False),
        ("PHONE_NUMBER", False, False),
        ("QUICK_REPLY", True, False),
        ("COPY_CODE", True, True),
    ]


def test_it_reports_every_button_problem_of_a_recipient() -> None:
    buttons = {
        0: TemplateButton(index=0, type="URL", takes_variable=True, requires_variable=True),
        1: TemplateButton(
            index=1, type="PHONE_NUMBER", takes_variable=False, requires_variable=False
        ),
    }
    recipients = [Recipient("+5491112345678", {}, {"button_1": "x", "button_5": "y"})]

    errors = check_against_template(recipients, variables=[], buttons=buttons, template="t")

    assert errors == {
        "0": {
            "button_variables": [
                "Button 1 (PHONE_NUMBER) of template 't' takes no variable.",
                "Template 't' has no button 5 ('button_5').",
                "Missing variable for button 0 (URL): button_0.",
            ]
        }
    }
