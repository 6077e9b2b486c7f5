from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from webhooks.models import WebhookEvent
from webhooks.processing import webhook_events_replay


class QuarantinedFilter(admin.SimpleListFilter):
    title = "quarantined"
    parameter_name = "quarantined"

    def lookups(self, request: HttpRequest, model_admin: object) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[WebhookEvent]
    ) -> QuerySet[WebhookEvent]:
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(WebhookEvent)
class WebhookEventAdmin(admin.ModelAdmin[WebhookEvent]):
    """Read-only: what Meta sent is evidence, not something to edit."""

    list_display = [
        "received_at",
        "fields",
        "status_events",
        "messages_changed",
        "deferred",
        "is_quarantined",
    ]
    list_filter = [QuarantinedFilter, "fields", "received_at"]
    actions = ["replay"]
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
        "error",
        "pretty_body",
    ]
    exclude = ["body"]

    @admin.display(description="quarantined", boolean=True)
    def is_quarantined(self, event: WebhookEvent) -> bool:
        return event.quarantined

    @admin.action(description="Replay the selected bodies (apply them again)")
    def replay(self, request: HttpRequest, queryset: QuerySet[WebhookEvent]) -> None:
        queued = webhook_events_replay(list(queryset.values_list("pk", flat=True)))
        still = WebhookEvent.objects.filter(pk__in=queryset.values("pk")).exclude(error="")
        self.message_user(request, f"Replayed {queued} bodies; {still.count()} still quarantined.")
        if still.exists():
            self.message_user(request, "See each one's error.", level=messages.WARNING)

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
