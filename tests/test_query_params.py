"""Numeric query parameters of every list endpoint: whole numbers in range, or a 400 naming them."""

from __future__ import annotations

from typing import Any

import pytest

from bulksend.models import BulkSend
from mindo.query_params import BIGINT_MAX, positive_int_parse
from tests import factories
from tests.conftest import Tenant

LIST_URL = "/api/v1/meta-templates/bulk-sends/"

# Each of these once reached a parser that accepted it or built something from it: a Decimal of
# `-1e1000000` took django-filter about 30 s of CPU, `-1e4300` raised and answered an HTML 500.
BAD_NUMBERS = [
    "-1e4300",
    "-1e1000000",
    "1e3",
    "1.5",
    "-1",
    "0",
    "+1",
    " 1",
    "0x10",
    "NaN",
    "Infinity",
    "\u0663",  # ARABIC-INDIC DIGIT THREE, which int() would read
    "1_000",
    str(BIGINT_MAX + 1),
    pytest.param("9" * 5000, id="5000-nines"),
    "two",
]


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    return factories.make_bulk_send(tenant.number, tenant.template)


def assert_refused_naming(response: Any, name: str) -> None:
    assert response.status_code == 400, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == {name: [f"Enter a whole number from 1 to {BIGINT_MAX}."]}


@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_the_list_refuses_a_template_that_is_not_a_positive_bigint(
    tenant: Tenant, bulk_send: BulkSend, value: str
) -> None:
    response = tenant.client.get(LIST_URL, {"template": value})

    assert_refused_naming(response, "template")


@pytest.mark.parametrize("name", ["page", "page_size"])
@pytest.mark.parametrize("value", BAD_NUMBERS)
def test_the_list_refuses_a_page_or_page_size_that_is_not_a_positive_bigint(
    tenant: Tenant, bulk_send: BulkSend, name: str, value: str
) -> None:
    response = tenant.client.get(LIST_URL, {name: value})

    assert_refused_naming(response, name)


@pytest.mark.parametrize("name", ["page", "page_size"])
@pytest.mark.parametrize("value", ["-1e1000000", "0", "x", str(BIGINT_MAX + 1)])
def test_the_messages_list_refuses_a_page_or_page_size_that_is_not_a_positive_bigint(
    tenant: Tenant, bulk_send: BulkSend, name: str, value: str
) -> None:
    response = tenant.client.get(f"{LIST_URL}{bulk_send.pk}/messages/", {name: value})

    assert_refused_naming(response, name)


def test_the_largest_bigint_is_a_template_that_matches_nothing(
    tenant: Tenant, bulk_send: BulkSend
) -> None:
    response = tenant.client.get(LIST_URL, {"template": str(BIGINT_MAX)})

    assert response.status_code == 200
    assert response.json()["count"] == 0


def test_a_huge_number_is_refused_before_it_is_read() -> None:
    # A million digits would take int() a while too (and Python refuses over 4,300): the length
    # check comes first, so nothing is built from the text.
    with pytest.raises(ValueError, match="whole number"):
        positive_int_parse("9" * 1_000_000)
