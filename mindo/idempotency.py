"""`Idempotency-Key`: a request repeated with the same key gets the first answer again.

Stripe's semantics. A client that did not get an answer (a timeout, a dropped connection) sends
the same request again with the same key; if the first one ran, its answer (status and body) is
given again and nothing is created twice. Keys belong to the organization and live 24 hours.

- The same key with another request (method, path, query or body, byte for byte) is a 409.
- A request that did not begin (its fields were refused, 400; it was throttled, 429) or that
  failed on the server's side (5xx) keeps no answer: the same key may be tried again.
- Two requests with one key at once: for a view whose work is one transaction (`atomic=True`,
  accepting a bulk send), the key is claimed inside that transaction, so the second waits on the
  key's row until the first commits, then gets its answer; if the first rolled back, the second
  runs. Where the work spans several transactions (a single send calls Meta between them), the
  claim is committed first and the second gets a 409 while the first runs. A claim whose process
  died keeps answering 409 until the key expires: never running twice matters more.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mindo.errors import field_error
from mindo.models import IdempotencyKey
from mindo.request_spool import request_body_chunks
from mindo.tenancy import request_organization

HEADER = "Idempotency-Key"
KEY_MAX_LENGTH = 255
KEY_LIFETIME = timedelta(hours=24)
REPLAYED_HEADER = "Idempotent-Replayed"
OTHER_REQUEST = "Idempotency-Key ya fue usada con otra solicitud"
IN_PROGRESS = "Una solicitud con esta Idempotency-Key todavía está en curso"
KEY_TOO_LONG = f"Ensure this field has no more than {KEY_MAX_LENGTH} characters."
KEY_BLANK = "This field may not be blank."

# Answers kept for the key: every answer of a request that began, except the server's failures.
_NOT_BEGUN = frozenset({status.HTTP_400_BAD_REQUEST, status.HTTP_429_TOO_MANY_REQUESTS})

# Claims the key, or takes over an expired claim; returns the row only when this request got it.
# On a conflict with a claim not committed yet, PostgreSQL waits for that transaction to end.
_CLAIM_SQL = f"""
INSERT INTO {IdempotencyKey._meta.db_table} AS k (organization_id, key, fingerprint, created_at)
VALUES (%s, %s, %s, %s)
ON CONFLICT (organization_id, key) DO UPDATE
    SET fingerprint = EXCLUDED.fingerprint, created_at = EXCLUDED.created_at,
        status_code = NULL, content_type = '', body = NULL
    WHERE k.created_at < %s
RETURNING k.id
"""

Handler = Callable[..., Response]


def _fingerprint(request: Request) -> str:
    digest = hashlib.sha256()
    for part in (request.method or "", request.path, request.META.get("QUERY_STRING", "")):
        digest.update(part.encode())
        digest.update(b"\0")
    for part in request_body_chunks(request):  # a large body from its spool, not memory
        digest.update(part)
    return digest.hexdigest()


def _claim(organization_id: int, key: str, fingerprint: str, now: datetime) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(_CLAIM_SQL, [organization_id, key, fingerprint, now, now - KEY_LIFETIME])
        row = cursor.fetchone()
    return int(row[0]) if row else None


def _earlier_answer(organization_id: int, key: str, fingerprint: str) -> Response:
    """The answer for a key another request holds: its kept answer, or why there is none."""
    held = IdempotencyKey.objects.get(organization_id=organization_id, key=key)
    if held.fingerprint != fingerprint:
        return Response({"error": OTHER_REQUEST}, status=status.HTTP_409_CONFLICT)
    if held.status_code is None:
        return Response({"error": IN_PROGRESS}, status=status.HTTP_409_CONFLICT)
    return _Replay(held)


class _Replay(Response):
    """A kept answer, its bytes as they were first sent: rendering its data again could give
    another body (another key order, other whitespace) than the one the client compares with."""

    def __init__(self, held: IdempotencyKey) -> None:
        super().__init__(status=held.status_code, content_type=held.content_type)
        self.content = bytes(held.body or b"")  # rendered: DRF's renderer is not called
        self["Content-Type"] = held.content_type
        self[REPLAYED_HEADER] = "true"


def _answer(
    view: APIView, handler: Handler, request: Request, *args: Any, **kwargs: Any
) -> Response:
    """The view's answer, its refusals included (they are answers to keep too)."""
    try:
        return handler(view, request, *args, **kwargs)
    except Exception as error:
        return view.handle_exception(error)


def _keep(claim_id: int, view: APIView, request: Request, response: Response) -> None:
    # Rendered here as DRF renders it after the view (which then finds it rendered and leaves it):
    # the bytes kept are the bytes sent.
    view.finalize_response(request, response).render()
    IdempotencyKey.objects.filter(pk=claim_id).update(
        status_code=response.status_code,
        content_type=response["Content-Type"],
        body=response.content,
    )


def _keeps(response: Response) -> bool:
    return response.status_code < 500 and response.status_code not in _NOT_BEGUN


def idempotent(*, atomic: bool) -> Callable[[Handler], Handler]:
    """Honour `Idempotency-Key` on a view's method. `atomic`: the method's work is one
    transaction, which the key's claim can join (see the module's docstring)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def method(view: APIView, request: Request, *args: Any, **kwargs: Any) -> Response:
            key = request.headers.get(HEADER)
            if key is None:
                return handler(view, request, *args, **kwargs)
            if not key.strip():
                raise field_error(HEADER, KEY_BLANK)
            if len(key) > KEY_MAX_LENGTH:
                raise field_error(HEADER, KEY_TOO_LONG)
            organization_id = request_organization(request).pk
            fingerprint = _fingerprint(request)
            # Atomic: the claim joins the view's transaction. Else it is one statement, committed
            # at once, and the view's own transactions follow.
            with transaction.atomic() if atomic else nullcontext():
                claim_id = _claim(organization_id, key, fingerprint, timezone.now())
                if claim_id is None:
                    return _earlier_answer(organization_id, key, fingerprint)
                response = _answer(view, handler, request, *args, **kwargs)
                if _keeps(response):
                    _keep(claim_id, view, request, response)
                elif atomic:
                    transaction.set_rollback(True)  # the claim goes with what was refused
                else:
                    IdempotencyKey.objects.filter(pk=claim_id).delete()
                return response

        return method

    return decorate


def idempotency_keys_purge(*, now: datetime | None = None) -> int:
    """Delete keys past their lifetime; returns how many."""
    cutoff = (now or timezone.now()) - KEY_LIFETIME
    deleted, _ = IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    return deleted
