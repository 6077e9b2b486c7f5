"""The endpoint's one answer, shared by the Django view and the WSGI fast path: check the host,
read the body within its limit, check the signature, store, answer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, BinaryIO

from django.conf import settings
from django.http.request import split_domain_port, validate_host

from mindo.meta_signature import signature_is_valid
from webhooks.processing import NotJson, webhook_store

# Meta's bodies are a few kilobytes; anything far larger is not Meta.
MAX_BODY_BYTES = 5 * 1024 * 1024
# A body declared larger than the limit is read (and dropped) up to this much before the 413, so
# the sender reads our answer instead of a connection reset; past it, the connection just ends.
DRAIN_BYTES = 2 * MAX_BODY_BYTES
READ_CHUNK = 64 * 1024


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
    stream: BinaryIO = environ["wsgi.input"]
    if "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        # The server decodes the chunks; the body's end is the stream's end.
        body = _read(stream, limit + 1)
        if len(body) <= limit:
            return body
        _read(stream, DRAIN_BYTES, keep=False)
        return None
    declared = environ.get("CONTENT_LENGTH") or "0"
    if not declared.isdigit():
        return None
    length = int(declared)
    if length > limit:
        _read(stream, min(length, DRAIN_BYTES), keep=False)
        return None
    return _read(stream, length)


def _read(stream: BinaryIO, size: int, *, keep: bool = True) -> bytes:
    parts: list[bytes] = []
    left = size
    while left > 0:
        part = stream.read(min(left, READ_CHUNK))
        if not part:
            break
        left -= len(part)
        if keep:
            parts.append(part)
    return b"".join(parts)
