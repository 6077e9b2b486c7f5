from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from bulksend.models import BulkSend, BulkSendStatus
from messaging.admin import EstimatedCountPaginator
from messaging.models import Contact, Message, MessageStatus
from mindo.models import ApiKey, ApiKeyScope, Membership, api_key_hash
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount
from tests import factories
from tests.conftest import Tenant

RAW_KEY = re.compile(r"mindo_[A-Za-z0-9_-]{24}")
BULK_SENDS_URL = "/api/v1/meta-templates/bulk-sends/"
WAMID = "wamid.HBgNNTQ5MTEyMzQ1Njc4FQIAERgSQjVBN0YzRjQ2NzFCNDVBNQA="

ALL_MODELS = [
    "mindo/organization",
    "mindo/apikey",
    "templates_app/whatsappbusinessaccount",
    "templates_app/phonenumber",
    "templates_app/messagetemplate",
    "bulksend/bulksend",
    "messaging/message",
    "messaging/contact",
]


@pytest.fixture
def send(tenant: Tenant) -> BulkSend:
    """A send half done: one message read, one failed, two pending."""
    bulk_send = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    now = timezone.now()
    factories.make_message(
        bulk_send, phone="+5491112345678", status=MessageStatus.READ, sent_at=now, wamid=WAMID
    )
    factories.make_message(bulk_send, phone="+5491187654321", status=MessageStatus.FAILED)
    factories.make_message(bulk_send, phone="+5491199887766")
    factories.make_message(bulk_send, phone="+5215512345678")
    Contact.objects.create(organization=tenant.organization, phone="+5491112345678", name="Juan")
    return bulk_send


def _changelist(model: str) -> str:
    return f"/admin/{model}/"


def _result_list(response: Any) -> list[Any]:
    return list(response.context["cl"].result_list)


def _messages(response: Any) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.mark.parametrize("model", ALL_MODELS)
def test_it_renders_the_changelist_of_every_model(
    admin_client: Client, send: BulkSend, model: str
) -> None:
    response = admin_client.get(_changelist(model))
    assert response.status_code == 200
    assert _result_list(response), f"{model} lists nothing"


@pytest.mark.parametrize("model", ALL_MODELS)
def test_it_renders_the_page_of_one_object_of_every_model(
    admin_client: Client, send: BulkSend, model: str
) -> None:
    obj = _result_list(admin_client.get(_changelist(model)))[0]
    response = admin_client.get(f"{_changelist(model)}{obj.pk}/change/")
    assert response.status_code == 200


def test_it_finds_a_message_by_its_exact_wamid(admin_client: Client, send: BulkSend) -> None:
    response = admin_client.get(_changelist("messaging/message"), {"q": WAMID})
    assert response.status_code == 200
    assert [m.wamid for m in _result_list(response)] == [WAMID]


def test_it_finds_messages_by_the_start_of_the_phone(admin_client: Client, send: BulkSend) -> None:
    response = admin_client.get(_changelist("messaging/message"), {"q": "+54 911"})
    assert response.status_code == 200
    phones = sorted(m.recipient_phone for m in _result_list(response))
    assert phones == ["+5491112345678", "+5491187654321", "+5491199887766"]


def test_it_finds_the_messages_of_a_send_by_its_id(admin_client: Client, send: BulkSend) -> None:
    response = admin_client.get(_changelist("messaging/message"), {"q": str(send.pk)})
    assert len(_result_list(response)) == 4


def test_it_finds_nothing_for_an_unknown_wamid(admin_client: Client, send: BulkSend) -> None:
    response = admin_client.get(_changelist("messaging/message"), {"q": "wamid.unknown"})
    assert response.status_code == 200
    assert _result_list(response) == []


@pytest.mark.parametrize("term", [WAMID, "+54911", "5491112345678"])
def test_it_searches_messages_through_an_index(send: BulkSend, term: str) -> None:
    model_admin = admin.site._registry[Message]
    request = RequestFactory().get("/")
    queryset, _ = model_admin.get_search_results(request, Message.objects.all(), term)
    with connection.cursor() as cursor:
        # The table is tiny here; forbidding scans shows whether an index can serve the search.
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = queryset.explain()
    assert "Seq Scan" not in plan
    assert "Index" in plan


