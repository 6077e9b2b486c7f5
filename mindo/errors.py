"""The project's own errors: what a service raises when it refuses what it was asked.

Services raise these and know nothing of HTTP: they neither build responses nor raise DRF's
exceptions. `mindo.exceptions.exception_handler` is the one place that turns each of them into the
contract's status and body. Messages are the client's text, in the contract's language.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    """A request the service refuses; `message` is what the client reads."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(DomainError):
    """What was asked for does not exist, or not within the caller's organization."""


class AccessDeniedError(DomainError):
    """What was asked for exists, but belongs to another organization."""


class ConflictError(DomainError):
    """What was asked for exists, but its state does not allow the change now (409: a finished
    send cannot be cancelled, a running one's pending recipients not retried)."""


class ApiKeyExpiredError(DomainError):
    """The API key exists but has expired or was revoked."""


class InvalidFieldsError(DomainError):
    """Errors by field name, each a list of messages; a list field's errors go by item index:
    `{"template_name": ["..."]}`, `{"recipients": {"3": {"phone": ["..."]}}}`."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(f"Invalid fields: {', '.join(errors)}")
        self.errors = errors


def field_error(field: str, message: str) -> InvalidFieldsError:
    """The error of one field with one message."""
    return InvalidFieldsError({field: [message]})


class RateLimitedError(DomainError):
    """Not now: a limit is reached (the portfolio's 24 h quota, the number's throughput).
    `retry_after_seconds` is when trying again can succeed, when it is known."""

    def __init__(self, message: str, *, retry_after_seconds: int | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class MetaError(DomainError):
    """Meta refused a message or did not answer for it; `code` and `meta_message` are Meta's
    error code and text (or the client's own code for an answer that never came)."""

    def __init__(self, message: str, *, code: str, meta_message: str) -> None:
        super().__init__(message)
        self.code = code
        self.meta_message = meta_message


class MetaRefusedError(MetaError):
    """Meta refused this message as it was asked for: sending it again would fail alike."""


class MetaUnavailableError(MetaError):
    """Meta failed (its error, our credentials, no answer): not the request's fault."""


class ServiceUnavailableError(DomainError):
    """A part of the service itself (Redis) cannot be reached; trying again shortly may work."""
