"""Creating and checking API keys."""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from mindo.models import API_KEY_PREFIX, ApiKey, Organization, api_key_hash, api_key_lookup

# `mindo_` and 24 url-safe characters, the format the contract documents.
API_KEY_PATTERN = re.compile(r"^mindo_[A-Za-z0-9_-]{24}$")


def api_key_generate() -> str:
    # 18 random bytes are exactly 24 url-safe base64 characters.
    return API_KEY_PREFIX + secrets.token_urlsafe(18)


def api_key_create(*, organization: Organization, user: User, name: str) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw key, which is never stored and never shown again."""
    raw_key = api_key_generate()
    api_key = ApiKey.objects.create(
        organization=organization,
        user=user,
        name=name,
        lookup=api_key_lookup(raw_key),
        key_hash=api_key_hash(raw_key),
    )
    return api_key, raw_key


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The usable key matching `raw_key`, or None. Touches `last_used_at` at most once a minute.

    A key stops working with its user: revoked, the user deactivated, or no longer a member of
    the key's organization all get the same None (the contract's one 401).
    """
    if not API_KEY_PATTERN.match(raw_key):
        return None
    candidates = ApiKey.objects.usable().select_related("organization", "user")
    for api_key in candidates.filter(lookup=api_key_lookup(raw_key)):
        if api_key.matches(raw_key):
            _touch(api_key)
            return api_key
    return None


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
        # A conditional UPDATE, so concurrent requests do not pile up writes on one row.
        ApiKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gt=now - resolution).update(
            last_used_at=now
        )
        api_key.last_used_at = now
