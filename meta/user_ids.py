"""Meta's business-scoped user ids (BSUIDs): who a WhatsApp user is to one business portfolio.

Since April 2026 Meta names users in its webhooks by `user_id` beside (or, for a user who adopted
a username, instead of) their phone (`wa_id`, `from`, `recipient_id`), and takes a message to
one in `recipient` instead of `to` (developers.facebook.com, WhatsApp > Business-scoped user
IDs). The id is the user's ISO 3166 country code, a period and up to 128 letters and digits
(`US.13491208655302741918`); a parent id, shared by linked portfolios, has `ENT.` after the
country (`US.ENT.11815799212886844830`). A user who changes phone gets a new one.

The id is kept as Meta wrote it: it is case-sensitive and never normalized. It can never be
mistaken for a phone, which this service writes with a leading `+`, so a column or a set may
hold either as "the recipient" without ambiguity.
"""

from __future__ import annotations

import re

USER_ID = re.compile(r"[A-Z]{2}\.(?:ENT\.)?[A-Za-z0-9]{1,128}")
# The longest id the pattern allows ("XX." "ENT." and 128 characters).
USER_ID_MAX_LENGTH = 135
INVALID_USER_ID = (
    "Enter a valid business-scoped user id: a two-letter country code, a period and up to 128 "
    "letters or digits (e.g. US.13491208655302741918)."
)


def is_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID.fullmatch(value) is not None
