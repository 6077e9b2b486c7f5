"""Admin for bulk sends: a window on progress, not a way to change it.

Sends are created through the API, and their status and counters move only in the statements that
move their messages, so they are exact at all times. An edit or a delete here would break that,
so the admin shows sends and lets nobody add, change or delete one; operators act on them through
actions that go through bulksend.lifecycle, as the API's do: cancel, pause, and resume a send
paused or halted by Meta. Another retries a send's failed recipients as the API's retry does
(bulksend.retry), and another downloads a send's messages as the API's CSV export does
(bulksend.export).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.models import User
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from bulksend.export import messages_csv_response
from bulksend.lifecycle import bulk_send_cancel, bulk_send_pause, bulk_send_unpause
from bulksend.models import BulkSend, BulkSendKind
from bulksend.retry import RetryScope, bulk_send_retry
from bulksend.screening import send_recipients_cooling_down
from messaging.pricing import message_totals_by_category
from mindo.errors import DomainError

COUNTERS = [
    "unique_recipients",
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "pending_count",
]
# Longer names are cut in the list (the whole name is in the cell's tooltip), so that a send's row
# fits 1,400 px beside the admin's two sidebars (tests/test_admin_layout.py).
NAME_MAX_CHARACTERS = 16


def percentage_text(value: float) -> str:
    """The one way the admin writes a percentage: one decimal, `%` attached (`33.3%`)."""
    return f"{value:.1f}%"


def _count_text(value: int) -> str:
    return f"{value:,}"


def _cut(text: str, whole: str | None = None) -> SafeString:
    """`text` cut to NAME_MAX_CHARACTERS, with `whole` (by default `text`) in its tooltip."""
    shown = text if len(text) <= NAME_MAX_CHARACTERS else f"{text[: NAME_MAX_CHARACTERS - 1]}…"
    return format_html('<span title="{}">{}</span>', whole or text, shown)


def _counter_column(field: str, description: str) -> Callable[[Any, BulkSend], str]:
    @admin.display(description=description, ordering=field)
    def column(model_admin: Any, bulk_send: BulkSend) -> str:
        return _count_text(getattr(bulk_send, field))

    column.__name__ = field.removesuffix("_count")
    return column


@admin.register(BulkSend)
class BulkSendAdmin(admin.ModelAdmin):
    # Status, progress and the counters a send's row needs, narrow enough for 1,400 px with the
    # admin's navigation and filters open; its number, language, times and every counter are on
    # its page (and the dates above the list).
    list_display = [
        "template_and_organization",
        "status",
        "progress",
        "sent",
        "delivered",
        "read",
        "failed",
        "pending",
    ]
    list_display_links = ["template_and_organization"]
    list_filter = ["status", "kind", "created_at", "organization"]
    list_select_related = ["organization", "template", "phone_number"]
    date_hierarchy = "created_at"
    search_fields = ["id"]
    search_help_text = "A bulk send id (or part of it)."
    raw_id_fields = ["organization", "phone_number", "template", "created_by", "retry_of"]
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
                    "kind",
                    "status",
                    "status_reason",
                    "halted_at",
                    "halt_reason",
                    "retry_of",
                    "paused_at",
                    "task_id",
                    "message_list",
                    "totals_by_category",
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
                    "cooling_down",
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

    actions = ["cancel_sends", "pause_sends", "resume_sends", "retry_failed", "export_messages"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        # Cancelling, pausing and resuming are what "change" means for a send.
        return request.user.has_perm("bulksend.change_bulksend")

    @admin.action(
        description="Cancel selected sends (what has not gone out)", permissions=["operate"]
    )
    def cancel_sends(self, request: HttpRequest, queryset: QuerySet[BulkSend]) -> None:
        cancelled = sum(bulk_send_cancel(bulk_send=send) for send in queryset)
        self.message_user(request, f"Cancelled {cancelled} pending messages.", messages.SUCCESS)

    @admin.action(
        description="Pause selected sends (until resumed; nothing goes out meanwhile)",
        permissions=["operate"],
    )
    def pause_sends(self, request: HttpRequest, queryset: QuerySet[BulkSend]) -> None:
        paused = 0
        for send in queryset:
            try:
                paused += bulk_send_pause(bulk_send=send)
            except DomainError as refusal:  # finished, cancelled or halted
                self.message_user(request, f"Not paused {send.pk}: {refusal}", messages.ERROR)
        self.message_user(request, f"Paused {paused} sends.", messages.SUCCESS)

    @admin.action(
        description="Resume selected sends (paused, or halted by Meta)", permissions=["operate"]
    )
    def resume_sends(self, request: HttpRequest, queryset: QuerySet[BulkSend]) -> None:
        resumed = 0
        for send in queryset:
            try:
                resumed += bulk_send_unpause(bulk_send=send)
            except DomainError as refusal:
                # Meta still refusing the template or the account (resuming would only halt
                # again), a finished send, or Redis away.
                self.message_user(request, f"Not resumed {send.pk}: {refusal}", messages.ERROR)
        self.message_user(request, f"Resumed {resumed} sends.", messages.SUCCESS)

    @admin.action(
        description="Retry the failed recipients of selected sends (a new send each)",
        permissions=["operate"],
    )
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[BulkSend]) -> None:
        for send in queryset.filter(kind=BulkSendKind.BULK):
            try:
                outcome = bulk_send_retry(
                    bulk_send=send,
                    created_by=request.user if isinstance(request.user, User) else None,
                    scope=RetryScope.FAILED,
                )
            except DomainError as refused:
                self.message_user(request, f"Not retried {send.pk}: {refused}", messages.WARNING)
                continue
            retry = outcome.accepted.bulk_send
            if outcome.created:
                text = (
                    f"Retrying {retry.unique_recipients} failed recipients of {send.pk} "
                    f"as {retry.pk}."
                )
            else:
                text = f"{send.pk} is being retried already, as {retry.pk}."
            self.message_user(request, text, messages.SUCCESS)

    @admin.action(description="Export the selected send's messages as CSV")
    def export_messages(
        self, request: HttpRequest, queryset: QuerySet[BulkSend]
    ) -> StreamingHttpResponse | None:
        sends = list(queryset[:2])
        if len(sends) != 1:
            self.message_user(request, "Select one send to export.", messages.WARNING)
            return None
        return messages_csv_response(sends[0].pk, send_cancelled=sends[0].is_cancelled)

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

    sent = _counter_column("sent_count", "sent")
    delivered = _counter_column("delivered_count", "delivered")
    read = _counter_column("read_count", "read")
    failed = _counter_column("failed_count", "failed")
    pending = _counter_column("pending_count", "pending")

    @admin.display(description="template · org.", ordering="template__name")
    def template_and_organization(self, bulk_send: BulkSend) -> SafeString:
        # One cell of two lines: two columns would not fit beside the counters, nor would the
        # id, which is on the send's page (and search takes it).
        template = bulk_send.template
        return format_html(
            "{}<br>{}",
            _cut(template.name, f"{template.name} ({template.language})"),
            _cut(bulk_send.organization.name),
        )

    @admin.display(description="progress")
    def progress(self, bulk_send: BulkSend) -> SafeString:
        """Done (sent or failed) out of the unique recipients, as a bar and a percentage."""
        text = percentage_text(bulk_send.progress_percentage)
        return format_html(
            '<progress value="{}" max="100" title="{} of {}" style="width: 4em">{}</progress>'
            "&nbsp;{}",
            bulk_send.progress_percentage,
            text,
            _count_text(bulk_send.unique_recipients),
            text,
            text,
        )

    @admin.display(description="recipients cooling down (Meta's 131049)")
    def cooling_down(self, bulk_send: BulkSend) -> int:
        return send_recipients_cooling_down(bulk_send, now=timezone.now())

    @admin.display(description="messages by Meta's pricing category")
    def totals_by_category(self, bulk_send: BulkSend) -> SafeString:
        rows = message_totals_by_category(bulk_send.pk)
        if not rows:
            return format_html("{}", "-")
        return format_html(
            "<table><tr><th>category</th><th>messages</th><th>billable</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (row.category or "not priced yet", _count_text(row.messages), row.billable)
                    for row in rows
                ),
            ),
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
