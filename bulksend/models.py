"""A bulk send: one template to many recipients, with counters that are exact at all times."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class BulkSendStatus(models.TextChoices):
    QUEUED = "QUEUED"
    PROCESSING = "PROCESSING"
    COMPLETED = "COMPLETED"
    PARTIAL = "PARTIAL"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


ACTIVE_STATUSES = (BulkSendStatus.QUEUED, BulkSendStatus.PROCESSING)


class BulkSendKind(models.TextChoices):
    """BULK: accepted by send-bulk and drained by the workers. SINGLE: one message sent within its
    request by POST send/ (bulksend.single); the bulk-send endpoints do not list it."""

    BULK = "BULK"
    SINGLE = "SINGLE"


class BulkSendQuerySet(models.QuerySet["BulkSend"]):
    def for_organization(self, organization_id: int) -> BulkSendQuerySet:
        return self.filter(organization_id=organization_id)

    def bulk(self) -> BulkSendQuerySet:
        """What the bulk-send endpoints show: single sends are not theirs."""
        return self.filter(kind=BulkSendKind.BULK)

    def with_api_relations(self) -> BulkSendQuerySet:
        return self.select_related("template", "phone_number", "created_by")


class BulkSend(models.Model):
    """Counters move by deltas in the statements that move messages, so they are always exact.

    `unique_recipients` is the number of messages (one per unique recipient; the status body
    calls it `total_recipients`); `submitted_recipients` is the length of the list the client
    sent (the 202's `total_recipients`).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization = models.ForeignKey(
        "mindo.Organization", on_delete=models.CASCADE, related_name="bulk_sends"
    )
    phone_number = models.ForeignKey(
        "templates_app.PhoneNumber", on_delete=models.PROTECT, related_name="bulk_sends"
    )
    template = models.ForeignKey(
        "templates_app.MessageTemplate", on_delete=models.PROTECT, related_name="bulk_sends"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="bulk_sends",
    )
    status = models.CharField(
        max_length=16, choices=BulkSendStatus.choices, default=BulkSendStatus.QUEUED
    )
    kind = models.CharField(
        max_length=8,
        choices=BulkSendKind.choices,
        default=BulkSendKind.BULK,
        db_default=BulkSendKind.BULK,
    )
    task_id = models.CharField(max_length=64, blank=True)
    submitted_recipients = models.PositiveIntegerField(default=0)
    unique_recipients = models.PositiveIntegerField(default=0)
    pending_count = models.PositiveIntegerField(default=0)
    sent_count = models.PositiveIntegerField(default=0)
    delivered_count = models.PositiveIntegerField(default=0)
    read_count = models.PositiveIntegerField(default=0)
    failed_count = models.PositiveIntegerField(default=0)
    cancelled_count = models.PositiveIntegerField(default=0)
    # The estimate given when the send was accepted; the status endpoint recomputes it while
    # the send is active and shows this one once it is over.
    estimated_time_minutes = models.FloatField(default=0.0)
    # Recipients that did not fit the portfolio's 24 h quota when the send was accepted, and when
    # the window starts to free room for them (see bulksend.quota).
    quota_overflow = models.PositiveIntegerField(default=0)
    quota_frees_at = models.DateTimeField(null=True, blank=True)
    # Why a send stopped before its end (a halted token, a cancellation), for clients and operators.
    status_reason = models.TextField(blank=True)
    # Set while Meta's refusal (an invalid token, a blocked account) holds the send for an
    # operator: its untried messages stay pending until it is resumed or cancelled.
    halted_at = models.DateTimeField(null=True, blank=True)
    halt_reason = models.TextField(blank=True)
    # Scheduling (bulksend.schedule): nothing goes out before `send_at` (the send stays QUEUED,
    # its messages due then), and each message only within `send_window_start`-`_end` of its
    # recipient's local day (bulksend.send_window); `window_last_opens_at` is when the last of
    # the recipients' windows opened, as computed at acceptance, for the estimate.
    send_at = models.DateTimeField(null=True, blank=True)
    send_window_start = models.TimeField(null=True, blank=True)
    send_window_end = models.TimeField(null=True, blank=True)
    window_last_opens_at = models.DateTimeField(null=True, blank=True)
    # The client's URL for this send's events (`callback_url`), besides its organization's
    # endpoints; empty when none (callbacks.outbox delivers to it).
    callback_url = models.URLField(max_length=2_000, blank=True, default="")
    # The send this one retries (bulksend.retry): a retry is a new send of some of its
    # recipients, with the variables they had. Null for a send a client made.
    retry_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="retries"
    )
    # Set while the client (or an operator) holds the send: no worker sends for it, its pending
    # messages wait and its status stays QUEUED or PROCESSING until it is resumed or cancelled.
    paused_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    objects = BulkSendQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="bulksend_org_created"),
            models.Index(fields=["organization", "status"], name="bulksend_org_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    unique_recipients=F("pending_count")
                    + F("sent_count")
                    + F("failed_count")
                    + F("cancelled_count")
                ),
                name="bulksend_counters_add_up",
            ),
            models.CheckConstraint(
                condition=Q(sent_count__gte=F("delivered_count"))
                & Q(delivered_count__gte=F("read_count")),
                name="bulksend_sent_delivered_read_nested",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.id} {self.status}"

    @property
    def progress_percentage(self) -> float:
        if not self.unique_recipients:
            return 0.0
        return round((self.sent_count + self.failed_count) / self.unique_recipients * 100, 2)

    def message_count(self, public_status: str | None = None) -> int:
        """How many messages are in `public_status` (all when None), read off the exact counters
        rather than counted, so a page of a million-message send needs no COUNT(*)."""
        counts = {
            None: self.unique_recipients,
            "pending": self.pending_count,
            "sent": self.sent_count - self.delivered_count,
            "delivered": self.delivered_count - self.read_count,
            "read": self.read_count,
            "failed": self.failed_count,
            "cancelled": self.cancelled_count,
        }
        return counts[public_status]

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def is_cancelled(self) -> bool:
        return self.status == BulkSendStatus.CANCELLED

    @property
    def is_halted(self) -> bool:
        return self.halted_at is not None

    @property
    def is_paused(self) -> bool:
        return self.paused_at is not None
