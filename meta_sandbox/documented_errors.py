"""The send errors Meta documents, as Meta answers them: HTTP status, title and details.

The sandbox's own reading of Meta's error-code reference (it imports nothing of the service):
any of these can be answered on demand for chosen recipients (`recipient_errors` in the
config), and 131050 is answered by itself to a MARKETING send to a user who stopped marketing
(`POST /_sandbox/user_preferences`).
"""

from __future__ import annotations

from meta_sandbox.errors import MetaError

USER_STOPPED_MARKETING = 131050
# A template Meta paused for low quality, or disabled after pausing it too often.
TEMPLATE_PAUSED = 132015
TEMPLATE_DISABLED = 132016

# code -> (HTTP status, title as Meta writes it in `message`, `error_data.details`)
DOCUMENTED: dict[int, tuple[int, str, str]] = {
    0: (401, "AuthException", "We were unable to authenticate the app user."),
    1: (400, "API Unknown", "Invalid request or possible server error."),
    2: (503, "API Service", "Temporary due to downtime or due to being overloaded."),
    3: (500, "API Method", "Capability or permissions issue."),
    4: (400, "API Too Many Calls", "The app has reached its API call rate limit."),
    10: (403, "Permission Denied", "Permission is either not granted or has been removed."),
    33: (400, "Parameter value is not valid", "The business phone number has been deleted."),
    100: (400, "Invalid parameter", "The request included unsupported or misspelled parameters."),
    190: (401, "Access token has expired", "Your access token has expired."),
    200: (403, "API Permission", "Permission is either not granted or has been removed."),
    2635: (
        400,
        "You are calling a deprecated version of the Graph API",
        "Please update to the latest version.",
    ),
    368: (
        403,
        "Temporarily blocked for policies violations",
        "The WhatsApp Business Account associated with the app has been restricted or disabled "
        "for violating a platform policy.",
    ),
    80007: (400, "Rate limit issues", "The WhatsApp Business Account has reached its rate limit."),
    130429: (400, "Rate limit hit", "Cloud API message throughput has been reached."),
    130472: (
        400,
        "User's number is part of an experiment",
        "Failed to send message because this user's phone number is part of an experiment.",
    ),
    130497: (
        403,
        "Business account is restricted from messaging users in this country",
        "The WhatsApp Business Account is restricted from messaging users in this country.",
    ),
    131000: (500, "Something went wrong", "Message failed to send due to an unknown error."),
    131005: (403, "Access denied", "Permission is either not granted or has been removed."),
    131008: (400, "Required parameter is missing", "The request is missing a required parameter."),
    131009: (400, "Parameter value is not valid", "One or more parameter values are invalid."),
    131016: (500, "Service unavailable", "A service is temporarily unavailable."),
    131021: (400, "Recipient cannot be sender", "Sender and recipient phone number is the same."),
    131026: (400, "Message Undeliverable", "Message Undeliverable."),
    131031: (
        403,
        "Account has been locked",
        "The WhatsApp Business Account associated with the app has been restricted or "
        "disabled for violating a platform policy, or we were unable to verify data.",
    ),
    131037: (
        400,
        "WhatsApp provided number needs display name approval before message can be sent.",
        "The 555 business phone number needs a display name approval.",
    ),
    131042: (
        400,
        "Business eligibility payment issue",
        "There was an error related to your payment method.",
    ),
    131045: (
        400,
        "Incorrect certificate",
        "Message failed to send due to a phone number registration error.",
    ),
    131047: (
        400,
        "Re-engagement message",
        "More than 24 hours have passed since the recipient last replied to the sender number.",
    ),
    131048: (
        400,
        "Spam rate limit hit",
        "Message failed to send because there are restrictions on how many messages can be "
        "sent from this phone number.",
    ),
    131049: (
        400,
        "This message was not delivered to maintain healthy ecosystem engagement.",
        "In order to maintain a healthy ecosystem engagement, the message failed to be delivered.",
    ),
    131050: (
        400,
        "Unable to deliver the message. This recipient has chosen to stop receiving marketing "
        "messages on WhatsApp from your business",
        "The user has stopped marketing messages from this business.",
    ),
    131051: (400, "Unsupported message type", "Unsupported message type."),
    131052: (400, "Media download error", "Unable to download the media sent by the user."),
    131053: (400, "Media upload error", "Unable to upload the media used in the message."),
    131055: (405, "Method not allowed", "The method is not allowed."),
    131056: (
        400,
        "(Business Account, Consumer Account) pair rate limit hit",
        "Too many messages sent from the sender phone number to the same recipient phone "
        "number in a short period of time.",
    ),
    131057: (
        500,
        "Account in maintenance mode",
        "Business Account is in maintenance mode: it may be undergoing a throughput upgrade.",
    ),
    132000: (
        400,
        "Number of parameters does not match the expected number of params",
        "The number of variable parameter values does not match the template.",
    ),
    132001: (404, "Template name does not exist in the translation", "Template does not exist."),
    132005: (400, "Template Hydrated Text Too Long", "Translated text is too long."),
    132007: (
        400,
        "Template Format Character Policy Violated",
        "Template content violates a WhatsApp policy.",
    ),
    132012: (
        400,
        "Parameter format does not match format in the created template",
        "Variable parameter values formatted incorrectly.",
    ),
    132015: (400, "Template is Paused", "Template is paused due to low quality."),
    132016: (
        400,
        "Template is Disabled",
        "Template has been paused too many times due to low quality and is now disabled.",
    ),
    132018: (
        400,
        "There was an issue with the parameters in your template.",
        "A parameter's text is not valid.",
    ),
    132068: (400, "Flow is blocked", "The flow is in blocked state."),
    132069: (400, "Flow is throttled", "The flow is in throttled state."),
    133000: (500, "Incomplete Deregistration", "A previous deregistration attempt failed."),
    133004: (503, "Server Temporarily Unavailable", "The server is temporarily unavailable."),
    133006: (
        400,
        "Phone number Re-verification Needed",
        "The phone number needs to be verified before registering.",
    ),
    133010: (400, "Phone number Not Registered", "The phone number is not registered."),
    135000: (400, "Generic user error", "Message failed to send because of an unknown error."),
}


def documented_error(code: int) -> MetaError:
    """Meta's answer for `code`, in its body shape; KeyError for a code it does not document."""
    status, title, details = DOCUMENTED[code]
    return MetaError(code, f"(#{code}) {title}", status=status, details=details)
