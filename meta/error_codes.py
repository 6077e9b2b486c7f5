"""Every error code Meta documents for Cloud API sends, with what it means for a send.

Source: Meta's "WhatsApp error codes" reference (developers.facebook.com, Business Messaging >
WhatsApp > Support > Error codes, as of 2026), its Graph API error-handling guide for the
generic codes (0 to 299, and 2635 for a version past its end of life), and its pages on per-user
marketing limits (131049) and marketing opt-outs (131050). One table, code -> (class, meaning);
the sets the rest of the code reads are derived from it. A code Meta answers that is not here is
classed by its HTTP status (`graph_errors.error_class_for`): 5xx, 408 and 429 are retried, any
other 4xx fails the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ErrorClass(StrEnum):
    RETRY = "retry"  # transient: try the message again after a backoff
    DEFER = "defer"  # try again in hours (131049: Meta holds back marketing to this user)
    FAIL = "fail"  # this message can never go out as it is: fail it, keep Meta's code
    # Every message of the send would fail alike (a token, an account): stop it for an operator.
    HALT = "halt"
    # Meta holds the sender back (spam limit, template paused or disabled): stop the send with
    # the reason, its untried messages kept pending; an operator looks and resumes it.
    PAUSE = "pause"


@dataclass(frozen=True, slots=True)
class ErrorCode:
    error_class: ErrorClass
    meaning: str


RETRY, DEFER, FAIL, HALT, PAUSE = (
    ErrorClass.RETRY,
    ErrorClass.DEFER,
    ErrorClass.FAIL,
    ErrorClass.HALT,
    ErrorClass.PAUSE,
)

# The user stopped marketing messages from this business: the recipient is suppressed.
USER_STOPPED_MARKETING = "131050"
# Meta's per-user marketing limit: held back "to maintain healthy ecosystem engagement".
PER_USER_MARKETING_LIMIT = "131049"
# The Graph API version called is past its end of life (Graph API error handling, versioning).
DEPRECATED_GRAPH_VERSION = "2635"
# The number's throughput exceeded: retried, and every sender of the number slows down.
NUMBER_RATE_LIMIT_HIT = "130429"

# Meta's code as text -> its class and what it means (Meta's title, then why the class).
ERROR_CODES: dict[str, ErrorCode] = {
    # --- Authorization (Graph API) ---
    "0": ErrorCode(HALT, "AuthException: the app user could not be authenticated (401)"),
    "3": ErrorCode(HALT, "API Method: a capability or permission the app lacks (500)"),
    "10": ErrorCode(HALT, "Permission Denied: not granted or removed (403)"),
    "190": ErrorCode(HALT, "Access token has expired or is invalid (401)"),
    # 200 to 299 are all "API Permission" (403); `error_class_for` classes the whole range.
    "200": ErrorCode(HALT, "API Permission: permission not granted or removed (403)"),
    # Graph API's versioning: a version past its end of life answers every call with 2635, so
    # each message of the send would fail alike until an operator moves META_GRAPH_API_VERSION.
    DEPRECATED_GRAPH_VERSION: ErrorCode(
        HALT, "You are calling a deprecated version of the Graph API: update the version (400)"
    ),
    # --- Throttling ---
    "4": ErrorCode(RETRY, "API Too Many Calls: the app's request limit (400)"),
    "80007": ErrorCode(RETRY, "Rate limit issues: the business account's request limit (400)"),
    NUMBER_RATE_LIMIT_HIT: ErrorCode(RETRY, "Rate limit hit: the number's throughput (400)"),
    "131048": ErrorCode(
        PAUSE, "Spam rate limit hit: too many earlier messages blocked or flagged as spam (400)"
    ),
    "131056": ErrorCode(
        RETRY, "(Business Account, Consumer Account) pair rate limit hit: same recipient (400)"
    ),
    # --- Integrity ---
    "368": ErrorCode(HALT, "Temporarily blocked for policies violations (403)"),
    "130497": ErrorCode(
        FAIL, "Business account is restricted from messaging users in this country (403)"
    ),
    "131031": ErrorCode(HALT, "Account has been locked: policy or PIN mismatch (403)"),
    # --- Other send errors ---
    "1": ErrorCode(RETRY, "API Unknown: invalid request or possible server error (400)"),
    "2": ErrorCode(RETRY, "API Service: temporary downtime or overload (503)"),
    "33": ErrorCode(HALT, "Parameter value is not valid: the business number was deleted (400)"),
    "100": ErrorCode(FAIL, "Invalid parameter: unsupported or misspelled parameter (400)"),
    "130472": ErrorCode(
        FAIL, "User's number is part of an experiment: marketing held back by Meta (400)"
    ),
    "131000": ErrorCode(RETRY, "Something went wrong: unknown error, try again (500)"),
    "131005": ErrorCode(HALT, "Access denied: permission not granted or removed (403)"),
    "131008": ErrorCode(FAIL, "Required parameter is missing (400)"),
    "131009": ErrorCode(FAIL, "Parameter value is not valid (400)"),
    "131016": ErrorCode(RETRY, "Service unavailable: temporarily (500)"),
    "131021": ErrorCode(FAIL, "Recipient cannot be sender (400)"),
    "131026": ErrorCode(
        FAIL, "Message Undeliverable: not on WhatsApp, old app, terms not accepted (400)"
    ),
    "131037": ErrorCode(HALT, "The number needs display name approval before sending (400)"),
    "131042": ErrorCode(HALT, "Business eligibility payment issue (400)"),
    "131045": ErrorCode(HALT, "Incorrect certificate: the number is not properly registered (400)"),
    "131047": ErrorCode(FAIL, "Re-engagement message: more than 24 h since the last reply (400)"),
    PER_USER_MARKETING_LIMIT: ErrorCode(
        DEFER, "This message was not delivered to maintain healthy ecosystem engagement (400)"
    ),
    USER_STOPPED_MARKETING: ErrorCode(
        FAIL, "Unable to deliver: the user stopped marketing messages from this business (400)"
    ),
    "131051": ErrorCode(FAIL, "Unsupported message type (400)"),
    "131052": ErrorCode(FAIL, "Media download error: the user's media could not be fetched (400)"),
    "131053": ErrorCode(FAIL, "Media upload error: the media could not be uploaded (400)"),
    "131055": ErrorCode(FAIL, "Method not allowed (405)"),
    "131057": ErrorCode(
        RETRY, "Account in maintenance mode: a throughput upgrade is under way (500)"
    ),
    "132000": ErrorCode(FAIL, "Template Param Count Mismatch (400)"),
    "132001": ErrorCode(FAIL, "Template does not exist in this language, or not approved (404)"),
    "132005": ErrorCode(FAIL, "Template Hydrated Text Too Long (400)"),
    "132007": ErrorCode(FAIL, "Template Format Character Policy Violated (400)"),
    "132012": ErrorCode(FAIL, "Template Parameter Format Mismatch (400)"),
    "132015": ErrorCode(PAUSE, "Template is Paused: low quality (400)"),
    "132016": ErrorCode(PAUSE, "Template is Disabled: paused too many times for low quality (400)"),
    "132018": ErrorCode(FAIL, "Template Parameter issue: a parameter's text is not valid (400)"),
    "132068": ErrorCode(FAIL, "Flow is blocked (400)"),
    "132069": ErrorCode(RETRY, "Flow is throttled: 10 messages with it in the last hour (400)"),
    "133000": ErrorCode(HALT, "Incomplete Deregistration of the number (500)"),
    "133004": ErrorCode(RETRY, "Server Temporarily Unavailable (503)"),
    "133006": ErrorCode(HALT, "Phone number Re-verification Needed (400)"),
    "133010": ErrorCode(HALT, "Phone number Not Registered (400)"),
    "135000": ErrorCode(FAIL, "Generic user error (400)"),
}


def codes_of(error_class: ErrorClass) -> frozenset[str]:
    return frozenset(
        code for code, entry in ERROR_CODES.items() if entry.error_class is error_class
    )


RETRY_CODES = codes_of(RETRY)
DEFER_CODES = codes_of(DEFER)
FAIL_CODES = codes_of(FAIL)  # listed for the record: any other 4xx fails the message as well
HALT_CODES = codes_of(HALT)
PAUSE_CODES = codes_of(PAUSE)
# Graph API's "API Permission" range, documented as one entry.
PERMISSION_RANGE = range(200, 300)
