"""Meta's status POSTs straight from WSGI, around Django's request machinery.

Meta posts one webhook per status, so at a thousand messages a second the webhook is the
busiest endpoint by far. This wrapper answers `POST /webhooks/meta/` with the same work as the
Django view (webhooks.receiving) but without building a request, running the middleware and
resolving the URL, which cost more than the work itself. Everything else goes to Django.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson
from django.db import connection

from webhooks.processing import webhook_events_apply_pending
from webhooks.receiving import webhook_answer

logger = logging.getLogger(__name__)

WEBHOOK_PATH = "/webhooks/meta/"
REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    413: "Request Entity Too Large",
    500: "Internal Server Error",
}

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


# When this process last found the applier's lock taken. Within BUSY_APPLIER_SECONDS of that,
# another process is busy applying and will take our body in its next batch: asking again would
# cost a round trip per POST for nothing. (Beat's applier catches any body left in between.)
BUSY_APPLIER_SECONDS = 0.05
_applier_busy_since = -1.0


class _AnswerThenApply:
    """The response body; the server calls `close()` after sending it, and then we apply."""

    def __init__(self, payload: bytes, apply: bool) -> None:
        self.payload = payload
        self.apply = apply

    def __iter__(self) -> Iterator[bytes]:
        yield self.payload

    def close(self) -> None:
        global _applier_busy_since
        try:
            due = time.monotonic() - _applier_busy_since > BUSY_APPLIER_SECONDS
            if self.apply and due and webhook_events_apply_pending() == 0:
                _applier_busy_since = time.monotonic()
        except Exception:
            # The body is stored: beat's applier takes it. Never let this kill the worker.
            logger.exception("Applying webhook bodies failed; beat will retry")
            connection.close()


def _answer(start_response: Callable[..., Any], status: int, body: dict[str, Any]) -> bytes:
    payload = orjson.dumps(body)
    start_response(
        f"{status} {REASONS.get(status, '')}",
        [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
    )
    return payload


def _receive(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    # Unlike Django's request cycle, no health check round trip per request: the connection is
    # trusted until a statement fails, and then closed so the next request opens a new one.
    try:
        received = webhook_answer(environ)
    except Exception:
        logger.exception("Storing a webhook body failed")
        connection.close()
        # A 500 makes Meta retry later, which is what we want when the database is away.
        return [_answer(start_response, 500, {"error": "Internal error"})]
    return _AnswerThenApply(
        _answer(start_response, received.status, received.body), received.stored
    )


def with_webhook_fast_path(application: WSGIApp) -> WSGIApp:
    def dispatch(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == WEBHOOK_PATH and environ.get("REQUEST_METHOD") == "POST":
            return _receive(environ, start_response)
        return application(environ, start_response)

    return dispatch
