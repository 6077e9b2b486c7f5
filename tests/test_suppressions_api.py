"""`/api/v1/suppressions/`: list, add, remove, scoped to the key's organization and scope."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from messaging.models import Suppression, SuppressionSource
from messaging.suppression import suppression_add
from mindo.api_keys import api_key_create
from mindo.models import ApiKeyScope
from tests.conftest import Tenant
from tests.factories import make_user

URL = "/api/v1/suppressions/"


@pytest.mark.django_db
def test_it_adds_lists_filters_and_removes_a_phone(tenant: Tenant) -> None:
    added = tenant.client.post(
        URL, {"phone": "+54 9 11 5000-0001", "reason": "Pidio baja"}, format="json"
    )
    assert added.status_code == 201, added.content
    assert added.json()["phone"] == "+5491150000001"
    assert added.json()["source"] == SuppressionSource.API
    assert set(added.json()) == {"phone", "source", "reason", "createdAt"}
    again = tenant.client.post(URL, {"phone": "+5491150000001"}, format="json")
    assert again.status_code == 200
    assert again.json()["reason"] == "Pidio baja"
    tenant.client.post(URL, {"phone": "+5491150000002"}, format="json")

    listing = tenant.client.get(URL).json()
    assert listing["count"] == 2
    assert [e["phone"] for e in listing["results"]] == ["+5491150000002", "+5491150000001"]
    one = tenant.client.get(URL, {"phone": "5491150000001"}).json()
    assert [e["phone"] for e in one["results"]] == ["+5491150000001"]

    assert tenant.client.delete(f"{URL}%2B5491150000001/").status_code == 204
    gone = tenant.client.delete(f"{URL}%2B5491150000001/")
    assert gone.status_code == 404
    assert gone.json() == {"error": "Numero +5491150000001 no encontrado en la lista de supresion"}
    assert list(Suppression.objects.values_list("phone", flat=True)) == ["+5491150000002"]


@pytest.mark.django_db
def test_a_phone_that_is_no_number_is_a_400_naming_it(tenant: Tenant) -> None:
    response = tenant.client.post(URL, {"phone": "hola"}, format="json")
    assert response.status_code == 400
    assert list(response.json()) == ["phone"]
    assert not Suppression.objects.exists()


@pytest.mark.django_db
def test_another_organizations_list_is_neither_seen_nor_changed(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    suppression_add(organization=other_tenant.organization, phone="+5491150000001", source="api")
    assert tenant.client.get(URL).json()["count"] == 0
    assert tenant.client.delete(f"{URL}+5491150000001/").status_code == 404
    assert Suppression.objects.count() == 1


@pytest.mark.django_db
def test_a_key_without_the_contacts_scope_is_refused(tenant: Tenant) -> None:
    _, raw = api_key_create(
        organization=tenant.organization,
        user=make_user(tenant.organization),
        name="send only",
        scopes=[ApiKeyScope.SEND],
    )
    response = APIClient().get(URL, HTTP_X_API_KEY=raw)
    assert response.status_code == 403
    assert response.json() == {"error": "API Key no tiene acceso a este recurso"}
