"""Every webhook Meta posts is kept, raw, with what it changed, for operators to inspect."""

from __future__ import annotations

from django.db import models


class WebhookEvent(models.Model):
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The raw body as Meta signed it: the exact bytes are what an operator may need to replay.
    body = models.TextField()
    object_type = models.CharField(max_length=64, blank=True)
    fields = models.CharField(max_length=200, blank=True, help_text="The changes' `field`s")
    status_events = models.PositiveIntegerField(default=0)
    messages_changed = models.PositiveIntegerField(default=0)
    deferred = models.PositiveIntegerField(default=0)
    # What the body changed: counters by send, templates, numbers, accounts.
    outcome = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"{self.received_at:%Y-%m-%d %H:%M:%S} {self.fields or self.object_type}"
