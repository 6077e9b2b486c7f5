"""Filling the sandbox's catalog as Meta's is filled, keeping it across restarts, and `demo`
registering its number and templates so that a send made right after goes through."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import requests
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from rest_framework.test import APIClient

from bulksend.models import BulkSendStatus
from meta.graph_version import GRAPH_VERSION
from meta_sandbox import SandboxConfig, SandboxThread
from templates_app.meta_publish import meta_template_create
from templates_app.models import MessageTemplate
from tests import factories
from tests.delivery_support import (
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
)
from tests.test_sandbox import error_of, send, welcome

WABA = "102290129340398"
TOKEN = "registration-token"
NUMBER = "813497231850626"
TIMEOUT = 10.0
WELCOME: dict[str, Any] = {
    "name": "welcome_message",
    "language": "es",
    "category": "MARKETING",
    "parameter_format": "NAMED",
    "components": factories.WELCOME_COMPONENTS,
}


def graph(
    sandbox: SandboxThread, path: str, body: dict[str, Any], token: str = TOKEN
) -> requests.Response:
    return requests.post(
        f"{sandbox.url}/{GRAPH_VERSION}/{path}",
        data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=TIMEOUT,
    )


def account_with_number(sandbox: SandboxThread, waba: str = WABA, token: str = TOKEN) -> None:
    sandbox.control("accounts", {"waba_id": waba, "access_token": token})
    number = {"id": NUMBER if waba == WABA else None, "cc": "54", "phone_number": "2236750780"}
    number["verified_name"] = "Mindo Software"
    assert graph(sandbox, f"{waba}/phone_numbers", number, token).status_code == 200


@pytest.fixture
def sandbox(tmp_path: Path) -> Any:
    with SandboxThread(SandboxConfig(state_file=str(tmp_path / "catalog.json"))) as running:
        account_with_number(running)
        yield running


# --- templates ---------------------------------------------------------------------------------


def test_a_created_template_is_approved_and_sendable_at_once(sandbox: SandboxThread) -> None:
    created = graph(sandbox, f"{WABA}/message_templates", WELCOME)

    assert created.status_code == 200, created.text
    answer = created.json()
    assert answer == {"id": answer["id"], "status": "APPROVED", "category": "MARKETING"}
    assert send(sandbox, welcome(), number=NUMBER, token=TOKEN).status_code == 200
    listed = requests.get(
        f"{sandbox.url}/{GRAPH_VERSION}/{WABA}/message_templates",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=TIMEOUT,
    ).json()["data"]
    assert [(t["id"], t["name"], t["parameter_format"]) for t in listed] == [
        (answer["id"], "welcome_message", "NAMED")
    ]


def test_a_name_and_language_the_account_has_is_refused_and_an_edit_changes_it(
    sandbox: SandboxThread,
) -> None:
    template_id = graph(sandbox, f"{WABA}/message_templates", WELCOME).json()["id"]

    again = graph(sandbox, f"{WABA}/message_templates", WELCOME)
    edited = graph(
        sandbox,
        template_id,
        {"components": [{"type": "BODY", "text": "Hola {{name}}."}], "category": "UTILITY"},
    )

    assert again.status_code == 400
    assert error_of(again)["code"] == 100
    assert error_of(again)["error_subcode"] == 2388024
    assert edited.json() == {"success": True}
    # The body takes one parameter now, and the URL button is gone.
    body = welcome()
    body["template"]["components"].pop()
    assert error_of(send(sandbox, body, number=NUMBER, token=TOKEN))["code"] == 132000
    body["template"]["components"][0]["parameters"].pop()
    assert send(sandbox, body, number=NUMBER, token=TOKEN).status_code == 200


@pytest.mark.parametrize(
    ("changes", "why"),
    [
        ({"name": "Welcome Message"}, "name"),
        ({"category": "PROMOTIONAL"}, "category"),
        ({"language": "spanish"}, "language"),
        ({"parameter_format": "POSITIONAL"}, "positional variable"),
        ({"components": [{"type": "HEADER", "format": "TEXT", "text": "Hi"}]}, "BODY"),
        (
            {"parameter_format": "POSITIONAL", "components": [{"type": "BODY", "text": "{{2}}"}]},
            "without gaps",
        ),
        ({"components": [{"type": "BODY", "text": "Hi {{Name}}"}]}, "named variable"),
        (
            {"components": [{"type": "BODY", "text": "Hi"}, {"type": "FOOTER", "text": "{{a}}"}]},
            "footer",
        ),
        (
            {
                "components": [
                    {"type": "BODY", "text": "Hi"},
                    {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x/{{1}}/y"}]},
                ]
            },
            "at its end",
        ),
        (
            {"components": [{"type": "BODY", "text": "Hi"}, {"type": "HEADER", "format": "GIF"}]},
            "format",
        ),
    ],
    ids=[
        "uppercase-name",
        "category",
        "language",
        "named-in-positional",
        "no-body",
        "gap",
        "uppercase-variable",
        "footer-variable",
        "url-variable-inside",
        "header-format",
    ],
)
def test_a_template_against_metas_rules_is_refused(
    sandbox: SandboxThread, changes: dict[str, Any], why: str
) -> None:
    response = graph(sandbox, f"{WABA}/message_templates", {**WELCOME, **changes})

    assert response.status_code == 400
    error = error_of(response)
    assert (error["code"], error["error_subcode"]) == (100, 2388040)
    assert why in error["error_data"]["details"]
    assert sandbox.control("stats")["catalog"]["templates"] == 0


def test_only_the_accounts_token_creates_its_templates(sandbox: SandboxThread) -> None:
    sandbox.control("accounts", {"waba_id": "200000000000001", "access_token": "other-token"})

    response = graph(sandbox, f"{WABA}/message_templates", WELCOME, token="other-token")

    assert response.status_code == 401
    assert error_of(response)["code"] == 190


# --- numbers and accounts ----------------------------------------------------------------------


def test_a_number_is_listed_and_a_number_of_another_account_is_refused(
    sandbox: SandboxThread,
) -> None:
    other = "200000000000001"
    sandbox.control("accounts", {"waba_id": other, "access_token": "other-token"})

    taken = graph(sandbox, f"{other}/phone_numbers", {"id": NUMBER}, token="other-token")
    chosen_by_meta = graph(
        sandbox,
        f"{other}/phone_numbers",
        {"cc": "1", "phone_number": "2025550123", "verified_name": "Other"},
        token="other-token",
    )

    assert error_of(taken)["code"] == 100
    assert chosen_by_meta.json()["id"].isdigit()
    listed = requests.get(
        f"{sandbox.url}/{GRAPH_VERSION}/{WABA}/phone_numbers",
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=TIMEOUT,
    ).json()["data"]
    assert [(n["id"], n["display_phone_number"]) for n in listed] == [(NUMBER, "+54 2236750780")]


def test_a_new_token_replaces_the_accounts_old_one(sandbox: SandboxThread) -> None:
    graph(sandbox, f"{WABA}/message_templates", WELCOME)

    sandbox.control("accounts", {"waba_id": WABA, "access_token": "rotated-token"})

    assert error_of(send(sandbox, welcome(), number=NUMBER, token=TOKEN))["code"] == 190
    assert send(sandbox, welcome(), number=NUMBER, token="rotated-token").status_code == 200


# --- keeping the catalog -----------------------------------------------------------------------


def test_a_restarted_sandbox_knows_what_was_registered(tmp_path: Path) -> None:
    state = tmp_path / "catalog.json"
    with SandboxThread(SandboxConfig(state_file=str(state))) as first:
        account_with_number(first)
        template_id = graph(first, f"{WABA}/message_templates", WELCOME).json()["id"]

    with SandboxThread(SandboxConfig(state_file=str(state))) as second:
        accepted = send(second, welcome(), number=NUMBER, token=TOKEN)
        summary = second.control("stats")["catalog"]
        created = graph(second, f"{WABA}/message_templates", {**WELCOME, "name": "welcome_two"})

    assert accepted.status_code == 200, accepted.text
    assert summary == {"accounts": 1, "phone_numbers": 1, "templates": 1}
    assert created.json()["id"] != template_id
    [account] = json.loads(state.read_text())["accounts"]
    assert [t["name"] for t in account["templates"]] == ["welcome_message", "welcome_two"]
    assert [path.name for path in tmp_path.iterdir()] == ["catalog.json"]


def test_a_catalog_file_is_read_again_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "file.json"
    account = {
        "waba_id": WABA,
        "access_token": TOKEN,
        "phone_numbers": [{"phone_number_id": NUMBER}],
    }
    path.write_text(json.dumps({"accounts": [account]}))

    with SandboxThread(SandboxConfig(catalog_file=str(path), refresh_seconds=3600)) as sandbox:
        before = send(sandbox, welcome(), number=NUMBER, token=TOKEN)
        path.write_text(json.dumps({"accounts": [{**account, "templates": [WELCOME]}]}))
        refreshed = sandbox.control("refresh")
        after = send(sandbox, welcome(), number=NUMBER, token=TOKEN)
        path.write_text("not json")
        broken = sandbox.control("refresh")

    assert error_of(before)["code"] == 132001
    assert refreshed["refreshed"] is True
    assert after.status_code == 200
    assert broken == {"refreshed": False, "catalog": refreshed["catalog"]}


def test_the_sandbox_imports_nothing_of_the_service() -> None:
    script = (
        "import sys, pkgutil, importlib, meta_sandbox\n"
        "for module in pkgutil.iter_modules(meta_sandbox.__path__):\n"
        "    importlib.import_module('meta_sandbox.' + module.name)\n"
        "domain = {'django', 'rest_framework', 'celery', 'mindo', 'meta', 'messaging',\n"
        "          'templates_app', 'bulksend', 'webhooks'}\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in domain))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "[]"


# --- the service registering with it ------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_send_right_after_demo_goes_through(delivery_redis: redis.Redis) -> None:
    config = SandboxConfig(rate_per_number=0, webhook_url=None, seed=7)
    with SandboxThread(config) as sandbox, override_settings(META_GRAPH_URL=sandbox.url):
        call_command("demo", "--org", "Acme", "--json", stdout=StringIO(), stderr=StringIO())
        # Run twice: the second run finds its templates at Meta and brings them up to date.
        stderr = StringIO()
        call_command(
            "demo", "--org", "Acme", "--json", stdout=(stdout := StringIO()), stderr=stderr
        )
        demo = json.loads(stdout.getvalue())
        client = APIClient()
        client.credentials(HTTP_X_API_KEY=demo["api_key"])
        accepted = client.post(
            "/api/v1/meta-templates/send-bulk/",
            {
                "phone_number_id": demo["phone_number_id"],
                "template_name": "welcome_message",
                "language": "es",
                "recipients": [
                    {
                        "phone": f"+5491150000{n:03d}",
                        "variables": {"name": "Ana", "code": f"C-{n}"},
                        "button_variables": {"button_0": f"ref-{n}"},
                    }
                    for n in range(5)
                ],
            },
            format="json",
        )
        assert accepted.status_code == 202, accepted.content
        bulk_send = drain_to_completion(accepted.json()["bulk_send_id"])
        sent = received(sandbox).messages

    assert "registered WABA" in stderr.getvalue()
    assert bulk_send.status == BulkSendStatus.COMPLETED
    assert len(sent) == 5
    meta_ids = MessageTemplate.objects.filter(
        business_account__organization__name="Acme"
    ).values_list("meta_template_id", flat=True)
    assert len(set(meta_ids)) == 6
    assert "" not in meta_ids


@pytest.mark.django_db
def test_demo_against_the_real_graph_api_registers_nothing() -> None:
    stderr = StringIO()

    call_command("demo", "--org", "Acme", "--json", stdout=StringIO(), stderr=stderr)

    assert settings.META_GRAPH_URL.startswith("https://graph.facebook.com")
    assert stderr.getvalue() == ""


@pytest.mark.django_db
def test_demo_says_when_no_sandbox_answers() -> None:
    with override_settings(META_GRAPH_URL="http://127.0.0.1:9"):
        stderr = StringIO()
        call_command("demo", "--org", "Acme", "--json", stdout=StringIO(), stderr=stderr)

    assert "did not take the demo's catalog" in stderr.getvalue()


@pytest.mark.django_db
def test_a_template_meta_already_has_is_edited_and_keeps_metas_id(tmp_path: Path) -> None:
    organization = factories.make_organization()
    account = factories.make_account(organization, waba_id=WABA, access_token=TOKEN)
    template = factories.make_template(account)
    with SandboxThread(SandboxConfig(state_file=str(tmp_path / "c.json"))) as sandbox:
        sandbox.control("accounts", {"waba_id": WABA, "access_token": TOKEN})
        with override_settings(META_GRAPH_URL=sandbox.url):
            first = meta_template_create(template)
            template.components = [{"type": "BODY", "text": "Chau {{name}} {{code}}"}]
            second = meta_template_create(template)
        [listed] = sandbox.state.catalog.accounts[WABA].templates.values()

    template.refresh_from_db()
    assert first == second == template.meta_template_id
    assert listed.components == [{"type": "BODY", "text": "Chau {{name}} {{code}}"}]
