"""Organizations, their users and their API keys."""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db import models
from django.utils import timezone

API_KEY_PREFIX = "mindo_"
# Enough of the secret to find the row by an index, far too little to guess the rest.
API_KEY_LOOKUP_LENGTH = 8


class Organization(models.Model):
    """A customer of the service: everything an API client can see belongs to one."""

    name = models.CharField(max_length=200, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """Puts a user in an organization; a user belongs to one at most."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.user} in {self.organization}"


def api_key_hash(raw_key: str) -> str:
    """SHA-256 is enough: the key carries 144 random bits, so there is nothing to stretch."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_lookup(raw_key: str) -> str:
    return raw_key[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + API_KEY_LOOKUP_LENGTH]


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)

    def usable(self) -> ApiKeyQuerySet:
        """Keys that may authenticate: not revoked, their user active and still a member of the
        key's organization. Joins, so checking a key stays one query."""
        return self.active().filter(
            user__is_active=True,
            user__membership__organization_id=models.F("organization_id"),
        )


class ApiKey(models.Model):
    """A client's credential. Only the hash of the key is stored; it is shown once, at creation."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="api_keys"
    )
    # The user a bulk send created with this key is attributed to (`created_by`).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    lookup = models.CharField(max_length=API_KEY_LOOKUP_LENGTH, db_index=True, editable=False)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{API_KEY_PREFIX}{self.lookup}{'*' * 16}"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.key_hash, api_key_hash(raw_key))

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])
