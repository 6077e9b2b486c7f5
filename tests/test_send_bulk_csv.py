"""POST send-bulk/ with the recipients as CSV (bulksend.csv_recipients): a `text/csv` body or a
multipart file `recipients`, the other fields as query parameters; errors name CSV lines."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from bulksend.csv_recipients import MISSING_FILE
from bulksend.models import BulkSend
from bulksend.serializers import EMPTY_RECIPIENTS
from messaging.models import Message
from tests.conftest import Tenant
from tests.test_send_bulk import REQUEST, URL

FIELDS = {
    "phone_number_id": REQUEST["phone_number_id"],
    "template_name": REQUEST["template_name"],
    "language": REQUEST["language"],
}
CSV = (
    "phone,name,code,button_0\n"
    "+5491112345678,Juan Perez,ABC123,ABC-123\n"
    "+5491187654321,Maria Garcia,DEF456,DEF-456\n"
    "+5491155667788,Carlos Lopez,GHI789,GHI-789\n"
)


def post_csv(tenant: Tenant, body: str | bytes, **fields: str) -> Any:
    query = urlencode({**FIELDS, **fields})
    data = body.encode() if isinstance(body, str) else body
    return tenant.client.generic("POST", f"{URL}?{query}", data, content_type="text/csv")


def sent_as(bulk_send_id: str) -> list[tuple[str, dict[str, str], dict[str, str]]]:
    messages = Message.objects.filter(bulk_send_id=bulk_send_id).order_by("id")
    return [(m.recipient_phone, m.variables, m.button_variables) for m in messages]


def test_a_csv_body_sends_what_the_same_json_request_sends(tenant: Tenant) -> None:
    from_csv = post_csv(tenant, CSV)
    from_json = tenant.client.post(URL, REQUEST, format="json")

    assert from_csv.status_code == from_json.status_code == 202, from_csv.content
    assert from_csv.json().keys() == from_json.json().keys()
    assert from_csv.json()["total_recipients"] == 3
    assert sent_as(from_csv.json()["bulk_send_id"]) == sent_as(from_json.json()["bulk_send_id"])


def test_a_spreadsheets_csv_with_a_bom_semicolons_and_quotes_reads_the_same(
    tenant: Tenant,
) -> None:
    spreadsheet = (
        "\ufeffphone;name;code;button_0\r\n"
        '+5491112345678;"Perez; Juan";ABC123;ABC-123\r\n'
        '+5491187654321;"Maria ""Mari"" Garcia";DEF456;DEF-456\r\n'
        "\r\n"
    ).encode()

    response = post_csv(tenant, spreadsheet)

    assert response.status_code == 202, response.content
    assert [variables["name"] for _, variables, _ in sent_as(response.json()["bulk_send_id"])] == [
        "Perez; Juan",
        'Maria "Mari" Garcia',
    ]


def test_a_duplicate_phone_is_sent_once_as_in_json(tenant: Tenant) -> None:
    response = post_csv(tenant, CSV + "+5491112345678,Otro,XYZ999,XYZ-999\n")

    assert response.status_code == 202
    assert (response.json()["total_recipients"], response.json()["unique_recipients"]) == (4, 3)


def test_errors_name_the_csv_line_of_each_recipient(tenant: Tenant) -> None:
    body = (
        "phone,name,code,button_0\n"
        "+5491112345678,Juan Perez,ABC123,ABC-123\n"
        '+5491187654321,"Maria\nGarcia",DEF456,DEF-456\n'  # one record on lines 3 and 4
        "5491155667788,Carlos Lopez,GHI789,GHI-789\n"
        "+5491144556677,Ana,JKL012\n"
    )

    response = post_csv(tenant, body)

    assert response.status_code == 400
    errors = response.json()["recipients"]
    assert list(errors) == ["line 5", "line 6"]
    assert list(errors["line 5"]) == ["phone"]
    assert errors["line 6"] == ["3 cells, but the header has 4 columns."]
    assert not BulkSend.objects.exists()


def test_a_variable_the_template_lacks_is_named_by_its_line(tenant: Tenant) -> None:
    body = "phone,name,code,button_0,extra\n+5491112345678,Juan,ABC123,ABC-123,x\n"

    response = post_csv(tenant, body)

    assert response.status_code == 400
    assert list(response.json()["recipients"]) == ["line 2"]
    assert not BulkSend.objects.exists()


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "name,code\nJuan,ABC123\n",
            "The header (line 1) needs a `phone` column (or a `user_id` one).",
        ),
        ("phone,name,name\n+5491112345678,a,b\n", "The header (line 1) names name more than once."),
        ("", "The CSV is empty: line 1 must be a header with `phone`."),
        (b"phone,name\n+5491112345678,Jos\xe9\n", "The CSV must be UTF-8: line 2 is not."),
    ],
)
def test_a_file_that_is_not_a_recipients_csv_is_a_400_saying_why(
    tenant: Tenant, body: str | bytes, problem: str
) -> None:
    response = post_csv(tenant, body)

    assert (response.status_code, response.json()) == (400, {"recipients": [problem]})
    assert not BulkSend.objects.exists()


def test_a_header_without_rows_is_the_contracts_empty_recipients_error(tenant: Tenant) -> None:
    response = post_csv(tenant, "phone,name,code,button_0\n")

    assert (response.status_code, response.json()) == (400, {"error": EMPTY_RECIPIENTS})


def test_a_missing_query_field_is_named(tenant: Tenant) -> None:
    query = urlencode({"phone_number_id": FIELDS["phone_number_id"]})
    response = tenant.client.generic(
        "POST", f"{URL}?{query}", CSV.encode(), content_type="text/csv"
    )

    assert response.status_code == 400
    assert response.json() == {"template_name": ["This field is required."]}


def test_a_multipart_form_with_the_file_sends_it(tenant: Tenant) -> None:
    upload = SimpleUploadedFile("recipients.csv", CSV.encode(), content_type="text/csv")

    response = tenant.client.post(URL, {**FIELDS, "recipients": upload}, format="multipart")

    assert response.status_code == 202, response.content
    assert len(sent_as(response.json()["bulk_send_id"])) == 3


def test_a_multipart_form_without_the_file_names_it(tenant: Tenant) -> None:
    response = tenant.client.post(URL, FIELDS, format="multipart")

    assert (response.status_code, response.json()) == (400, {"recipients": [MISSING_FILE]})


def test_a_line_that_is_no_recipient_refuses_the_whole_file(tenant: Tenant) -> None:
    response = post_csv(tenant, CSV + "+5491144556677,Ana\n")

    assert response.status_code == 400
    assert response.json() == {"recipients": {"line 5": ["2 cells, but the header has 4 columns."]}}
    assert not BulkSend.objects.exists()
