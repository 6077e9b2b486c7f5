"""Organizations, their users and their API keys."""

from __future__ import annotations

import hashlib
import hmac
import zoneinfo
from datetime import datetime

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

API_KEY_PREFIX = "mindo_"
# Enough of the secret to find the row by an index, far too little to guess the rest.
API_KEY_LOOKUP_LENGTH = 8


class CompanySize(models.TextChoices):
    """The sizes of the contract's business information; each label is its `companySizeDisplay`."""

    MICRO = "MICRO", "1-10 empleados (Micro)"
    SMALL = "SMALL", "11-50 empleados (Pequeña)"
    MEDIUM = "MEDIUM", "51-250 empleados (Mediana)"
    LARGE = "LARGE", "251-1000 empleados (Grande)"
    ENTERPRISE = "ENTERPRISE", "1000+ empleados (Corporativa)"


class CompanyType(models.TextChoices):
    """The business types an organization may enable (`companyTypes`)."""

    ECOMMERCE = "ECOMMERCE", "E-commerce"
    CLINIC = "CLINIC", "Clinic"


DEFAULT_TIMEZONE = "UTC"


def validate_timezone(name: str) -> None:
    if name not in zoneinfo.available_timezones():
        raise ValidationError(f"{name!r} is not an IANA time zone, such as America/Bogota.")


class Organization(models.Model):
    """A customer of the service: everything an API client can see belongs to one.

    Its profile (contact, time zone, size, types, categories) is what business-info answers.
    """

    name = models.CharField(max_length=200, unique=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=40, blank=True)
    website = models.URLField(blank=True)
    address = models.CharField(max_length=300, blank=True)
    description = models.TextField(blank=True)
    timezone = models.CharField(
        max_length=64, default=DEFAULT_TIMEZONE, validators=[validate_timezone]
    )
    company_size = models.CharField(
        max_length=16, choices=CompanySize.choices, null=True, blank=True
    )
    company_types = ArrayField(
        models.CharField(max_length=16, choices=CompanyType.choices), default=list, blank=True
    )
    categories = ArrayField(models.CharField(max_length=100), default=list, blank=True)
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


class ApiKeyScope(models.TextChoices):
    """What a key may be used for; each API view names the one it requires (`required_scope`)."""

    SEND = "send", "send (send, send-bulk)"
    READ = "read", "read (bulk sends, their messages, message lookup)"
    CONTACTS = "contacts", "contacts (contact-lookup)"
    ACCOUNT = "account", "account (business-accounts, business-info)"
    # Registering a URL that then receives every message's status (phone numbers included) is a
    # way to read all of an organization's traffic: a scope of its own, not ACCOUNT's.
    WEBHOOKS = "webhooks", "webhooks (webhook-endpoints: status callbacks)"


def all_scopes() -> list[str]:
    """Every scope: a key's default, so a key made without naming scopes works everywhere."""
    return list(ApiKeyScope.values)


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def of_members(self) -> ApiKeyQuerySet:
        """Keys whose user is active and still a member of the key's organization: the others
        are not told apart from unknown keys. Joins, so checking a key stays one query."""
        return self.filter(
            user__is_active=True,
            user__membership__organization_id=models.F("organization_id"),
        )

    def in_force(self, now: datetime) -> ApiKeyQuerySet:
        """Neither revoked nor expired at `now`."""
        return self.filter(revoked_at__isnull=True).exclude(expires_at__lte=now)

    def lapsed(self, now: datetime) -> ApiKeyQuerySet:
        """Not revoked, but past their expiry at `now`."""
        return self.filter(revoked_at__isnull=True, expires_at__lte=now)

    def revoked(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=False)


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
    # None: the key never expires. Checked against the clock on every request.
    expires_at = models.DateTimeField(null=True, blank=True)
    scopes = ArrayField(
        models.CharField(max_length=16, choices=ApiKeyScope.choices), default=all_scopes
    )

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        verbose_name = "API key"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.masked})"

    @property
    def masked(self) -> str:
        return f"{API_KEY_PREFIX}{self.lookup}{'*' * 16}"

    def is_expired(self, now: datetime) -> bool:
        """Revoked, or past its expiry at `now`: the contract's "API Key expirada"."""
        return self.revoked_at is not None or (
            self.expires_at is not None and self.expires_at <= now
        )

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    def matches(self, raw_key: str) -> bool:
        return hmac.compare_digest(self.key_hash, api_key_hash(raw_key))

    def revoke(self) -> None:
        if self.revoked_at is None:
            self.revoked_at = timezone.now()
            self.save(update_fields=["revoked_at"])


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` and the answer its request got (mindo.idempotency).

    `status_code` is null while the request runs; the answer (status, content type and body) is
    kept from then until the key expires, and a request that repeats the key gets it again.
    """

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the method, path, query and body: the same key with another request is refused.
    fingerprint = models.CharField(max_length=64)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    # The answer's bytes as first sent: jsonb would give its keys back in its own order, and a
    # client comparing the replay with the first answer would see another body.
    content_type = models.CharField(max_length=255, blank=True, db_default="")
    body = models.BinaryField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "key"], name="idempotency_key_unique_per_organization"
            )
        ]

    def __str__(self) -> str:
        return self.key
