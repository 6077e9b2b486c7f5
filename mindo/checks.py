"""Production refuses the development secrets that settings.py publishes.

A fresh clone runs with published values (`./dev up` sets DJANGO_DEBUG=true). With DEBUG off they
would let anyone forge Meta's webhooks (the app secret signs them) or Django's signed data, so
every system check fails on them: `manage.py check`, `migrate` and `runserver` stop, and the WSGI
application refuses to load (`production_secrets_ensure`), naming each variable to set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks.security.base import (
    SECRET_KEY_INSECURE_PREFIX,
    SECRET_KEY_MIN_LENGTH,
    SECRET_KEY_MIN_UNIQUE_CHARACTERS,
)
from django.core.exceptions import ImproperlyConfigured

logger = logging.getLogger(__name__)

# Meta issues app secrets of 32 hexadecimal characters; anything shorter is not one.
APP_SECRET_MIN_LENGTH = 32

GENERATE_HINT = "Generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))'"


def _secret_key_problem(value: str) -> str | None:
    # Django's own criteria (security.W009), so that `check --deploy` agrees with this check.
    if (
        len(value) < SECRET_KEY_MIN_LENGTH
        or len(set(value)) < SECRET_KEY_MIN_UNIQUE_CHARACTERS
        or value.startswith(SECRET_KEY_INSECURE_PREFIX)
    ):
        return (
            f"is too weak: at least {SECRET_KEY_MIN_LENGTH} random characters, "
            f"{SECRET_KEY_MIN_UNIQUE_CHARACTERS} of them different"
        )
    return None


def _app_secret_problem(value: str) -> str | None:
    if len(value) < APP_SECRET_MIN_LENGTH:
        return f"is too short for a Meta app secret ({APP_SECRET_MIN_LENGTH} characters)"
    return None


@dataclass(frozen=True)
class Secret:
    variable: str
    setting: str
    weakness: Callable[[str], str | None] | None
    hint: str


SECRETS = [
    Secret("DJANGO_SECRET_KEY", "SECRET_KEY", _secret_key_problem, GENERATE_HINT),
    Secret(
        "META_APP_SECRET",
        "META_APP_SECRET",
        _app_secret_problem,
        "Copy it from your Meta app (App settings > Basic > App secret): it signs Meta's webhooks.",
    ),
    Secret(
        "META_VERIFY_TOKEN",
        "META_VERIFY_TOKEN",
        None,
        "Set the verify token you give Meta when subscribing the webhook.",
    ),
]


def _problem(secret: Secret) -> str | None:
    value = getattr(settings, secret.setting, "") or ""
    if not value or value == settings.DEVELOPMENT_SECRETS[secret.variable]:
        return "is not set (or is the development value published in the source)"
    return secret.weakness(value) if secret.weakness else None


@register(Tags.security)
def production_secrets_check(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """An error naming each secret that is missing, published or too weak while DEBUG is off."""
    if settings.DEBUG:
        return []
    errors: list[CheckMessage] = []
    for number, secret in enumerate(SECRETS, start=1):
        problem = _problem(secret)
        if problem is not None:
            message = f"{secret.variable} {problem}; DJANGO_DEBUG is false, so this is production."
            errors.append(Error(message, hint=secret.hint, id=f"mindo.E00{number}"))
    return errors


def production_secrets_ensure() -> None:
    """Raise, after logging each problem, unless the secrets are fit for this environment.

    The WSGI application calls it at import: gunicorn then stops ("Worker failed to boot") rather
    than serving with a secret anyone can read. An exception, not SystemExit: gunicorn would keep
    restarting a worker that exits, but halts on one that fails to load.
    """
    errors = production_secrets_check()
    for error in errors:
        logger.critical("%s %s", error.msg, error.hint)
    if errors:
        names = ", ".join(s.variable for s in SECRETS if _problem(s) is not None)
        raise ImproperlyConfigured(f"Refusing to start: set {names} (see the log above).")
