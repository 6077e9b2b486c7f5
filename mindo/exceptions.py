"""Error bodies of the contract that DRF does not produce by itself.

`exception_handler` is the one place where an error becomes a status and a body: DRF's own
exceptions, the HTTP layer's `ContractError`, and the services' `mindo.errors.DomainError`.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.db import InterfaceError, OperationalError
from rest_framework import exceptions, status
from rest_framework.response import Response

from mindo.errors import (
    AccessDeniedError,
    ConflictError,
    DomainError,
    InvalidFieldsError,
    MetaError,
    MetaRefusedError,
    MetaUnavailableError,
    NotFoundError,
    RateLimitedError,
    ServiceUnavailableError,
)

logger = logging.getLogger(__name__)

UNAUTHENTICATED_BODY = {
    "error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"
}
# The code of the 401 whose body is its own message (an expired or revoked key), not the above.
API_KEY_EXPIRED_CODE = "api_key_expired"
# Bodies of the errors the contract does not list, in its language and its `{"error"}` shape, so a
# client never has to parse an HTML page from the API.
SERVER_ERROR_BODY = {"error": "Error interno del servidor"}
# An unknown path under /api/: what DRF answers for an unknown object, so both read alike.
NOT_FOUND_BODY = {"detail": "Not found."}
UNAVAILABLE_BODY = {
    "error": "Servicio no disponible temporalmente. Intente nuevamente en unos segundos."
}
# What the database driver raises when PostgreSQL cannot be reached or the connection broke.
DATABASE_UNAVAILABLE_ERRORS = (OperationalError, InterfaceError)


# The status of each domain error whose body is `{"error": message}`.
DOMAIN_ERROR_STATUSES: dict[type[DomainError], int] = {
    NotFoundError: status.HTTP_404_NOT_FOUND,
    AccessDeniedError: status.HTTP_403_FORBIDDEN,
    ConflictError: status.HTTP_409_CONFLICT,
    RateLimitedError: status.HTTP_429_TOO_MANY_REQUESTS,
    MetaRefusedError: status.HTTP_400_BAD_REQUEST,
    MetaUnavailableError: status.HTTP_502_BAD_GATEWAY,
    ServiceUnavailableError: status.HTTP_503_SERVICE_UNAVAILABLE,
}


class ContractError(exceptions.APIException):
    """An error of the HTTP layer whose body the contract fixes as `{"error": "..."}`."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(detail=message)
        self.status_code = status_code
        self.message = message


class RequestTooLarge(ContractError):
    """413, in the `{"error": "..."}` shape of the contract's own errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)


def throttled_response(wait: float | None) -> Response:
    """429 with the seconds until the key's next window, in the body and in `Retry-After`."""
    seconds = max(1, math.ceil(wait or 0))  # never 0: the next window has to have begun
    response = Response(
        {"error": f"Demasiadas solicitudes. Intente nuevamente en {seconds} segundos."},
        status=status.HTTP_429_TOO_MANY_REQUESTS,
    )
    response["Retry-After"] = str(seconds)
    return response


def domain_error_response(error: DomainError) -> Response | None:
    """The contract's answer to a service's refusal: field errors in DRF's 400 shape (as the
    serializers' own errors read), the others as `{"error": message}`; None for a domain error
    given no status here, which is then answered as the bug it is."""
    if isinstance(error, InvalidFieldsError):
        return Response(error.errors, status=status.HTTP_400_BAD_REQUEST)
    for error_class, error_status in DOMAIN_ERROR_STATUSES.items():
        if isinstance(error, error_class):
            body: dict[str, Any] = {"error": error.message}
            if isinstance(error, MetaError):
                # Meta's own code and text, for the client's logs and Meta's documentation.
                body["meta_error"] = {"code": error.code, "message": error.meta_message}
            response = Response(body, status=error_status)
            if isinstance(error, RateLimitedError) and error.retry_after_seconds is not None:
                response["Retry-After"] = str(max(1, error.retry_after_seconds))
            return response
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, exceptions.NotAuthenticated | exceptions.AuthenticationFailed):
        expired = exc.get_codes() == API_KEY_EXPIRED_CODE
        body = {"error": str(exc.detail)} if expired else UNAUTHENTICATED_BODY
        response = Response(body, status=status.HTTP_401_UNAUTHORIZED)
        response["WWW-Authenticate"] = "X-API-Key"
        return response
    if isinstance(exc, ContractError):
        return Response({"error": exc.message}, status=exc.status_code)
    if isinstance(exc, exceptions.Throttled):
        return throttled_response(getattr(exc, "wait", None))  # the stubs lack `wait`
    # Imported here: rest_framework.views loads the parser classes, and mindo.parsers needs this
    # module, so a module-level import would be circular for whoever imports this module first.
    from rest_framework.views import exception_handler as drf_exception_handler
    from rest_framework.views import set_rollback

    refused = domain_error_response(exc) if isinstance(exc, DomainError) else None
    if refused is not None:
        set_rollback()  # as DRF does for its own exceptions: the request changed nothing
        return refused

    handled = drf_exception_handler(exc, context)
    if handled is not None:
        return handled
    # Not an API exception: DRF would re-raise it and Django answer its HTML 500 page.
    set_rollback()
    request = context.get("request")
    path = request.path if request is not None else "?"
    if isinstance(exc, DATABASE_UNAVAILABLE_ERRORS):
        logger.error("The database is unavailable for %s: %s", path, exc)
        return Response(UNAVAILABLE_BODY, status=status.HTTP_503_SERVICE_UNAVAILABLE)
    logger.error("Unhandled error in %s", path, exc_info=exc)
    return Response(SERVER_ERROR_BODY, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
