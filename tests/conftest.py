from __future__ import annotations

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from mindo.models import ApiKey, Organization
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount
from tests import factories


@dataclass
class Tenant:
    """An organization with a key, a business account, a number and the welcome template."""

    organization: Organization
    api_key: ApiKey
    raw_key: str
    account: WhatsAppBusinessAccount
    number: PhoneNumber
    template: MessageTemplate
    client: APIClient


def make_tenant(name: str | None = None, *, phone_number_id: str | None = None) -> Tenant:
    organization = factories.make_organization(name)
    api_key, raw_key = factories.make_api_key(organization)
    account = factories.make_account(organization)
    number_fields = {"phone_number_id": phone_number_id} if phone_number_id else {}
    number = factories.make_number(account, **number_fields)
    template = factories.make_template(account)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return Tenant(organization, api_key, raw_key, account, number, template, client)


@pytest.fixture
def tenant(db: None) -> Tenant:
    return make_tenant("Mindo", phone_number_id="813497231850626")


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return make_tenant("Other")


@pytest.fixture
def anonymous_client() -> APIClient:
    return APIClient()