def test_it_never_counts_the_messages_table_on_the_unfiltered_list(
    admin_client: Client, send: BulkSend
) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(_changelist("messaging/message"))
    assert response.status_code == 200
    assert WAMID in response.content.decode()
    counts = [
        query["sql"]
        for query in queries.captured_queries
        if "COUNT(" in query["sql"].upper() and "messaging_message" in query["sql"]
    ]
    assert counts == []


def test_it_stops_counting_a_filtered_message_list_at_its_cap(send: BulkSend) -> None:
    class SmallCap(EstimatedCountPaginator):
        count_cap = 2

    paginator = SmallCap(Message.objects.filter(bulk_send=send).order_by("-id"), 100)
    assert paginator.count == 3


def test_it_shows_a_send_with_its_progress_bar(admin_client: Client, send: BulkSend) -> None:
    response = admin_client.get(_changelist("bulksend/bulksend"))
    assert response.status_code == 200
    # Two of four messages are done: one read, one failed.
    assert '<progress value="50.0" max="100"' in response.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"status__exact": "PROCESSING"}, 1),
        ({"status__exact": "COMPLETED"}, 0),
        ({"created_at__gte": "2000-01-01 00:00:00+00:00"}, 1),
        ({"created_at__year": "1999"}, 0),
    ],
)
def test_it_filters_sends_by_status_and_creation(
    admin_client: Client, send: BulkSend, query: dict[str, str], expected: int
) -> None:
    response = admin_client.get(_changelist("bulksend/bulksend"), query)
    assert response.status_code == 200
    assert len(_result_list(response)) == expected


def test_it_finds_a_send_by_its_id(admin_client: Client, send: BulkSend, tenant: Tenant) -> None:
    factories.make_bulk_send(tenant.number, tenant.template)
    response = admin_client.get(_changelist("bulksend/bulksend"), {"q": str(send.pk)})
    assert [s.pk for s in _result_list(response)] == [send.pk]


def test_it_offers_no_way_to_add_or_change_sends_and_messages(
    admin_client: Client, send: BulkSend
) -> None:
    message = send.messages.first()
    assert message is not None
    assert admin_client.get("/admin/bulksend/bulksend/add/").status_code == 403
    assert admin_client.get("/admin/messaging/message/add/").status_code == 403
    response = admin_client.post(
        f"/admin/messaging/message/{message.pk}/change/", {"status": "read"}
    )
    assert response.status_code == 403
    message.refresh_from_db()
    assert message.status == MessageStatus.READ


def _add_key(
    admin_client: Client, tenant: Tenant, name: str = "ops key", **fields: Any
) -> tuple[str, str]:
    """Add a key through the admin; return the raw key and the one message that showed it."""
    user = factories.make_user(tenant.organization)
    form = {"organization": tenant.organization.pk, "user": user.pk, "name": name}
    form.update({"scopes": list(ApiKeyScope.values), **fields})
    response = admin_client.post("/admin/mindo/apikey/add/", form, follow=True)
    assert response.status_code == 200
    shown = [m for m in _messages(response) if RAW_KEY.search(m)]
    assert len(shown) == 1, _messages(response)
    match = RAW_KEY.search(shown[0])
    assert match is not None
    return match.group(0), shown[0]


def test_it_shows_a_new_api_key_once_and_stores_only_its_hash(
    admin_client: Client, tenant: Tenant
) -> None:
    raw_key, message = _add_key(admin_client, tenant)
    assert message == (
        f"The new API key is {raw_key}. Copy it now: it is not stored and will not be shown again."
    )
    api_key = ApiKey.objects.get(name="ops key")
    assert api_key.key_hash == api_key_hash(raw_key)
    stored = [str(getattr(api_key, f.attname)) for f in ApiKey._meta.concrete_fields]
    assert all(raw_key not in value for value in stored)
    assert raw_key not in admin_client.get(_changelist("mindo/apikey")).content.decode()


def test_an_api_key_created_in_the_admin_authenticates(
    admin_client: Client, tenant: Tenant
) -> None:
    raw_key, _ = _add_key(admin_client, tenant)
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    assert client.get(BULK_SENDS_URL).status_code == 200


