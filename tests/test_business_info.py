"""GET /api/v1/business-info/: the profile of the key's organization, as the contract shows it."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, override_settings
from rest_framework.test import APIClient

from mindo import api_keys
from mindo.models import CompanySize, CompanyType, Organization
from tests import factories
from tests.conftest import Tenant

URL = "/api/v1/business-info/"

# The contract's example body, verbatim.
SPEC_EXAMPLE: dict[str, Any] = {
    "id": 12,
    "name": "Mi Empresa SRL",
    "email": "contacto@miempresa.com",
    "phone": "+54 9 223 675-0780",
    "website": "https://miempresa.com",
    "address": "Av. Siempre Viva 123, Mar del Plata",
    "description": "Tienda de indumentaria deportiva.",
    "timezone": "America/Argentina/Buenos_Aires",
    "companySize": "SMALL",
    "companySizeDisplay": "11-50 empleados (Pequeña)",
    "companyTypes": ["ECOMMERCE"],
    "categories": ["Indumentaria", "Retail"],
}


def profile_fill(organization: Organization, **fields: Any) -> None:
    """The example's profile (but its name and id), with `fields` instead where given."""
    example = {
        "email": SPEC_EXAMPLE["email"],
        "phone": SPEC_EXAMPLE["phone"],
        "website": SPEC_EXAMPLE["website"],
        "address": SPEC_EXAMPLE["address"],
        "description": SPEC_EXAMPLE["description"],
        "timezone": SPEC_EXAMPLE["timezone"],
        "company_size": CompanySize.SMALL,
        "company_types": [CompanyType.ECOMMERCE],
        "categories": SPEC_EXAMPLE["categories"],
    }
    Organization.objects.filter(pk=organization.pk).update(**{**example, **fields})


def test_it_answers_the_contracts_example_key_for_key(tenant: Tenant) -> None:
    Organization.objects.filter(pk=tenant.organization.pk).update(name="Mi Empresa SRL")
    profile_fill(tenant.organization)

    response = tenant.client.get(URL)

    assert response.status_code == 200
    body = response.json()
    assert list(body) == list(SPEC_EXAMPLE)
    assert body == {**SPEC_EXAMPLE, "id": tenant.organization.pk}
    assert {key: type(value) for key, value in body.items()} == {
        key: type(value) for key, value in SPEC_EXAMPLE.items()
    }


@pytest.mark.parametrize(
    ("size", "display"),
    [
        ("MICRO", "1-10 empleados (Micro)"),
        ("SMALL", "11-50 empleados (Pequeña)"),
        ("MEDIUM", "51-250 empleados (Mediana)"),
        ("LARGE", "251-1000 empleados (Grande)"),
        ("ENTERPRISE", "1000+ empleados (Corporativa)"),
    ],
)
def test_it_labels_each_company_size_in_spanish(tenant: Tenant, size: str, display: str) -> None:
    profile_fill(tenant.organization, company_size=size)

    body = tenant.client.get(URL).json()

    assert (body["companySize"], body["companySizeDisplay"]) == (size, display)


def test_every_size_has_a_label_of_the_same_form() -> None:
    assert [size.value for size in CompanySize] == [
        "MICRO",
        "SMALL",
        "MEDIUM",
        "LARGE",
        "ENTERPRISE",
    ]
    assert all(" empleados (" in size.label and size.label.endswith(")") for size in CompanySize)


def test_an_organization_without_a_profile_answers_empty_values_and_a_null_size(
    tenant: Tenant,
) -> None:
    body = tenant.client.get(URL).json()

    assert body == {
        "id": tenant.organization.pk,
        "name": "Mindo",
        "email": "",
        "phone": "",
        "website": "",
        "address": "",
        "description": "",
        "timezone": "UTC",
        "companySize": None,
        "companySizeDisplay": None,
        "companyTypes": [],
        "categories": [],
    }


def test_it_answers_both_company_types(tenant: Tenant) -> None:
    profile_fill(tenant.organization, company_types=["ECOMMERCE", "CLINIC"])

    assert tenant.client.get(URL).json()["companyTypes"] == ["ECOMMERCE", "CLINIC"]


def test_each_key_sees_only_its_own_organization(tenant: Tenant, other_tenant: Tenant) -> None:
    profile_fill(tenant.organization)
    profile_fill(
        other_tenant.organization,
        email="otra@example.com",
        company_size=CompanySize.ENTERPRISE,
        company_types=[CompanyType.CLINIC],
        categories=["Salud"],
    )

    mine = tenant.client.get(URL).json()
    theirs = other_tenant.client.get(URL).json()

    assert (mine["id"], mine["name"], mine["email"]) == (
        tenant.organization.pk,
        "Mindo",
        "contacto@miempresa.com",
    )
    assert (theirs["id"], theirs["name"], theirs["email"], theirs["categories"]) == (
        other_tenant.organization.pk,
        "Other",
        "otra@example.com",
        ["Salud"],
    )


def test_it_takes_no_parameter_to_ask_for_another_organization(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    body = tenant.client.get(URL, {"id": other_tenant.organization.pk}).json()

    assert body["id"] == tenant.organization.pk


def test_it_answers_without_the_trailing_slash(tenant: Tenant) -> None:
    response = tenant.client.get(URL.rstrip("/"))

    assert response.status_code == 200
    assert response.json()["id"] == tenant.organization.pk


def test_an_edit_in_the_admin_shows_on_the_next_request(
    tenant: Tenant, admin_client: Client
) -> None:
    assert tenant.client.get(URL).json()["companySize"] is None

    response = admin_client.post(
        f"/admin/mindo/organization/{tenant.organization.pk}/change/",
        {
            "name": "Mindo",
            "email": "hola@example.com",
            "phone": "+54 11 5555-0000",
            "website": "https://example.com",
            "address": "Calle 1",
            "description": "Clinica",
            "timezone": "America/Argentina/Cordoba",
            "company_size": "MEDIUM",
            "company_types": ["CLINIC"],
            "categories": "Salud, Turnos",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]

    body = tenant.client.get(URL).json()
    assert body["email"] == "hola@example.com"
    assert body["timezone"] == "America/Argentina/Cordoba"
    assert (body["companySize"], body["companySizeDisplay"]) == (
        "MEDIUM",
        "51-250 empleados (Mediana)",
    )
    assert body["companyTypes"] == ["CLINIC"]
    assert body["categories"] == ["Salud", "Turnos"]


def test_the_admin_refuses_a_time_zone_that_is_not_iana(
    tenant: Tenant, admin_client: Client
) -> None:
    response = admin_client.post(
        f"/admin/mindo/organization/{tenant.organization.pk}/change/",
        {
            "name": "Mindo",
            "timezone": "GMT-3",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 200
    assert "timezone" in response.context["adminform"].form.errors
    tenant.organization.refresh_from_db()
    assert tenant.organization.timezone == "UTC"


@override_settings(API_KEY_CACHE_SECONDS=5)
def test_it_reads_the_profile_in_one_query_once_the_key_is_known(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch, django_assert_num_queries: Any
) -> None:
    monkeypatch.setattr(api_keys, "cache_clock", lambda: 1_000.0)  # the key stays cached
    tenant.client.get(URL)  # the key's lookup and its last_used_at

    with django_assert_num_queries(1):
        assert tenant.client.get(URL).status_code == 200


def test_a_fresh_key_of_the_organization_sees_the_same_profile(tenant: Tenant) -> None:
    profile_fill(tenant.organization)
    _, raw_key = factories.make_api_key(tenant.organization)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)

    assert client.get(URL).json() == tenant.client.get(URL).json()
