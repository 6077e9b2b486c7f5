"""Syncing templates and numbers from a fake Graph API served in-process over real HTTP."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from io import StringIO
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import Client, override_settings
from django.urls import reverse

from meta.graph import graph_list_templates
from meta.graph_errors import ErrorClass, GraphRequestError
from mindo.meta_client import graph_config
from templates_app.models import MessageTemplate, PhoneNumber
from templates_app.sync import sync_numbers, sync_templates
from tests import factories
from tests.conftest import Tenant


class FakeGraph(http.server.ThreadingHTTPServer):
    """GET /v21.0/{waba_id}/{edge}[?after=cursor] -> the page stored for (edge, cursor)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), FakeGraphHandler)
        self.pages: dict[tuple[str, str | None], tuple[int, dict[str, Any]]] = {}
        self.requests: list[tuple[str, dict[str, list[str]], str | None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class FakeGraphHandler(http.server.BaseHTTPRequestHandler):
    server: FakeGraph

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        self.server.requests.append((parts.path, query, self.headers.get("Authorization")))
        edge = parts.path.rsplit("/", 1)[-1]
        status, page = self.server.pages.get(
            (edge, query.get("after", [None])[0]), (404, {"error": {"code": 803}})
        )
        body = orjson.dumps(page)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the test output quiet


@pytest.fixture
def graph() -> Iterator[FakeGraph]:
    server = FakeGraph()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    with override_settings(META_GRAPH_URL=server.url, META_GRAPH_VERSION="v21.0"):
        yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


ORDER_COMPONENTS = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{order}}"},
    {"type": "BODY", "text": "Hola {{name}}, tu pedido {{order}} esta en camino."},
    {"type": "BUTTONS", "buttons": [{"type": "URL", "text": "Ver", "url": "https://x.io/{{1}}"}]},
]


def meta_template(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": f"{abs(hash(name)) % 10**15}",
        "name": name,
        "language": "es",
        "status": "APPROVED",
        "category": "UTILITY",
        "parameter_format": "NAMED",
        "components": ORDER_COMPONENTS,
        **fields,
    }


def serve_templates(graph: FakeGraph, waba_id: str, *pages: list[dict[str, Any]]) -> None:
    """Pages as Meta serves them: every page has cursors, all but the last a `next` link. The
    first link is to the fake itself; later ones name real Meta's host, which must never get
    the token: the client asks the fake for the `after` cursor instead."""
    for number, data in enumerate(pages):
        cursor = None if number == 0 else f"c{number}"
        after = f"c{number + 1}"
        paging: dict[str, Any] = {"cursors": {"before": f"b{number}", "after": after}}
        if number < len(pages) - 1:
            host = graph.url if number == 0 else "https://graph.facebook.com"
            paging["next"] = f"{host}/v21.0/{waba_id}/message_templates?limit=100&after={after}"
        graph.pages[("message_templates", cursor)] = (200, {"data": data, "paging": paging})


def test_sync_templates_creates_and_follows_every_page(tenant: Tenant, graph: FakeGraph) -> None:
    serve_templates(
        graph,
        tenant.account.waba_id,
        [meta_template("order_update")],
        [meta_template("promo", category="MARKETING")],
        [meta_template("hello_world", components=[{"type": "BODY", "text": "Hi"}], language="en")],
    )

    result = sync_templates(tenant.account)

    assert (result.created, result.updated, result.unchanged) == (3, 0, 0)
    order = MessageTemplate.objects.get(business_account=tenant.account, name="order_update")
    assert order.variables == ["order", "name"]
    assert order.buttons == [
        {"index": 0, "type": "URL", "takes_variable": True, "requires_variable": True}
    ]
    assert (order.status, order.category, order.parameter_format) == (
        "APPROVED",
        "UTILITY",
        "NAMED",
    )
    assert order.meta_template_id
    # Three pages, three requests: the last page (no `next`) ends the listing.
    assert [request[2] for request in graph.requests] == ["Bearer test-token"] * 3
    assert [request[1].get("after") for request in graph.requests] == [None, ["c1"], ["c2"]]


def test_sync_templates_updates_what_changed_and_counts_the_rest(
    tenant: Tenant, graph: FakeGraph
) -> None:
    serve_templates(graph, tenant.account.waba_id, [meta_template("order_update")])
    sync_templates(tenant.account)
    welcome = {
        "name": "welcome_message",
        "language": "es",
        "status": "PAUSED",
        "category": "MARKETING",
        "components": factories.WELCOME_COMPONENTS,
    }
    serve_templates(graph, tenant.account.waba_id, [meta_template("order_update"), welcome])

    result = sync_templates(tenant.account)

    assert (result.created, result.updated, result.unchanged) == (0, 1, 1)
    tenant.template.refresh_from_db()
    assert tenant.template.status == "PAUSED"