def test_it_refuses_a_key_for_a_user_of_another_organization(
    admin_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    stranger = factories.make_user(other_tenant.organization)
    response = admin_client.post(
        "/admin/mindo/apikey/add/",
        {"organization": tenant.organization.pk, "user": stranger.pk, "name": "wrong"},
    )
    assert response.status_code == 200
    assert "is not a member of Mindo" in response.content.decode()
    assert not ApiKey.objects.filter(name="wrong").exists()


def test_it_only_lets_an_existing_keys_name_scopes_and_expiry_change(
    admin_client: Client, tenant: Tenant
) -> None:
    url = f"/admin/mindo/apikey/{tenant.api_key.pk}/change/"
    response = admin_client.post(
        url,
        {
            "name": "renamed",
            "scopes": ["read", "account"],
            "expires_at_0": "2031-05-01",
            "expires_at_1": "12:00:00",
            "organization": 0,
            "revoked_at_0": "2020-01-01",
        },
    )
    assert response.status_code == 302
    tenant.api_key.refresh_from_db()
    assert tenant.api_key.name == "renamed"
    assert tenant.api_key.scopes == ["read", "account"]
    assert tenant.api_key.expires_at == datetime(2031, 5, 1, 12, tzinfo=UTC)
    assert tenant.api_key.organization == tenant.organization
    assert tenant.api_key.revoked_at is None


def test_revoking_a_key_makes_the_api_refuse_it(admin_client: Client, tenant: Tenant) -> None:
    assert tenant.client.get(BULK_SENDS_URL).status_code == 200
    response = admin_client.post(
        _changelist("mindo/apikey"),
        {"action": "revoke_keys", "_selected_action": [tenant.api_key.pk]},
        follow=True,
    )
    assert response.status_code == 200
    tenant.api_key.refresh_from_db()
    assert tenant.api_key.revoked_at is not None

    refused = tenant.client.get(BULK_SENDS_URL)
    assert refused.status_code == 401
    assert refused.json() == {"error": "API Key expirada"}


def test_revoking_again_keeps_the_first_revocation_time(
    admin_client: Client, tenant: Tenant
) -> None:
    first = timezone.now() - timedelta(days=3)
    ApiKey.objects.filter(pk=tenant.api_key.pk).update(revoked_at=first)
    admin_client.post(
        _changelist("mindo/apikey"),
        {"action": "revoke_keys", "_selected_action": [tenant.api_key.pk]},
    )
    tenant.api_key.refresh_from_db()
    assert tenant.api_key.revoked_at == first


def test_it_lists_keys_masked(admin_client: Client, tenant: Tenant) -> None:
    content = admin_client.get(_changelist("mindo/apikey")).content.decode()
    assert tenant.api_key.masked in content
    assert tenant.raw_key not in content


def test_it_lists_organizations_with_their_members(admin_client: Client, tenant: Tenant) -> None:
    response = admin_client.get(f"/admin/mindo/organization/{tenant.organization.pk}/change/")
    assert response.status_code == 200
    membership = Membership.objects.get(organization=tenant.organization)
    assert f'value="{membership.user_id}"' in response.content.decode()


def test_it_never_shows_an_access_token(admin_client: Client, tenant: Tenant) -> None:
    WhatsAppBusinessAccount.objects.filter(pk=tenant.account.pk).update(access_token="s3cret-tok")
    listing = admin_client.get(_changelist("templates_app/whatsappbusinessaccount"))
    page = admin_client.get(
        f"/admin/templates_app/whatsappbusinessaccount/{tenant.account.pk}/change/"
    )
    assert "s3cret-tok" not in listing.content.decode()
    assert "s3cret-tok" not in page.content.decode()


def _account_form(account: WhatsAppBusinessAccount, **fields: str) -> dict[str, object]:
    numbers = list(account.phone_numbers.all())
    data: dict[str, object] = {
        "organization": account.organization_id,
        "waba_id": account.waba_id,
        "name": account.name,
        "access_token": "",
        "messaging_limit_tier": account.messaging_limit_tier,
        "phone_numbers-TOTAL_FORMS": len(numbers),
        "phone_numbers-INITIAL_FORMS": len(numbers),
        "phone_numbers-MIN_NUM_FORMS": 0,
        "phone_numbers-MAX_NUM_FORMS": 1000,
    }
    for index, number in enumerate(numbers):
        prefix = f"phone_numbers-{index}-"
        data.update(
            {
                f"{prefix}id": number.pk,
                f"{prefix}business_account": account.pk,
                f"{prefix}phone_number_id": number.phone_number_id,
                f"{prefix}display_phone_number": number.display_phone_number,
                f"{prefix}verified_name": number.verified_name,
                f"{prefix}quality_rating": number.quality_rating,
                f"{prefix}messaging_limit_tier": number.messaging_limit_tier,
                f"{prefix}throughput_per_second": number.throughput_per_second,
            }
        )
    data.update(fields)
    return data


def test_it_keeps_the_access_token_when_the_field_is_left_blank(
    admin_client: Client, tenant: Tenant
) -> None:
    url = f"/admin/templates_app/whatsappbusinessaccount/{tenant.account.pk}/change/"
    response = admin_client.post(url, _account_form(tenant.account, name="Renamed"))
    assert response.status_code == 302, response.content.decode()
    tenant.account.refresh_from_db()
    assert tenant.account.name == "Renamed"
    assert tenant.account.access_token == "test-token"


def test_it_refuses_an_unknown_tier(admin_client: Client, tenant: Tenant) -> None:
    url = f"/admin/templates_app/whatsappbusinessaccount/{tenant.account.pk}/change/"
    response = admin_client.post(url, _account_form(tenant.account, messaging_limit_tier="TIER_X"))
    assert response.status_code == 200
    assert "Unknown messaging limit tier" in response.content.decode()
    tenant.account.refresh_from_db()
    assert tenant.account.messaging_limit_tier == "TIER_1000"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"quality_rating__exact": "GREEN"}, 1),
        ({"quality_rating__exact": "RED"}, 0),
        ({"messaging_limit_tier__exact": "TIER_1000"}, 1),
    ],
)
def test_it_filters_numbers_by_quality_and_tier(
    admin_client: Client, tenant: Tenant, query: dict[str, str], expected: int
) -> None:
    response = admin_client.get(_changelist("templates_app/phonenumber"), query)
    assert response.status_code == 200
    assert len(_result_list(response)) == expected


