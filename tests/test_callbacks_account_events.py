"""`template.status` and `phone_number.quality` callbacks from Meta's account updates, recorded
in the transaction that applies them, for organizations whose endpoint wants them."""

from __future__ import annotations

import pytest
from django.test import Client

from callbacks.models import CallbackEvent, WebhookEndpoint
from callbacks.signing import secret_generate
from templates_app.models import TemplateStatus
from tests import meta_payloads as meta
from tests.conftest import Tenant


@pytest.fixture
def endpoint(tenant: Tenant) -> WebhookEndpoint:
    return WebhookEndpoint.objects.create(
        organization=tenant.organization,
        url="http://127.0.0.1:9899/hook",
        events=["template.status", "phone_number.quality"],
        secret=secret_generate(),
    )


def post(tenant: Tenant, change: dict[str, object]) -> None:
    document = meta.notification(meta.entry(change, waba_id=tenant.account.waba_id))
    assert meta.post(Client(), document).status_code == 200


@pytest.mark.usefixtures("endpoint")
def test_a_template_paused_by_meta_reaches_the_customer(tenant: Tenant) -> None:
    template = tenant.template
    change = meta.template_status_change("PAUSED", name=template.name, language=template.language)

    post(tenant, change)
    post(tenant, change)  # the same news again changes nothing, and tells nothing

    [event] = CallbackEvent.objects.filter(type="template.status")
    assert event.body == {
        "template_id": template.pk,
        "meta_template_id": template.meta_template_id,
        "name": template.name,
        "language": template.language,
        "status": TemplateStatus.PAUSED,
        "meta_event": "PAUSED",
        "waba_id": tenant.account.waba_id,
    }


@pytest.mark.usefixtures("endpoint")
def test_a_flagged_number_reaches_the_customer(tenant: Tenant) -> None:
    change = meta.quality_change("FLAGGED", display_phone_number=tenant.number.display_phone_number)

    post(tenant, change)

    [event] = CallbackEvent.objects.filter(type="phone_number.quality")
    assert event.body["phone_number_id"] == tenant.number.phone_number_id
    assert event.body["quality_rating"] == "RED"
    assert event.body["messaging_limit_tier"] == "TIER_10K"
    assert event.body["meta_event"] == "FLAGGED"


def test_without_an_endpoint_account_updates_make_no_event(tenant: Tenant) -> None:
    post(tenant, meta.template_status_change("REJECTED", name=tenant.template.name))

    assert not CallbackEvent.objects.exists()
