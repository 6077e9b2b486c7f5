"""Every webhook Meta posts is kept, raw, with what it changed, for operators to inspect.

A body is stored as it arrives (`processed_at` empty) and applied right after the answer, in
batches, by whichever web process takes the applier's lock (webhooks.processing): Meta gets its
200 as soon as the body is safe in the database, and a thousand single-status POSTs cost a few
batched statements instead of a thousand.
"""

from __future__ import annotations

from django.db import models
from django.db.models.functions import Now


class WebhookEvent(models.Model):
    received_at = models.DateTimeField(db_default=Now(), db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)
    # The raw body as Meta signed it: the exact bytes are what an operator may need to replay.
    body = models.TextField()
    object_type = models.CharField(max_length=64, blank=True, db_default="")
    fields = models.CharField(
        max_length=200, blank=True, db_default="", help_text="The changes' `field`s"
    )
    status_events = models.PositiveIntegerField(default=0, db_default=0)
    messages_changed = models.PositiveIntegerField(default=0, db_default=0)
    deferred = models.PositiveIntegerField(default=0, db_default=0)
    # What the body changed: its messages, templates, numbers, accounts.
    outcome = models.JSONField(default=dict, blank=True, db_default={})
    # Why the body could not be applied: it is quarantined (out of the applier's queue, kept for
    # an operator to read and replay) instead of blocking every body after it.
    error = models.TextField(blank=True, db_default="")

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            # The applier's queue: only bodies not applied yet are in it.
            models.Index(
                fields=["id"],
                name="webhook_event_unprocessed",
                condition=models.Q(processed_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.fields or self.object_type}"

    @property
    def quarantined(self) -> bool:
        return bool(self.error)
