"""The endpoint's one answer, shared by the Django view and the WSGI fast path: check the host,
read the body within its limit, check the signature, store, answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from meta.signature import signature_is_valid
from mindo import metrics
from mindo.request_body import request_is_chunked, stream_drain, stream_read, wsgi_body_read
from webhooks.processing import NotJson, webhook_store

# Meta's bodies are a few kilobytes; anything far larger is not Meta.
MAX_BODY_BYTES = 5 * 1024 * 1024
# A body declared larger than the limit is read (and dropped) up to this much before the 413, so
# the sender reads our answer instead of a connection reset; past it, the connection just ends.
DRAIN_BYTES = 2 * MAX_BODY_BYTES


@dataclass(frozen=True, slots=True)
class Received:
    status: int
    body: dict[str, Any]

    @property
    def stored(self) -> bool:
        return self.status == 200


def webhook_receive(body: bytes, signature: str | None) -> Received:
    """Check the signature before anything else, then keep the body for the applier.

    403 for a missing, malformed or wrong signature (nothing stored); 400 for a signed body that
    is not JSON; 200 once the body is stored.
    """
    if not signature_is_valid(body, signature, settings.META_APP_SECRET):
        return Received(403, {"error": "Invalid signature"})
    try:
        event_id = webhook_store(body)
    except NotJson as error:
        return Received(400, {"error": f"Body is not JSON: {error}"})
    metrics.WEBHOOKS_STORED.inc()
    return Received(200, {"received": True, "event_id": event_id})


def webhook_answer(environ: dict[str, Any]) -> Received:
    """Every answer of `POST /webhooks/meta/`, from the request's WSGI environ."""
    if not _host_allowed(environ):
        return Received(400, {"error": "Invalid host"})
    body = _body_read(environ, MAX_BODY_BYTES)
    if body is None:
        return Received(413, {"error": f"Body larger than {MAX_BODY_BYTES} bytes"})
    return webhook_receive(body, environ.get("HTTP_X_HUB_SIGNATURE_256"))


def _host_allowed(environ: dict[str, Any]) -> bool:
    """Django's ALLOWED_HOSTS check, for the fast path that runs before Django's request."""
    if settings.USE_X_FORWARDED_HOST and environ.get("HTTP_X_FORWARDED_HOST"):
        host = environ["HTTP_X_FORWARDED_HOST"]
    elif environ.get("HTTP_HOST"):
        host = environ["HTTP_HOST"]
    else:
        host = f"{environ.get('SERVER_NAME', '')}:{environ.get('SERVER_PORT', '')}"
    domain, _port = split_domain_port(host)
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]
    return bool(domain) and validate_host(domain, allowed)


def _body_read(environ: dict[str, Any], limit: int) -> bytes | None:
    """The body, chunked or with a Content-Length; None when it is over `limit` bytes."""
    stream = environ["wsgi.input"]
    if not request_is_chunked(environ):
        declared = environ.get("CONTENT_LENGTH") or "0"
        if not declared.isdigit():
            return None
        if int(declared) > limit:
            # Read (and drop) what the sender declared, within a bound, before answering.
            stream_read(stream, min(int(declared), DRAIN_BYTES))
            return None
    body = wsgi_body_read(environ, limit=limit)
    if len(body) <= limit:
        return body
    stream_drain(stream, DRAIN_BYTES)  # chunked: the stream ends where the body does
    return None
