"""Creating and checking API keys."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.utils import timezone

from mindo.errors import ApiKeyExpiredError
from mindo.models import (
    API_KEY_PREFIX,
    ApiKey,
    ApiKeyScope,
    Organization,
    all_scopes,
    api_key_hash,
    api_key_lookup,
)

# The contract's message for a key that has expired or was revoked.
API_KEY_EXPIRED = "API Key expirada"
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


def api_key_scopes_clean(scopes: Iterable[str]) -> list[str]:
    """`scopes` without repeats, in the scopes' own order; ValueError naming any unknown one, or
    when there is none (a key without a scope could call nothing)."""
    wanted = {scope.strip() for scope in scopes if scope.strip()}
    unknown = sorted(wanted - set(ApiKeyScope.values))
    if unknown:
        raise ValueError(
            f"Unknown scope(s): {', '.join(unknown)}. Scopes: {', '.join(ApiKeyScope.values)}."
        )
    if not wanted:
        raise ValueError(f"A key needs at least one scope of: {', '.join(ApiKeyScope.values)}.")
    return [scope for scope in ApiKeyScope.values if scope in wanted]


def api_key_create(
    *,
    organization: Organization,
    user: User,
    name: str,
    scopes: Iterable[str] | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with the raw key, which is never stored and never shown again.

    Without `scopes` the key has every scope; without `expires_at` it never expires.
    """
    raw_key = api_key_generate()
    api_key = ApiKey.objects.create(
        organization=organization,
        user=user,
        name=name,
        lookup=api_key_lookup(raw_key),
        key_hash=api_key_hash(raw_key),
        scopes=all_scopes() if scopes is None else api_key_scopes_clean(scopes),
        expires_at=expires_at,
    )
    return api_key, raw_key


def api_keys_revoke(keys: QuerySet[ApiKey]) -> int:
    """Revoke `keys` (those already revoked keep their moment) and forget them in this process:
    here they stop working at once, in other processes within API_KEY_CACHE_SECONDS."""
    revoked = keys.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
    api_keys_forget(keys)
    return revoked


def api_keys_forget(keys: QuerySet[ApiKey]) -> None:
    """Drop `keys` from this process's cache, so a change to them (revoked, new scopes or
    expiry) holds here from the next request; other processes see it within
    API_KEY_CACHE_SECONDS."""
    for digest in keys.values_list("key_hash", flat=True):
        _checked_keys.pop(digest, None)


def cache_clock() -> float:
    """The clock of the cache's expiry (a function, so tests can move it)."""
    return time.monotonic()


def api_key_authenticate(raw_key: str) -> ApiKey | None:
    """The usable key matching `raw_key`, or None for no such key; ApiKeyExpiredError for one
    that is revoked or past its expiry. Touches `last_used_at` at most once a minute.

    A key stops working with its user too: the user deactivated, or no longer a member of the
    key's organization, get the same None as an unknown key.

    A key that authenticated is remembered by this process for API_KEY_CACHE_SECONDS, so a
    client's steady reads cost no query for it. The price is that a revocation, a change of its
    scopes or expiry (or the user's deactivation, or their leaving the organization) takes effect
    within API_KEY_CACHE_SECONDS rather than at once; 0 checks every request. The expiry itself
    is not cached: it is checked against the clock on every request, so a key stops at its
    expiry to the second, cached or not.
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
        if settings.API_KEY_CACHE_SECONDS > 0 and not api_key.is_expired(timezone.now()):
            _remember(digest, api_key, expires=moment + settings.API_KEY_CACHE_SECONDS)
    if api_key.is_expired(timezone.now()):
        raise ApiKeyExpiredError(API_KEY_EXPIRED)
    _touch(api_key)
    return api_key


def _api_key_find(raw_key: str) -> ApiKey | None:
    """The key of an active member matching `raw_key`, revoked and expired ones included (they
    get their own answer), or None."""
    candidates = ApiKey.objects.of_members().select_related("organization", "user")
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