def test_sync_numbers_creates_and_updates_numbers(tenant: Tenant, graph: FakeGraph) -> None:
    listed = [
        {
            "id": tenant.number.phone_number_id,
            "display_phone_number": "+54 9 223 675-0780",
            "verified_name": "Mindo Software",
            "quality_rating": "YELLOW",
            "messaging_limit_tier": "TIER_10K",
            "throughput": {"level": "HIGH"},
        },
        {
            "id": "109876543210987",
            "display_phone_number": "15550783881",
            "verified_name": "Mindo Test",
            "quality_rating": "GREEN",
            "messaging_limit_tier": "TIER_NOT_SET",
            "throughput": {"level": "STANDARD"},
        },
    ]
    graph.pages[("phone_numbers", None)] = (200, {"data": listed})

    first = sync_numbers(tenant.account)
    second = sync_numbers(tenant.account)

    assert (first.created, first.updated, first.unchanged) == (1, 1, 0)
    assert (second.created, second.updated, second.unchanged) == (0, 0, 2)
    tenant.number.refresh_from_db()
    assert tenant.number.quality_rating == "YELLOW"
    assert tenant.number.messaging_limit_tier == "TIER_10K"
    assert tenant.number.throughput_per_second == 1000  # HIGH lifted the standard 80
    new = PhoneNumber.objects.get(phone_number_id="109876543210987")
    assert (new.business_account, new.throughput_per_second) == (tenant.account, 80)
    assert new.messaging_limit_tier == "TIER_1000"  # TIER_NOT_SET keeps the default


def test_sync_numbers_keeps_an_operator_lowered_throughput(
    tenant: Tenant, graph: FakeGraph
) -> None:
    tenant.number.throughput_per_second = 20
    tenant.number.save()
    listed = [
        {
            "id": tenant.number.phone_number_id,
            "display_phone_number": tenant.number.display_phone_number,
            "throughput": {"level": "HIGH"},
        }
    ]
    graph.pages[("phone_numbers", None)] = (200, {"data": listed})

    sync_numbers(tenant.account)

    tenant.number.refresh_from_db()
    assert tenant.number.throughput_per_second == 20


def test_a_number_of_another_organization_is_skipped(
    tenant: Tenant, other_tenant: Tenant, graph: FakeGraph
) -> None:
    listed = [{"id": other_tenant.number.phone_number_id, "display_phone_number": "+1 555"}]
    graph.pages[("phone_numbers", None)] = (200, {"data": listed})

    result = sync_numbers(tenant.account)

    assert result.created == result.updated == 0
    assert len(result.skipped) == 1
    other_tenant.number.refresh_from_db()
    assert other_tenant.number.business_account == other_tenant.account


def test_the_commands_print_a_summary(tenant: Tenant, graph: FakeGraph) -> None:
    serve_templates(graph, tenant.account.waba_id, [meta_template("order_update")])
    graph.pages[("phone_numbers", None)] = (200, {"data": []})
    out = StringIO()

    call_command("sync_templates", "--waba-id", tenant.account.waba_id, stdout=out)
    call_command("sync_numbers", "--all", stdout=out)

    assert f"WABA {tenant.account.waba_id} templates: 1 created, 0 updated, 0 unchanged." in (
        out.getvalue()
    )
    assert f"WABA {tenant.account.waba_id} phone numbers: 0 created" in out.getvalue()


def test_an_expired_token_is_a_command_error(tenant: Tenant, graph: FakeGraph) -> None:
    expired = {
        "error": {
            "message": "Error validating access token: Session has expired.",
            "type": "OAuthException",
            "code": 190,
            "error_subcode": 463,
            "fbtrace_id": "AbC",
        }
    }
    graph.pages[("message_templates", None)] = (401, expired)

    with pytest.raises(CommandError, match="190"):
        call_command("sync_templates", "--waba-id", tenant.account.waba_id, stdout=StringIO())
    with pytest.raises(GraphRequestError) as raised:
        graph_list_templates(tenant.account, graph_config())
    assert raised.value.error.error_class == ErrorClass.HALT


def test_an_unknown_account_is_a_command_error(db: None) -> None:
    with pytest.raises(CommandError, match="No business account"):
        call_command("sync_numbers", "--waba-id", "404", stdout=StringIO())


def test_the_admin_actions_sync_templates_and_numbers(tenant: Tenant, graph: FakeGraph) -> None:
    serve_templates(graph, tenant.account.waba_id, [meta_template("order_update")])
    graph.pages[("phone_numbers", None)] = (200, {"data": []})
    admin_client = Client()
    admin_client.force_login(User.objects.create_superuser("operator", "operator@example.com", "x"))
    url = reverse("admin:templates_app_whatsappbusinessaccount_changelist")

    for action in ("sync_templates_from_meta", "sync_numbers_from_meta"):
        response = admin_client.post(
            url, {"action": action, "_selected_action": [tenant.account.pk]}, follow=True
        )
        assert response.status_code == 200

    assert MessageTemplate.objects.filter(
        business_account=tenant.account, name="order_update"
    ).exists()


def test_an_admin_sync_with_an_expired_token_says_why(tenant: Tenant, graph: FakeGraph) -> None:
    graph.pages[("message_templates", None)] = (
        401,
        {"error": {"message": "Session has expired.", "type": "OAuthException", "code": 190}},
    )
    admin_client = Client()
    admin_client.force_login(User.objects.create_superuser("operator", "operator@example.com", "x"))
    url = reverse("admin:templates_app_whatsappbusinessaccount_changelist")

    response = admin_client.post(
        url,
        {"action": "sync_templates_from_meta", "_selected_action": [tenant.account.pk]},
        follow=True,
    )

    shown = [str(message) for message in response.context["messages"]]
    assert any("not synced" in text and "Session has expired" in text for text in shown)
