from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from rest_framework.test import APIClient

from mindo.models import ApiKey, Membership, Organization
from templates_app.models import MessageTemplate, PhoneNumber, WhatsAppBusinessAccount
from tests.conftest import Tenant

BULK_SENDS_URL = "/api/v1/meta-templates/bulk-sends/"
SEND_BULK_URL = "/api/v1/meta-templates/send-bulk/"
DEMO_TEMPLATES = {
    "welcome_message": ["name", "code"],
    "order_confirmation": ["name", "order_id"],
    "verification_code": ["name", "code"],
    "order_update": ["order_id", "status"],
    "event_reminder": ["name", "event_name", "event_date"],
    "product_launch": ["header_image", "name", "product", "launch_date", "price"],
}
COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Hola {{name}}"},
    {"type": "BODY", "text": "Tu turno es el {{day}} a las {{hour}}."},
    {
        "type": "BUTTONS",
        "buttons": [
            {"type": "URL", "text": "Ver", "url": "https://x.example/t/{{1}}"},
            {"type": "QUICK_REPLY", "text": "Cancelar"},
        ],
    },
]


def run(*args: str) -> tuple[str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(*args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def demo(*args: str) -> dict[str, Any]:
    stdout, _ = run("demo", "--json", *args)
    payload: dict[str, Any] = json.loads(stdout)
    return payload


def api_client(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


# demo


def test_demo_prints_only_the_key_the_number_and_the_templates(db: None) -> None:
    stdout, _ = run("demo", "--json")
    payload = json.loads(stdout)
    assert set(payload) == {"api_key", "phone_number_id", "templates"}
    assert payload["phone_number_id"] == "813497231850626"
    assert [t["name"] for t in payload["templates"]] == list(DEMO_TEMPLATES)
    for template in payload["templates"]:
        assert set(template) == {"id", "name", "language"}
        assert isinstance(template["id"], int)
        assert template["language"] == "es"


def test_demo_provisions_the_number_of_the_contracts_examples(db: None) -> None:
    demo()
    number = PhoneNumber.objects.select_related("business_account__organization").get(
        phone_number_id="813497231850626"
    )
    assert number.display_phone_number == "+54 9 223 675-0780"
    assert number.verified_name == "Mindo Software"
    assert number.quality_rating == "GREEN"
    assert number.messaging_limit_tier == "TIER_100K"
    assert number.business_account.messaging_limit_tier == "TIER_100K"
    assert number.business_account.organization.name == "Mindo Demo"
    user = User.objects.get(membership__organization__name="Mindo Demo")
    assert (user.email, user.first_name, user.last_name) == ("demo@example.com", "Demo", "User")


def test_demo_templates_take_the_variables_of_the_examples(db: None) -> None:
    payload = demo()
    templates = MessageTemplate.objects.in_bulk([t["id"] for t in payload["templates"]])
    for template in templates.values():
        assert template.variables == DEMO_TEMPLATES[template.name]
        assert template.parameter_format == "NAMED"
        assert template.status == "APPROVED"
    welcome = next(t for t in templates.values() if t.name == "welcome_message")
    assert welcome.buttons == [
        {"index": 0, "type": "URL", "takes_variable": True, "requires_variable": True}
    ]


def test_demo_run_twice_keeps_the_same_rows(db: None) -> None:
    first = demo()
    second = demo()
    assert second["phone_number_id"] == first["phone_number_id"]
    assert second["templates"] == first["templates"]
    assert second["api_key"] != first["api_key"]
    assert Organization.objects.count() == 1
    assert User.objects.count() == 1
    assert Membership.objects.count() == 1
    assert WhatsAppBusinessAccount.objects.count() == 1
    assert PhoneNumber.objects.count() == 1
    assert MessageTemplate.objects.count() == len(DEMO_TEMPLATES)
    # Each run makes a key; the earlier ones keep working.
    assert ApiKey.objects.filter(name="demo", revoked_at=None).count() == 2
    assert api_client(first["api_key"]).get(BULK_SENDS_URL).status_code == 200


def test_the_demo_key_sends_the_contracts_example(db: None) -> None:
    payload = demo()
    client = api_client(payload["api_key"])
    response = client.post(
        SEND_BULK_URL,
        {
            "phone_number_id": payload["phone_number_id"],
            "template_name": "welcome_message",
            "language": "es",
            "recipients": [
                {
                    "phone": "+5491112345678",
                    "variables": {"name": "Juan Perez", "code": "ABC123"},
                    "button_variables": {"button_0": "ABC-123"},
                }
            ],
        },
        format="json",
    )
    assert response.status_code == 202, response.json()
    assert client.get(BULK_SENDS_URL).json()["count"] == 1


def test_demo_for_another_organization_gets_its_own_account_and_number(db: None) -> None:
    default = demo()
    other = demo("--org", "Acme")
    again = demo("--org", "Acme")
    assert other["phone_number_id"] != default["phone_number_id"]
    assert len(other["phone_number_id"]) == 15
    assert other["phone_number_id"].isdigit()
    assert again["phone_number_id"] == other["phone_number_id"]
    assert again["templates"] == other["templates"]
    acme = PhoneNumber.objects.select_related("business_account__organization").get(
        phone_number_id=other["phone_number_id"]
    )
    assert acme.business_account.organization.name == "Acme"
    assert WhatsAppBusinessAccount.objects.count() == 2
    assert User.objects.filter(membership__organization=acme.business_account.organization).get()
    # Each organization sees only its own number.
    response = api_client(other["api_key"]).post(
        SEND_BULK_URL,
        {
            "phone_number_id": default["phone_number_id"],
            "template_name": "order_update",
            "recipients": [
                {"phone": "+5491112345678", "variables": {"order_id": "1", "status": "ok"}}
            ],
        },
        format="json",
    )
    assert response.status_code == 404


def test_demo_without_json_prints_a_summary(db: None) -> None:
    stdout, _ = run("demo")
    assert "Mindo Demo" in stdout
    assert "813497231850626" in stdout
    assert "welcome_message" in stdout
    assert ApiKey.objects.get().matches(stdout.split("API key:")[1].split()[0])


def test_demo_refuses_a_number_that_belongs_to_someone_else(tenant: Tenant) -> None:
    # The tenant fixture's organization already owns the contract's example number.
    with pytest.raises(CommandError, match="belongs to organization 'Mindo'"):
        run("demo", "--json")
    assert not Organization.objects.filter(name="Mindo Demo").exists()


# create_api_key


def test_create_api_key_prints_a_key_that_authenticates(tenant: Tenant) -> None:
    stdout, stderr = run("create_api_key", "--org", "Mindo", "--email", "ana@example.com")
    raw_key = stdout.strip()
    assert raw_key.startswith("mindo_")
    assert len(raw_key) == 30
    assert "will not be shown again" in stderr
    assert raw_key not in stderr
    assert api_client(raw_key).get(BULK_SENDS_URL).status_code == 200
    user = User.objects.get(username="ana@example.com")
    assert user.membership.organization == tenant.organization
    assert not user.has_usable_password()


def test_create_api_key_creates_the_organization_when_asked(db: None) -> None:
    stdout, _ = run(
        "create_api_key",
        "--org",
        "New Co",
        "--email",
        "x@example.com",
        "--name",
        "ci",
        "--create-org",
    )
    api_key = ApiKey.objects.select_related("organization").get()
    assert api_key.organization.name == "New Co"
    assert api_key.name == "ci"
    assert api_key.matches(stdout.strip())


def test_create_api_key_reuses_the_user_and_membership(tenant: Tenant) -> None:
    run("create_api_key", "--org", "Mindo", "--email", "ana@example.com")
    run("create_api_key", "--org", "Mindo", "--email", "ana@example.com")
    user = User.objects.get(username="ana@example.com")
    assert user.api_keys.count() == 2
    assert Membership.objects.filter(user=user).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "Nope", "--email", "a@example.com"], "does not exist; pass --create-org"),
        (["--org", "Mindo", "--email", "not-an-email"], "is not a valid email address"),
        (["--org", "Mindo", "--email", "a@example.com", "--name", " "], "--name may not be blank"),
    ],
)
def test_create_api_key_refuses_bad_input(tenant: Tenant, args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run("create_api_key", *args)
    assert ApiKey.objects.count() == 1


def test_create_api_key_refuses_a_user_of_another_organization(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    run("create_api_key", "--org", "Other", "--email", "ana@example.com")
    with pytest.raises(CommandError, match="is a member of 'Other', not 'Mindo'"):
        run("create_api_key", "--org", "Mindo", "--email", "ana@example.com")
    assert not tenant.organization.api_keys.filter(user__username="ana@example.com").exists()


# register_business_account


def test_register_business_account_registers_an_account_and_its_number(tenant: Tenant) -> None:
    stdout, _ = run(
        "register_business_account",
        *("--org", "Mindo", "--waba-id", "555", "--access-token", "tok", "--name", "Main"),
        *("--tier", "TIER_10K", "--phone-number-id", "111222333444555"),
        *("--display-phone-number", "+54 11 1234-5678", "--verified-name", "Mindo"),
        *("--quality-rating", "YELLOW", "--number-tier", "TIER_10K", "--throughput", "200"),
    )
    account = WhatsAppBusinessAccount.objects.get(waba_id="555")
    assert (account.organization, account.name, account.access_token) == (
        tenant.organization,
        "Main",
        "tok",
    )
    assert account.messaging_limit_tier == "TIER_10K"
    number = PhoneNumber.objects.get(phone_number_id="111222333444555")
    assert number.business_account == account
    assert (number.quality_rating, number.messaging_limit_tier) == ("YELLOW", "TIER_10K")
    assert number.throughput_per_second == 200
    assert "Registered business account 555" in stdout
    assert "Registered phone number 111222333444555" in stdout


def test_register_business_account_again_updates_in_place(tenant: Tenant) -> None:
    base = ("register_business_account", "--org", "Mindo", "--waba-id", "555")
    run(*base, "--access-token", "old")
    run(*base, "--access-token", "new", "--tier", "TIER_UNLIMITED")
    account = WhatsAppBusinessAccount.objects.get(waba_id="555")
    assert (account.access_token, account.messaging_limit_tier) == ("new", "TIER_UNLIMITED")
    assert WhatsAppBusinessAccount.objects.filter(organization=tenant.organization).count() == 2


def test_register_business_account_refuses_another_organizations_account(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    with pytest.raises(CommandError, match="belongs to organization 'Other'"):
        run(
            "register_business_account",
            *("--org", "Mindo", "--waba-id", other_tenant.account.waba_id),
            *("--access-token", "stolen"),
        )
    other_tenant.account.refresh_from_db()
    assert other_tenant.account.organization == other_tenant.organization
    assert other_tenant.account.access_token == "test-token"


def test_register_business_account_refuses_another_organizations_number(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    with pytest.raises(CommandError, match="belongs to organization 'Other'"):
        run(
            "register_business_account",
            *("--org", "Mindo", "--waba-id", "777", "--access-token", "tok"),
            *("--phone-number-id", other_tenant.number.phone_number_id),
            *("--display-phone-number", "+1", "--verified-name", "X"),
        )
    # Nothing of the refused call stays behind, not even the account.
    assert not WhatsAppBusinessAccount.objects.filter(waba_id="777").exists()
    other_tenant.number.refresh_from_db()
    assert other_tenant.number.business_account == other_tenant.account


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--org", "Nope"], "Organization 'Nope' does not exist"),
        (["--org", "Mindo", "--tier", "TIER_1M"], "Unknown messaging limit tier 'TIER_1M'"),
        (["--org", "Mindo", "--verified-name", "X"], "--verified-name describes a number"),
        (["--org", "Mindo", "--phone-number-id", "9"], "needs --display-phone-number"),
        (
            [
                *("--org", "Mindo", "--phone-number-id", "9"),
                *("--display-phone-number", "+1", "--verified-name", "X", "--throughput", "0"),
            ],
            "Throughput must be between 1 and 1000",
        ),
    ],
)
def test_register_business_account_refuses_bad_input(
    tenant: Tenant, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run("register_business_account", "--waba-id", "999", "--access-token", "t", *args)
    assert not WhatsAppBusinessAccount.objects.filter(waba_id="999").exists()


# register_template


def test_register_template_derives_variables_and_buttons(tenant: Tenant) -> None:
    stdout, _ = run(
        "register_template",
        *("--waba-id", tenant.account.waba_id, "--name", "appointment", "--language", "es"),
        *("--category", "UTILITY", "--status", "APPROVED"),
        *("--components", json.dumps(COMPONENTS)),
    )
    template = MessageTemplate.objects.get(business_account=tenant.account, name="appointment")
    assert template.variables == ["name", "day", "hour"]
    assert template.parameter_format == "NAMED"
    assert template.category == "UTILITY"
    assert [(b["type"], b["takes_variable"]) for b in template.buttons] == [
        ("URL", True),
        ("QUICK_REPLY", True),
    ]
    assert f"id {template.pk}" in stdout
    assert "name (TEXT), day (TEXT), hour (TEXT)" in stdout


def test_register_template_reads_components_from_a_file_and_updates_in_place(
    tenant: Tenant, tmp_path: Path
) -> None:
    path = tmp_path / "components.json"
    path.write_text(json.dumps([{"type": "BODY", "text": "Pedido {{1}} listo"}]))
    args = ("register_template", "--waba-id", tenant.account.waba_id, "--name", "welcome_message")
    run(*args, "--components", f"@{path}", "--status", "PAUSED")
    template = MessageTemplate.objects.get(pk=tenant.template.pk)
    assert template.variables == ["1"]
    assert template.parameter_format == "POSITIONAL"
    assert template.buttons == []
    assert template.status == "PAUSED"
    assert MessageTemplate.objects.filter(business_account=tenant.account).count() == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--waba-id", "0", "--components", "[]"], "No business account with WABA id '0'"),
        (["--components", "[{"], "--components is not valid JSON"),
        (["--components", '{"type": "BODY"}'], "Components must be a JSON list"),
        (["--components", '[{"text": "no type"}]'], "Components must be a JSON list"),
        (["--components", "@/nonexistent/components.json"], "Cannot read the components file"),
        (["--components", "[]", "--name", " "], "needs a name and a language"),
    ],
)
def test_register_template_refuses_bad_input(tenant: Tenant, args: list[str], message: str) -> None:
    defaults = ["--waba-id", tenant.account.waba_id, "--name", "new_one"]
    with pytest.raises(CommandError, match=message):
        run("register_template", *defaults, *args)
    assert MessageTemplate.objects.count() == 1
