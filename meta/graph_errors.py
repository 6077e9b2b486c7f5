"""What a failed Graph API call means for the message, the send and the operator.

Every failure, whether Meta answered with an error body, answered something we cannot read, or
never answered, becomes a `GraphError` with one `ErrorClass` that tells the drainer what to do.
Each class says what the drainer does with a message that got such an answer; the codes are
Meta's error codes as its answers carry them.
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import orjson

from meta.error_codes import ERROR_CODES, NUMBER_RATE_LIMIT_HIT, PERMISSION_RANGE, ErrorClass

# Where the classes and codes are, for the callers that read them here.
__all__ = ["NUMBER_RATE_LIMIT_HIT", "ErrorClass"]

# Codes of failures that never reached Meta's answer; they are not Meta's numbers.
CODE_TIMEOUT = "timeout"
CODE_CONNECT_TIMEOUT = "connect_timeout"
CODE_CONNECTION_LOST = "connection_lost"
CODE_CONNECTION_ERROR = "connection_error"
CODE_BAD_RESPONSE = "bad_response"


@dataclass(frozen=True, slots=True)
class GraphError:
    """A failed call. `code` is Meta's error code as text, or one of the CODE_* above.

    `maybe_delivered` is True when the request may have reached Meta and been accepted although
    we never read the answer (the connection dropped or timed out after the body was written, or
    a 2xx answer could not be read). Retrying such a message at once could deliver it twice: the
    drainer must first wait for the `sent` status webhook, which carries the message's
    `biz_opaque_callback_data`, and retry only if none comes within its reconciliation window.
    """

    code: str
    message: str
    details: str | None
    http_status: int | None
    error_class: ErrorClass
    maybe_delivered: bool = False
    subcode: str | None = None
    fbtrace_id: str | None = None

    @property
    def text(self) -> str:
        """The text kept in Message.error_message: Meta's message and, when given, its details."""
        if self.details and self.details != self.message:
            return f"{self.message}: {self.details}"
        return self.message

    @property
    def permanent(self) -> bool:
        """True when trying the same message again cannot help."""
        return self.error_class in (ErrorClass.FAIL, ErrorClass.HALT, ErrorClass.PAUSE)


class GraphRequestError(Exception):
    """A synchronous Graph call failed; `error` says how."""

    def __init__(self, error: GraphError) -> None:
        super().__init__(f"Graph API error {error.code}: {error.text}")
        self.error = error


def error_class_for(code: str, http_status: int | None) -> ErrorClass:
    """The class of Meta's `code` (meta.error_codes), else of the HTTP status it came with."""
    if http_status == 401:
        return ErrorClass.HALT  # whatever the body says, the token is not accepted
    known = ERROR_CODES.get(code)
    if known is not None:
        return known.error_class
    if code.isdigit() and int(code) in PERMISSION_RANGE:
        return ErrorClass.HALT
    if http_status is None or http_status >= 500 or http_status in (408, 429):
        return ErrorClass.RETRY
    return ErrorClass.FAIL


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def graph_error_from_response(http_status: int, raw: bytes) -> GraphError:
    """Classify a non-2xx answer from its status and Meta's error body, when it has one.

    Meta's body: {"error": {"message", "type", "code", "error_subcode", "error_data":
    {"messaging_product", "details"}, "fbtrace_id"}}. Anything else (a proxy's HTML page, an
    empty body) is classified by the HTTP status alone, with code "http_<status>".
    """
    try:
        payload = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        payload = None
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict) or error.get("code") is None:
        code = f"http_{http_status}"
        # A proxy's HTML page says nothing worth keeping; the status's name does.
        try:
            reason = HTTPStatus(http_status).phrase
        except ValueError:
            reason = "Unexpected answer"
        return GraphError(
            code=code,
            message=f"HTTP {http_status} {reason} from the Graph API",
            details=None,
            http_status=http_status,
            error_class=error_class_for(code, http_status),
        )
    code = str(error.get("code"))
    error_data = error.get("error_data")
    details = error_data.get("details") if isinstance(error_data, dict) else None
    return GraphError(
        code=code,
        message=str(error.get("message") or error.get("error_user_msg") or "Unknown error"),
        details=_text(details),
        http_status=http_status,
        error_class=error_class_for(code, http_status),
        subcode=_text(error.get("error_subcode")),
        fbtrace_id=_text(error.get("fbtrace_id")),
    )


def local_failure(code: str, message: str) -> GraphError:
    """A message that failed on our side, before anything was handed to Meta: final."""
    return GraphError(
        code=code, message=message, details=None, http_status=None, error_class=ErrorClass.FAIL
    )


def transport_error(code: str, message: str, *, maybe_delivered: bool) -> GraphError:
    """A failure with no answer from Meta: always worth another try."""
    return GraphError(
        code=code,
        message=message,
        details=None,
        http_status=None,
        error_class=ErrorClass.RETRY,
        maybe_delivered=maybe_delivered,
    )
