"""Creating and checking API keys."""

from __future__ import annotations

import re
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from mindo.models import API_KEY_PREFIX, ApiKey, Organization, api_key_hash, api_key_lookup

# `mindo_` and 24 url-safe characters, the format the contract documents.
API_KEY_PATTERN = re.compile(r"^mindo_[A-Za-z0-9_-]{24}$")
# Past this many keys remembered, expired ones are dropped (and all of them if none has expired):
# a bound on memory, far above the keys one process serves in API_KEY_CACHE_SECONDS.
CACHE_MAX_KEYS = 1024

# Key hash -> (when the entry expires on cache_clock, the usable key with its organization and
# user). Only keys that authenticated are kept: an unknown key is looked up every time, so a
# client cycling through made-up keys cannot fill it.
_checked_keys: dict[str, tuple[float, ApiKey]] = {}


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


def api_keys_revoke(keys: QuerySet[ApiKey]) -> int:
    """Revoke `keys` (those already revoked keep their moment) and forget them in this process:
    here they stop working at once, in other processes within API_KEY_CACHE_SECONDS."""
    revoked = keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    for digest in keys.values_list("key_hash", flat=True):
        _checked_keys.pop(digest, None)
    return revoked


def cache_clock() -> float:
    """The clock of the cache's expiry (a function, so tests can move it)."""
    return time.monotonic()


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The usable key matching `raw_key`, or None. Touches `last_used_at` at most once a minute.

    A key stops working with its user: revoked, the user deactivated, or no longer a member of
    the key's organization all get the same None (the contract's one 401).

    A key that authenticated is remembered by this process for API_KEY_CACHE_SECONDS, so a
    client's steady reads cost no query for it. The price is that a revocation (or the user's
    deactivation, or their leaving the organization) takes effect within API_KEY_CACHE_SECONDS
    rather than at once; 0 checks every request.
    """
    if not API_KEY_PATTERN.match(raw_key):
        return None
    digest = api_key_hash(raw_key)
    moment = cache_clock()
    remembered = _checked_keys.get(digest)
    if remembered is not None and moment < remembered[0]:
        api_key = remembered[1]
    else:
        _checked_keys.pop(digest, None)
        found = _api_key_find(raw_key)
        if found is None:
            return None
        api_key = found
        if settings.API_KEY_CACHE_SECONDS > 0:
            _remember(digest, api_key, expires=moment + settings.API_KEY_CACHE_SECONDS)
    _touch(api_key)
    return api_key


def _api_key_find(raw_key: str) -> ApiKey | None:
    candidates = ApiKey.objects.usable().select_related("organization", "user")
    for api_key in candidates.filter(lookup=api_key_lookup(raw_key)):
        if api_key.matches(raw_key):
            return api_key
    return None


def _remember(digest: str, api_key: ApiKey, *, expires: float) -> None:
    if len(_checked_keys) >= CACHE_MAX_KEYS:
        moment = cache_clock()
        for stale in [key for key, (until, _) in _checked_keys.items() if until <= moment]:
            _checked_keys.pop(stale, None)
        if len(_checked_keys) >= CACHE_MAX_KEYS:
            _checked_keys.clear()
    _checked_keys[digest] = (expires, api_key)


def _touch(api_key: ApiKey) -> None:
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if api_key.last_used_at is None or now - api_key.last_used_at >= resolution:
        # A conditional UPDATE, so concurrent requests do not pile up writes on one row.
        ApiKey.objects.filter(pk=api_key.pk).exclude(last_used_at__gt=now - resolution).update(
            last_used_at=now
        )
        api_key.last_used_at = now
