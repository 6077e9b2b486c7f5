"""Errors nobody handled answer JSON under /api/: 500, or 503 while the database is away."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.test import Client, override_settings
from rest_framework.test import APIClient

from bulksend.models import BulkSend
from tests.api_error_urls import FAILING_HEADER
from tests.conftest import Tenant
from tests.test_authentication import ENDPOINTS, SEND_BODY, UNAUTHENTICATED, call

SERVER_ERROR = {"error": "Error interno del servidor"}
UNAVAILABLE = {
    "error": "Servicio no disponible temporalmente. Intente nuevamente en unos segundos."
}
SEND_URL = "/api/v1/meta-templates/send-bulk/"


@pytest.fixture
def bulk_send(tenant: Tenant) -> BulkSend:
    return BulkSend.objects.create(
        organization=tenant.organization, phone_number=tenant.number, template=tenant.template
    )


@pytest.fixture
def client(tenant: Tenant) -> APIClient:
    """The tenant's client, answering what the server answers instead of raising its exception."""
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_X_API_KEY=tenant.raw_key)
    return client


def assert_json(response: Any, status: int, body: dict[str, str]) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json() == body


def fail_with(error: Exception) -> Any:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise error

    return fail


def test_a_bug_in_a_service_answers_500_json(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bulksend.views.bulk_send_create", fail_with(RuntimeError("a bug")))

    response = client.post(SEND_URL, SEND_BODY, format="json")

    assert_json(response, 500, SERVER_ERROR)


def test_a_bug_in_the_message_lookup_answers_500_json(
    client: APIClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("messaging.views.message_get_by_wamid", fail_with(KeyError("wamid")))

    response = client.get("/api/v1/meta-templates/messages/wamid.X/")

    assert_json(response, 500, SERVER_ERROR)


@pytest.mark.parametrize("error", [OperationalError("refused"), InterfaceError("closed")])
def test_an_unreachable_database_in_a_service_answers_503_json(
    client: APIClient, monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    monkeypatch.setattr("bulksend.views.bulk_send_create", fail_with(error))

    response = client.post(SEND_URL, SEND_BODY, format="json")

    assert_json(response, 503, UNAVAILABLE)


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_answers_503_json_when_the_database_cannot_be_reached(
    client: APIClient, bulk_send: BulkSend, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    # Finding the API key is every endpoint's first query.
    error = OperationalError("connection to server at 127.0.0.1 port 5432 failed")
    monkeypatch.setattr("mindo.authentication.api_key_authenticate", fail_with(error))

    assert_json(call(client, endpoint, bulk_send), 503, UNAVAILABLE)


@pytest.mark.urls("tests.api_error_urls")
def test_a_plain_django_view_under_api_answers_json(db: None) -> None:
    client = Client(raise_request_exception=False)

    assert_json(client.get("/api/v1/test/broken/"), 500, SERVER_ERROR)
    assert_json(client.get("/api/v1/test/database-down/"), 503, UNAVAILABLE)


@pytest.mark.urls("tests.api_error_urls")
def test_a_page_outside_api_keeps_django_s_html_500(db: None) -> None:
    response = Client(raise_request_exception=False).get("/elsewhere/broken/")

    assert response.status_code == 500
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.urls("tests.api_error_urls")
@pytest.mark.parametrize(
    ("failure", "status", "body"), [("bug", 500, SERVER_ERROR), ("database", 503, UNAVAILABLE)]
)
def test_an_error_outside_any_view_under_api_answers_json(
    db: None, failure: str, status: int, body: dict[str, str]
) -> None:
    middleware = [*settings.MIDDLEWARE, "tests.api_error_urls.FailingMiddleware"]
    client = Client(raise_request_exception=False)

    with override_settings(MIDDLEWARE=middleware):
        response = client.get("/api/v1/meta-templates/bulk-sends/", **{FAILING_HEADER: failure})

    assert_json(response, status, body)


@pytest.mark.parametrize("debug", [False, True])
def test_an_unknown_path_under_api_answers_json_404_with_debug_on_or_off(
    db: None, debug: bool
) -> None:
    with override_settings(DEBUG=debug):
        response = Client().get("/api/v1/nothing-here/")

    assert_json(response, 404, {"detail": "Not found."})


def test_with_debug_on_known_api_paths_and_pages_outside_api_answer_as_before(db: None) -> None:
    with override_settings(DEBUG=True):
        unslashed = Client().get("/api/v1/meta-templates/bulk-sends")
        elsewhere = Client().get("/nothing-here/")

    assert_json(unslashed, 401, UNAUTHENTICATED)
    assert elsewhere.status_code == 404
    assert elsewhere["Content-Type"].startswith("text/html")
