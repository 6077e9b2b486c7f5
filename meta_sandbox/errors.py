"""Meta's error answers: the codes the service meets, with Meta's wording and body shape.

{"error": {"message": "(#132001) Template name does not exist in the translation",
           "type": "OAuthException", "code": 132001,
           "error_data": {"messaging_product": "whatsapp", "details": "..."},
           "fbtrace_id": "A3x..."}}
"""

from __future__ import annotations

import base64
import os
from typing import Any

INVALID_TOKEN = 190
INVALID_PARAMETER = 100
UNKNOWN_PATH = 2500
DEPRECATED_VERSION = 2635
SOMETHING_WENT_WRONG = 131000
REQUIRED_PARAMETER_MISSING = 131008
PARAMETER_NOT_VALID = 131009
UNDELIVERABLE = 131026
RATE_LIMIT_HIT = 130429
PARAMETER_COUNT_MISMATCH = 132000
TEMPLATE_NOT_FOUND = 132001
PARAMETER_FORMAT_MISMATCH = 132012
TEMPLATE_PARAMETER_ISSUE = 132018
# Subcodes of 100 for a template Meta will not create.
TEMPLATE_INVALID = 2388040
TEMPLATE_EXISTS = 2388024


def fbtrace_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(15)).decode()[:20]


class MetaError(Exception):
    """An answer of the Graph API that is not a success; raise it anywhere in a handler."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        status: int = 400,
        details: str | None = None,
        subcode: int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.details = details or message
        self.subcode = subcode

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {
            "message": self.message,
            "type": "OAuthException",
            "code": self.code,
            "error_data": {"messaging_product": "whatsapp", "details": self.details},
            "fbtrace_id": fbtrace_id(),
        }
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        return {"error": error}


def invalid_token(details: str) -> MetaError:
    return MetaError(
        INVALID_TOKEN,
        "Invalid OAuth access token - Cannot parse access token",
        status=401,
        details=details,
    )


def unknown_object(object_id: str) -> MetaError:
    return MetaError(
        INVALID_PARAMETER,
        f"Unsupported post request. Object with ID '{object_id}' does not exist, cannot be "
        "loaded due to missing permissions, or does not support this operation.",
        subcode=33,
    )


def invalid_parameter(details: str) -> MetaError:
    return MetaError(INVALID_PARAMETER, "(#100) Invalid parameter", details=details)


def unknown_path(path: str) -> MetaError:
    return MetaError(UNKNOWN_PATH, f"Unknown path components: {path}")


def deprecated_version(latest: str) -> MetaError:
    """A Graph API version Meta no longer serves."""
    return MetaError(
        DEPRECATED_VERSION,
        f"(#{DEPRECATED_VERSION}) You are calling a deprecated version of the Graph API. "
        f"Please update to the latest version: {latest}.",
    )


def template_not_found(name: str, language: str) -> MetaError:
    return MetaError(
        TEMPLATE_NOT_FOUND,
        "(#132001) Template name does not exist in the translation",
        details=f"template name ({name}) does not exist in {language}",
    )


def parameter_count_mismatch(details: str) -> MetaError:
    return MetaError(
        PARAMETER_COUNT_MISMATCH,
        "(#132000) Number of parameters does not match the expected number of params",
        details=details,
    )


def parameter_format_mismatch(details: str) -> MetaError:
    return MetaError(
        PARAMETER_FORMAT_MISMATCH,
        "(#132012) Parameter format does not match format in the created template",
        details=details,
    )


def parameter_text_not_valid(details: str) -> MetaError:
    return MetaError(
        TEMPLATE_PARAMETER_ISSUE,
        "(#132018) There was an issue with the parameters in your template.",
        details=details,
    )


def template_not_valid(details: str) -> MetaError:
    return MetaError(
        INVALID_PARAMETER, "(#100) Invalid parameter", details=details, subcode=TEMPLATE_INVALID
    )


def template_exists(name: str, language: str) -> MetaError:
    return MetaError(
        INVALID_PARAMETER,
        "(#100) Invalid parameter",
        details=f"Content in this language already exists: {name} ({language}).",
        subcode=TEMPLATE_EXISTS,
    )


def parameter_missing(details: str) -> MetaError:
    return MetaError(
        REQUIRED_PARAMETER_MISSING, "(#131008) Required parameter is missing", details=details
    )


def parameter_not_valid(details: str) -> MetaError:
    return MetaError(PARAMETER_NOT_VALID, "(#131009) Parameter value is not valid", details=details)


def rate_limit_hit() -> MetaError:
    return MetaError(
        RATE_LIMIT_HIT,
        "(#130429) Rate limit hit",
        details="Cloud API message throughput has been reached.",
    )


def something_went_wrong() -> MetaError:
    return MetaError(
        SOMETHING_WENT_WRONG,
        "(#131000) Something went wrong",
        status=500,
        details="Message failed to send due to an unknown error. Please try again.",
    )
