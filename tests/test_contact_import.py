"""Contacts by hand, from CSV (the admin's action and `import_contacts`, errors by line) and
from the demo."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from messaging.contact_import import contacts_import
from messaging.models import Contact, ContactList, ContactSource
from tests.conftest import Tenant

CSV = """phone,full_name,email
+54 223 15-596-1983,Juan Perez,juan@ejemplo.com
5491187654321,Maria Garcia,
hola,Nadie,nadie@ejemplo.com
5492235961983,Juan Otra Vez,
+5491199887766,Carlos Lopez,no-es-un-email
,Sin Telefono,

+1 202 555 0143,,
"""
# Line numbers as a text editor shows them (the header is line 1).
EXPECTED_ERRORS = [
    "line 4: phone 'hola' is not a phone number",
    "line 5: phone +5492235961983 is already on line 2",
    "line 6: email 'no-es-un-email' is not an email address",
    "line 7: phone is missing",
]


@pytest.fixture
def vip(tenant: Tenant) -> ContactList:
    return ContactList.objects.create(organization=tenant.organization, name="VIP")


def rows(tenant: Tenant) -> list[tuple[str, str | None, str | None, str, str]]:
    return [
        (c.phone, c.name, c.email, c.contact_list.name if c.contact_list else "", c.source)
        for c in Contact.objects.filter(organization=tenant.organization).order_by("phone")
    ]


def test_good_rows_are_imported_and_each_bad_one_is_reported_by_its_line(
    tenant: Tenant, vip: ContactList
) -> None:
    report = contacts_import(contact_list=vip, lines=io.StringIO(CSV))

    assert [str(error) for error in report.errors] == EXPECTED_ERRORS
    assert (report.created, report.updated) == (3, 0)
    assert rows(tenant) == [
        ("+12025550143", None, None, "VIP", "import"),
        ("+5491187654321", "Maria Garcia", None, "VIP", "import"),
        ("+5492235961983", "Juan Perez", "juan@ejemplo.com", "VIP", "import"),
    ]


def test_an_existing_contact_moves_into_the_list_and_takes_the_files_name(
    tenant: Tenant, vip: ContactList
) -> None:
    default = ContactList.objects.create(organization=tenant.organization, name="Otra")
    Contact.objects.create(
        organization=tenant.organization,
        contact_list=default,
        phone="+5491187654321",
        email="maria@ejemplo.com",
        source=ContactSource.ORGANIC,
    )

    report = contacts_import(contact_list=vip, lines=io.StringIO(CSV))

    assert (report.created, report.updated) == (2, 1)
    assert ("+5491187654321", "Maria Garcia", "maria@ejemplo.com", "VIP", "organic") in rows(tenant)


def test_a_file_without_a_phone_column_imports_nothing(tenant: Tenant, vip: ContactList) -> None:
    report = contacts_import(contact_list=vip, lines=io.StringIO("telefono,nombre\n+549223,X\n"))

    assert [str(error) for error in report.errors] == [
        "line 1: the header row has no 'phone' column"
    ]
    assert Contact.objects.count() == 0


def test_an_import_into_one_organization_leaves_another_ones_contacts(
    tenant: Tenant, other_tenant: Tenant, vip: ContactList
) -> None:
    theirs = ContactList.objects.create(organization=other_tenant.organization, name="VIP")
    Contact.objects.create(
        organization=other_tenant.organization, contact_list=theirs, phone="+5491187654321"
    )

    report = contacts_import(contact_list=vip, lines=io.StringIO(CSV))

    assert (report.created, report.updated) == (3, 0)
    assert rows(other_tenant) == [("+5491187654321", None, None, "VIP", "admin")]


def test_the_command_imports_and_prints_the_errors_by_line(
    tenant: Tenant, vip: ContactList, tmp_path: Path
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(CSV, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()

    call_command(
        "import_contacts",
        str(path),
        org=tenant.organization.name,
        list_name="VIP",
        stdout=out,
        stderr=err,
    )

    assert err.getvalue().splitlines() == EXPECTED_ERRORS
    assert out.getvalue().strip() == "VIP: 3 contact(s) created, 0 updated, 4 line(s) with errors"


def test_the_command_refuses_an_unknown_list_unless_told_to_create_it(
    tenant: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text("phone\n+5491187654321\n", encoding="utf-8")

    with pytest.raises(CommandError, match="--create-list"):
        call_command("import_contacts", str(path), org=tenant.organization.name, list_name="Nueva")
    call_command(
        "import_contacts",
        str(path),
        org=tenant.organization.name,
        list_name="Nueva",
        create_list=True,
        stdout=io.StringIO(),
    )

    assert rows(tenant) == [("+5491187654321", None, None, "Nueva", "import")]


def test_the_admin_action_leads_to_an_upload_that_reports_errors_by_line(
    admin_client: Client, tenant: Tenant, vip: ContactList
) -> None:
    action = admin_client.post(
        "/admin/messaging/contactlist/",
        {"action": "import_contacts", "_selected_action": [vip.pk]},
    )
    assert action.status_code == 302
    upload = SimpleUploadedFile("contacts.csv", CSV.encode(), content_type="text/csv")

    response = admin_client.post(action["Location"], {"file": upload})

    assert response.status_code == 200
    page = response.content.decode()
    for error in EXPECTED_ERRORS:
        assert error.replace("'", "&#x27;") in page
    assert len(rows(tenant)) == 3


def test_a_contact_added_in_the_admin_is_stored_in_e164(
    admin_client: Client, tenant: Tenant, vip: ContactList
) -> None:
    response = admin_client.post(
        "/admin/messaging/contact/add/",
        {
            "organization": tenant.organization.pk,
            "contact_list": vip.pk,
            "phone": "+54 223 15-596-1983",
            "name": "Juan Perez",
            "email": "",
            "source": "admin",
        },
    )

    assert response.status_code == 302, response.content
    assert rows(tenant) == [("+5492235961983", "Juan Perez", None, "VIP", "admin")]


def test_the_admin_refuses_a_list_of_another_organization(
    admin_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = ContactList.objects.create(organization=other_tenant.organization, name="VIP")

    response = admin_client.post(
        "/admin/messaging/contact/add/",
        {
            "organization": tenant.organization.pk,
            "contact_list": theirs.pk,
            "phone": "+5492235961983",
            "source": "admin",
        },
    )

    assert response.status_code == 200
    assert Contact.objects.count() == 0


def test_the_demo_provisions_the_lookup_pages_contact_once(db: None) -> None:
    call_command("demo", "--json", stdout=io.StringIO(), stderr=io.StringIO())
    out = io.StringIO()
    call_command("demo", "--json", stdout=out, stderr=io.StringIO())
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=json.loads(out.getvalue())["api_key"])

    body = client.get("/api/v1/contact-lookup/", {"phone": "5492235961983"}).json()

    assert body["found"] is True
    assert {k: body["contact"][k] for k in ("fullName", "phone", "email", "contactListName")} == {
        "fullName": "Juan Perez",
        "phone": "+5492235961983",
        "email": "juan@ejemplo.com",
        "contactListName": "Lista Principal",
    }
    assert Contact.objects.count() == 1
    assert ContactList.objects.count() == 1