def _template_form(template: MessageTemplate, components: str) -> dict[str, object]:
    return {
        "business_account": template.business_account_id,
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "status": template.status,
        "meta_template_id": "",
        "components": components,
    }


def test_saving_a_template_in_the_admin_derives_its_variables_and_buttons(
    admin_client: Client, tenant: Tenant
) -> None:
    components = [
        {"type": "BODY", "text": "Hola {{first_name}}, tu turno es el {{day}}."},
        {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "OK"}]},
    ]
    url = f"/admin/templates_app/messagetemplate/{tenant.template.pk}/change/"
    response = admin_client.post(url, _template_form(tenant.template, json.dumps(components)))
    assert response.status_code == 302, response.content.decode()
    tenant.template.refresh_from_db()
    assert tenant.template.variables == ["first_name", "day"]
    assert tenant.template.parameter_format == "NAMED"
    assert [b["type"] for b in tenant.template.buttons] == ["QUICK_REPLY"]


def test_it_refuses_components_that_are_not_metas_list(
    admin_client: Client, tenant: Tenant
) -> None:
    url = f"/admin/templates_app/messagetemplate/{tenant.template.pk}/change/"
    response = admin_client.post(url, _template_form(tenant.template, '{"type": "BODY"}'))
    assert response.status_code == 200
    assert "Components must be a JSON list" in response.content.decode()
    tenant.template.refresh_from_db()
    assert tenant.template.variables == ["name", "code"]


def test_it_refuses_a_phone_number_with_an_unknown_tier(
    admin_client: Client, tenant: Tenant
) -> None:
    response = admin_client.post(
        "/admin/templates_app/phonenumber/add/",
        {
            "business_account": tenant.account.pk,
            "phone_number_id": "999000111222333",
            "display_phone_number": "+1 202-555-0100",
            "verified_name": "X",
            "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_ABC",
            "throughput_per_second": 80,
        },
    )
    assert response.status_code == 200
    assert not PhoneNumber.objects.filter(phone_number_id="999000111222333").exists()
