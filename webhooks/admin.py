from __future__ import annotations

import json

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from webhooks.models import WebhookEvent


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin[WebhookEvent]):
    """Read-only: what Meta sent is evidence, not something to edit."""

    list_display = [
        "received_at",
        "fields",
        "status_events",
        "messages_changed",
        "deferred",
    ]
    list_filter = ["fields", "received_at"]
    date_hierarchy = "received_at"
    search_fields = ["body"]
    show_full_result_count = False
    readonly_fields = [
        "received_at",
        "object_type",
        "fields",
        "status_events",
        "messages_changed",
        "deferred",
        "outcome",
        "pretty_body",
    ]
    exclude = ["body"]

    @admin.display(description="body")
    def pretty_body(self, event: WebhookEvent) -> str:
        try:
            text = json.dumps(json.loads(event.body), indent=2, ensure_ascii=False)
        except ValueError:
            text = event.body
        return format_html("<pre>{}</pre>", text)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookEvent | None = None) -> bool:
        return False
