"""Customer callbacks: the endpoints an organization registers, the outbox of events waiting for
them, and the log of every attempt to deliver them."""

from __future__ import annotations

import uuid

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Now

from mindo.models import Organization

URL_MAX_LENGTH = 2_000
RESPONSE_EXCERPT_BYTES = 500


class EventType(models.TextChoices):
    MESSAGE_STATUS = "message.status", "message.status (each status a message reaches)"
    BULK_SEND_STATUS = "bulk_send.status", "bulk_send.status (each change of a send's status)"
    TEMPLATE_STATUS = "template.status", "template.status (Meta approved, rejected, paused...)"
    PHONE_NUMBER_QUALITY = "phone_number.quality", "phone_number.quality (quality and limits)"


# Sent on demand to any endpoint (`POST .../test/`), whatever events it subscribed to.
TEST_EVENT_TYPE = "endpoint.test"


class WebhookEndpoint(models.Model):
    """A URL of an organization's that receives the events it subscribed to, signed with its
    secret. Secrets are kept in clear: signing needs them (like the app secret Meta signs with).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=URL_MAX_LENGTH)
    events = ArrayField(models.CharField(max_length=32, choices=EventType.choices))
    enabled = models.BooleanField(default=True)
    # Opted in: up to CALLBACKS_BATCH_SIZE events in one POST, as `{"events": [...]}`.
    batch_events = models.BooleanField(default=False)
    # A send's `callback_url`, not registered by the client: it gets the events of the sends that
    # named it (whatever `events` says), signed with the organization's endpoint secret
    # (callbacks.store.endpoint_secrets); the API's endpoint list leaves it out.
    send_scoped = models.BooleanField(default=False)
    secret = models.CharField(max_length=64, editable=False)
    # After a rotation the old secret signs too (a second `v1=`) until this time.
    previous_secret = models.CharField(max_length=64, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Since when every delivery failed (None after a success); disabled once it is too long.
    failing_since = models.DateTimeField(null=True, blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "url"],
                condition=models.Q(send_scoped=True),
                name="callbacks_one_send_url_endpoint",
            )
        ]

    def __str__(self) -> str:
        return self.url


class CallbackEvent(models.Model):
    """One event for one endpoint (the outbox), written in the transaction of the change it
    reports. `body` is the event's `data`; `id`, `type` and `created_at` are sent beside it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="outbox")
    type = models.CharField(max_length=32)
    body = models.JSONField()
    created_at = models.DateTimeField(db_default=Now())
    # When a worker may take it next; a worker that takes it moves it past its lease, so one
    # that dies leaves it due again once the lease is over.
    next_attempt_at = models.DateTimeField(db_default=Now())
    attempts = models.PositiveIntegerField(default=0, db_default=0)
    delivered_at = models.DateTimeField(null=True, blank=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="", db_default="")

    class Meta:
        indexes = [
            # The workers' claim: the due events of an endpoint, oldest due first; settled
            # events (nearly all of the table) are not in it.
            models.Index(
                fields=["endpoint", "next_attempt_at"],
                name="callbacks_event_due",
                condition=models.Q(delivered_at__isnull=True, failed_at__isnull=True),
            ),
            models.Index(fields=["endpoint", "-created_at"], name="callbacks_event_endpoint"),
        ]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class DeliveryAttempt(models.Model):
    """One POST to an endpoint (of one event, or of a batch of them) and what came of it."""

    id = models.BigAutoField(primary_key=True)
    endpoint = models.ForeignKey(
        WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries"
    )
    event_ids = ArrayField(models.UUIDField())
    attempted_at = models.DateTimeField()
    # None when no answer came (timeout, refused connection, refused address).
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    outcome = models.CharField(max_length=16)

    class Meta:
        indexes = [models.Index(fields=["endpoint", "-id"], name="callbacks_attempt_endpoint")]

    def __str__(self) -> str:
        return f"{self.endpoint_id} {self.attempted_at:%Y-%m-%d %H:%M:%S} {self.outcome}"
