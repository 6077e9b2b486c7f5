"""Admin for bulk sends: a window on progress, not a way to change it.

Sends are created through the API, and their status and counters move only in the statements that
move their messages (DESIGN: exact counters). An edit or a delete here would break that, so the
admin shows sends and lets nobody add, change or delete one; operators act on them through two
actions that go through bulksend.lifecycle: cancel, and resume a send Meta halted.
"""

from __future__ import annotations

import uuid

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from bulksend.lifecycle import bulk_send_cancel, bulk_send_resume
from bulksend.models import BulkSend

COUNTERS = [
    "unique_recipients",
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "pending_count",
]


@admin.register(BulkSend)
class BulkSendAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "organization",
        "template",
        "phone_number",
        "status",
        "progress",
        *COUNTERS,
        "created_at",
        "started_at",
        "completed_at",
    ]
    list_filter = ["status", "created_at", "organization"]
    list_select_related = ["organization", "template", "phone_number"]
    date_hierarchy = "created_at"
    search_fields = ["id"]
    search_help_text = "A bulk send id (or part of it)."
    raw_id_fields = ["organization", "phone_number", "template", "created_by"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "organization",
                    "template",
                    "phone_number",
                    "created_by",
                    "status",
                    "status_reason",
                    "halted_at",
                    "halt_reason",
                    "task_id",
                    "message_list",
                ]
            },
        ),
        (
            "Progress",
            {
                "fields": [
                    "progress",
                    "submitted_recipients",
                    *COUNTERS,
                    "cancelled_count",
                ]
            },
        ),
        (
            "Timing",
            {
                "fields": [
                    "estimated_time_minutes",
                    "quota_overflow",
                    "quota_frees_at",
                    "created_at",
                    "started_at",
                    "completed_at",
                ]
            },
        ),
    ]
    # Everything shown is read-only: state moves only through the statements that move it.
    readonly_fields = flatten_fieldsets(fieldsets)

    actions = ["cancel_sends", "resume_sends"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        # Cancelling and resuming are what "change" means for a send.
        return request.user.has_perm("bulksend.change_bulksend")

    @admin.action(
        description="Cancel selected sends (what has not gone out)", permissions=["operate"]
    )
    def cancel_sends(self, request: HttpRequest, queryset: QuerySet[BulkSend]) -> None:
        cancelled = sum(bulk_send_cancel(bulk_send=send) for send in queryset)
        self.message_user(request, f"Cancelled {cancelled} pending messages.", messages.SUCCESS)

    @admin.action(description="Resume selected sends halted by Meta", permissions=["operate"])
    def resume_sends(self, request: HttpRequest, queryset: QuerySet[BulkSend]) -> None:
        resumed = sum(bulk_send_resume(bulk_send=send) for send in queryset)
        self.message_user(request, f"Resumed {resumed} sends.", messages.SUCCESS)

    def has_change_permission(self, request: HttpRequest, obj: BulkSend | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: BulkSend | None = None) -> bool:
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[BulkSend], search_term: str
    ) -> tuple[QuerySet[BulkSend], bool]:
        try:
            # A whole id goes straight to the primary key rather than through a text search.
            return queryset.filter(pk=uuid.UUID(search_term.strip())), False
        except ValueError:
            return super().get_search_results(request, queryset, search_term)

    @admin.display(description="progress")
    def progress(self, bulk_send: BulkSend) -> SafeString:
        percentage = bulk_send.progress_percentage
        return format_html(
            '<progress value="{}" max="100" title="{}%" style="width: 6em">{}%</progress> {}%',
            percentage,
            percentage,
            percentage,
            percentage,
        )

    @admin.display(description="messages")
    def message_list(self, bulk_send: BulkSend) -> SafeString:
        url = reverse("admin:messaging_message_changelist")
        return format_html(
            '<a href="{}?bulk_send__id__exact={}">{} messages</a>',
            url,
            bulk_send.pk,
            bulk_send.unique_recipients,
        )
