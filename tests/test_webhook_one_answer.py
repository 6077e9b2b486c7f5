"""`POST /webhooks/meta/` answers the same through the fast path and through Django's view: one
body limit, one error contract, chunked bodies read, the host checked, a 413 the sender reads."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import requests
from django.core.handlers.wsgi import WSGIHandler

from mindo.wsgi import application as fast_path_application
from tests import meta_payloads as meta
from webhooks.models import WebhookEvent
from webhooks.receiving import MAX_BODY_BYTES

pytestmark = pytest.mark.django_db(transaction=True)

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def signed_body(size: int) -> bytes:
    """A signed-able JSON body of exactly `size` bytes."""
    head = b'{"object":"whatsapp_business_account","entry":[],"padding":"'
    return head + b"x" * (size - len(head) - 2) + b'"}'


def post(
    app: WSGIApp, body: bytes, *, chunked: bool = False, host: str = "127.0.0.1:8000"
) -> tuple[int, dict[str, Any]]:
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhooks/meta/",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "HTTP_HOST": host,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "CONTENT_TYPE": "application/json",
        "HTTP_X_HUB_SIGNATURE_256": meta.signature(body),
    }
    if chunked:
        # What gunicorn hands over for a chunked request: no length, a stream that ends.
        environ["HTTP_TRANSFER_ENCODING"] = "chunked"
    else:
        environ["CONTENT_LENGTH"] = str(len(body))
    answered: list[str] = []
    result = app(environ, lambda status, headers, *_: answered.append(status))
    payload = b"".join(result)
    close = getattr(result, "close", None)
    if close is not None:
        close()
    # Django refuses an unknown host in its middleware, before any view, with its own page.
    answer = orjson.loads(payload) if payload.startswith(b"{") else {"error": payload.decode()}
    return int(answered[0].split()[0]), answer


APPS = {"fast-path": fast_path_application, "django-view": WSGIHandler()}
REQUESTS = {
    "small": ({"body": signed_body(200)}, 200),
    "three-mib": ({"body": signed_body(3 * 1024 * 1024)}, 200),
    "at-the-limit": ({"body": signed_body(MAX_BODY_BYTES)}, 200),
    "over-the-limit": ({"body": signed_body(MAX_BODY_BYTES + 1)}, 413),
    "six-mib": ({"body": signed_body(6 * 1024 * 1024)}, 413),
    "chunked": ({"body": signed_body(300), "chunked": True}, 200),
    "chunked-over-the-limit": ({"body": signed_body(MAX_BODY_BYTES + 1), "chunked": True}, 413),
    "unknown-host": ({"body": signed_body(200), "host": "evil.example.com"}, 400),
}


@pytest.mark.parametrize("app_name", APPS)
@pytest.mark.parametrize("request_name", REQUESTS)
def test_both_paths_give_the_same_answer(app_name: str, request_name: str) -> None:
    arguments, expected = REQUESTS[request_name]

    status, answer = post(APPS[app_name], **arguments)

    assert status == expected, answer
    assert ("event_id" in answer) == (expected == 200)
    assert "error" in answer or expected == 200
    assert WebhookEvent.objects.count() == (1 if expected == 200 else 0)


def test_a_chunked_body_is_stored_whole() -> None:
    body = meta.encode(meta.statuses_notification())

    status, answer = post(fast_path_application, body, chunked=True)

    assert status == 200
    assert WebhookEvent.objects.get(pk=answer["event_id"]).body == body.decode()


def test_a_sender_of_an_oversized_body_reads_the_413(live_server: Any) -> None:
    body = signed_body(MAX_BODY_BYTES + 512 * 1024)

    response = requests.post(
        f"{live_server.url}/webhooks/meta/",
        data=body,
        headers={"X-Hub-Signature-256": meta.signature(body), "Content-Type": "application/json"},
        timeout=60,
    )

    assert response.status_code == 413
    assert response.json() == {"error": f"Body larger than {MAX_BODY_BYTES} bytes"}
