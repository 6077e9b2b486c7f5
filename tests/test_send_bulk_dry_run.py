"""POST send-bulk/?dry_run=true: everything checked, nothing created, a verdict per recipient
that would not be sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from rest_framework.response import Response

from bulksend.models import BulkSend
from messaging.models import Contact, MarketingCooldown, Message
from messaging.suppression import suppression_add
from mindo.models import IdempotencyKey
from templates_app.models import TemplateCategory
from tests import factories
from tests.conftest import Tenant

URL = "/api/v1/meta-templates/send-bulk/"
DRY_URL = f"{URL}?dry_run=true"
LISTED = "+5491155550000"
US = "+14155552671"
COOLING = "+5491144440000"
BUTTON = {"button_0": "abc"}


def recipient(phone: Any, **fields: Any) -> dict[str, Any]:
    return {
        "phone": phone,
        "variables": {"name": "Juan", "code": "A1"},
        "button_variables": BUTTON,
        **fields,
    }


def body(tenant: Tenant, recipients: list[Any], **fields: Any) -> dict[str, Any]:
    return {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": tenant.template.name,
        "language": tenant.template.language,
        "recipients": recipients,
        **fields,
    }


def dry_run(tenant: Tenant, payload: Any, **extra: Any) -> Response:
    response: Response = tenant.client.post(DRY_URL, payload, format="json", **extra)
    return response


def nothing_created() -> bool:
    return not (
        BulkSend.objects.exists()
        or Message.objects.exists()
        or Contact.objects.exists()
        or IdempotencyKey.objects.exists()
    )


def test_a_clean_list_answers_the_figures_of_the_send_and_no_verdict(tenant: Tenant) -> None:
    recipients = [recipient("+5491112345678"), recipient("+5491187654321")]

    response = dry_run(tenant, body(tenant, recipients))

    assert response.status_code == 200, response.json()
    answer = response.json()
    assert answer["dry_run"] is True
    assert answer["template_name"] == "welcome_message"
    assert (answer["total_recipients"], answer["unique_recipients"]) == (2, 2)
    assert answer["sendable_recipients"] == 2
    assert answer["verdicts"] == []
    assert answer["quota_info"] == {
        "can_send": True,
        "quota_needed": 2,
        "quota_available": 998,
        "quota_total": 1000,
        "tier": "TIER_1000",
    }
    assert answer["estimated_time_minutes"] > 0
    assert nothing_created()


def test_the_figures_are_those_send_bulk_answers(tenant: Tenant) -> None:
    recipients = [recipient(f"+54911123456{n:02d}") for n in range(5)]
    factories.make_message(
        factories.make_bulk_send(tenant.number, tenant.template),
        phone="+5491112345600",  # pending in an active send: holds its place already
    )

    planned = dry_run(tenant, body(tenant, recipients)).json()
    accepted = tenant.client.post(URL, body(tenant, recipients), format="json").json()

    assert planned["quota_info"] == accepted["quota_info"]
    assert planned["unique_recipients"] == accepted["unique_recipients"]
    assert planned["estimated_time_minutes"] == accepted["estimated_time_minutes"]


def test_each_verdict_names_its_recipient(tenant: Tenant) -> None:
    suppression_add(organization=tenant.organization, phone=LISTED, source="api")
    MarketingCooldown.objects.create(
        business_account=tenant.account,
        phone=COOLING,
        strikes=1,
        until=timezone.now() + timedelta(hours=4),
    )
    recipients = [
        recipient("+5491112345678"),  # 0: fine
        recipient("12345"),  # 1
        recipient("+5491112345678"),  # 2: duplicate of 0
        {"phone": "+5491187654321", "variables": {"name": "Ana"}, "button_variables": BUTTON},
        {
            "phone": "+5491187654322",
            "variables": {"name": "Ana", "code": "1", "nick": "A"},
            "button_variables": BUTTON,
        },
        recipient(LISTED),  # 5
        recipient(US),  # 6
        recipient(COOLING),  # 7
        "+5491100000000",  # 8: not an object
        recipient("+5491187654323", colour="red"),  # 9: unknown field
        {"phone": "+5491187654324", "variables": {"name": "Ana", "code": "1"}},  # 10: no button
        {"phone": "+5491187654325", "variables": {"code": "1", "name": "A", "x": "y"}},  # 11
    ]

    response = dry_run(tenant, body(tenant, recipients))

    assert response.status_code == 200, response.json()
    answer = response.json()
    verdicts = {verdict["index"]: verdict for verdict in answer["verdicts"]}
    assert sorted(verdicts) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]
    assert verdicts[1]["reasons"] == ["invalid_phone"]
    assert list(verdicts[1]["errors"]) == ["phone"]
    assert verdicts[2]["reasons"] == ["duplicate_of"]
    assert verdicts[2]["duplicate_of"] == 0
    assert verdicts[3]["reasons"] == ["missing_variables"]
    assert verdicts[3]["missing_variables"] == ["code"]
    assert verdicts[4]["reasons"] == ["extra_variables"]
    assert verdicts[4]["extra_variables"] == ["nick"]
    assert verdicts[5]["reasons"] == ["opted_out"]
    assert verdicts[6]["reasons"] == ["us_marketing_block"]
    assert verdicts[7]["reasons"] == ["cooling_down"]
    assert (verdicts[8]["reasons"], verdicts[8]["phone"]) == (["invalid_recipient"], None)
    assert verdicts[9]["reasons"] == ["invalid_recipient"]
    assert verdicts[10]["reasons"] == ["invalid_variables"]
    assert list(verdicts[10]["errors"]) == ["button_variables"]
    assert verdicts[11]["reasons"] == ["extra_variables", "invalid_variables"]
    assert verdicts[6]["phone"] == US
    # Sent, as send-bulk would once the refused ones are out: 0, 5, 6 and 7 (held ones included).
    assert (answer["total_recipients"], answer["unique_recipients"]) == (12, 4)
    assert answer["sendable_recipients"] == 1
    assert answer["quota_info"]["quota_needed"] == 4
    assert nothing_created()


def test_a_duplicate_of_a_recipient_with_verdicts_is_still_a_duplicate(tenant: Tenant) -> None:
    recipients = [{"phone": "+5491112345678", "variables": {}}, recipient("+5491112345678")]

    verdicts = dry_run(tenant, body(tenant, recipients)).json()["verdicts"]

    assert [(v["index"], v["reasons"]) for v in verdicts] == [
        (0, ["missing_variables", "invalid_variables"]),
        (1, ["duplicate_of"]),
    ]


def test_recipients_known_by_user_id_are_counted_and_deduplicated_by_it(tenant: Tenant) -> None:
    by_id = {"user_id": "AR.1502576394655843", "variables": {"name": "Ana", "code": "A1"}}
    recipients = [
        {**by_id, "button_variables": BUTTON},
        recipient("+5491112345678"),
        {**by_id, "button_variables": BUTTON},
        {"user_id": "AR.1502576394655899", "variables": {"name": "Bo", "code": "B"}},
    ]

    answer = dry_run(tenant, body(tenant, recipients)).json()

    assert [(v["index"], v["reasons"]) for v in answer["verdicts"]] == [
        (2, ["duplicate_of"]),
        (3, ["invalid_variables"]),
    ]
    assert answer["verdicts"][0]["duplicate_of"] == 0
    assert (answer["total_recipients"], answer["unique_recipients"]) == (4, 2)
    assert nothing_created()


def test_a_utility_template_holds_nobody(tenant: Tenant) -> None:
    tenant.template.category = TemplateCategory.UTILITY
    tenant.template.save()
    suppression_add(organization=tenant.organization, phone=LISTED, source="api")

    answer = dry_run(tenant, body(tenant, [recipient(LISTED), recipient(US)])).json()

    assert answer["verdicts"] == []


@pytest.mark.parametrize(
    ("payload", "status", "expected"),
    [
        ({"recipients": []}, 400, {"error": "recipients es requerido y no puede estar vacio"}),
        ({"template_name": ""}, 400, "template_name"),
        ({"recipients": "x"}, 400, "recipients"),
        ({"phone_number_id": "999"}, 404, "error"),
        ({"template_name": "nope"}, 404, "error"),
    ],
)
def test_the_sends_own_fields_are_refused_as_send_bulk_refuses_them(
    tenant: Tenant, payload: dict[str, Any], status: int, expected: Any
) -> None:
    response = dry_run(tenant, {**body(tenant, [recipient("+5491112345678")]), **payload})

    assert response.status_code == status
    if isinstance(expected, dict):
        assert response.json() == expected
    else:
        assert expected in response.json()
    assert nothing_created()


def test_too_many_recipients_is_still_a_400(tenant: Tenant, settings: Any) -> None:
    settings.BULK_SEND_MAX_RECIPIENTS = 2
    recipients = [recipient(f"+54911123456{n:02d}") for n in range(3)]

    response = dry_run(tenant, body(tenant, recipients))

    assert response.status_code == 400
    assert list(response.json()) == ["recipients"]


def test_an_idempotency_key_is_not_kept_and_a_send_can_use_it_after(tenant: Tenant) -> None:
    payload = body(tenant, [recipient("+5491112345678")])

    first = dry_run(tenant, payload, HTTP_IDEMPOTENCY_KEY="campaign-7")
    assert first.status_code == 200
    assert nothing_created()

    accepted = tenant.client.post(URL, payload, format="json", HTTP_IDEMPOTENCY_KEY="campaign-7")
    assert accepted.status_code == 202


def test_another_organizations_number_is_not_found(tenant: Tenant, other_tenant: Tenant) -> None:
    payload = body(tenant, [recipient("+5491112345678")])

    response = dry_run(other_tenant, payload)

    assert response.status_code == 404
    assert nothing_created()


def test_another_organizations_suppressions_do_not_count(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    suppression_add(organization=other_tenant.organization, phone=LISTED, source="api")

    answer = dry_run(tenant, body(tenant, [recipient(LISTED)])).json()

    assert answer["verdicts"] == []


@pytest.mark.parametrize("value", ["yes", "2"])
def test_a_dry_run_that_is_no_boolean_is_named(tenant: Tenant, value: str) -> None:
    response = tenant.client.post(
        f"{URL}?dry_run={value}", body(tenant, [recipient("+5491112345678")]), format="json"
    )

    assert response.status_code == 400
    assert response.json() == {"dry_run": ["Must be a valid boolean."]}
    assert nothing_created()


def test_dry_run_false_sends(tenant: Tenant) -> None:
    response = tenant.client.post(
        f"{URL}?dry_run=false", body(tenant, [recipient("+5491112345678")]), format="json"
    )

    assert response.status_code == 202


def test_a_csv_body_names_lines(tenant: Tenant) -> None:
    csv = (
        "phone,name,code,button_0\n"
        "+5491112345678,Juan,A1,x\n"
        "12345,Ana,B2,y\n"
        "+5491112345678,Juan,A1,x\n"
        "+5491187654321,Ana\n"
    )
    query = (
        f"?dry_run=true&phone_number_id={tenant.number.phone_number_id}"
        f"&template_name={tenant.template.name}&language={tenant.template.language}"
    )

    response = tenant.client.post(f"{URL}{query}", csv, content_type="text/csv")

    assert response.status_code == 200, response.json()
    verdicts = response.json()["verdicts"]
    assert [(v.get("index"), v["line"], v["reasons"]) for v in verdicts] == [
        (1, 3, ["invalid_phone"]),
        (2, 4, ["duplicate_of"]),
        (None, 5, ["invalid_recipient"]),
    ]
    assert verdicts[1]["duplicate_of_line"] == 2
    assert nothing_created()
