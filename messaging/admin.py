"""Admin for messages and contacts.

`messaging_message` is the one table that grows without bound (a row per recipient of every send),
so its admin never counts it and searches only through its indexes. Messages are read-only here:
a save from a form writes back every column it loaded, and would undo a status a worker or a
webhook set in the meantime, breaking the send's exact counters.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.core.paginator import Paginator
from django.db import connections
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.functional import cached_property
from django.utils.html import format_html
from django.utils.safestring import SafeString

from messaging.contact_admin import ContactForm
from messaging.models import (
    Contact,
    MarketingCooldown,
    Message,
    Suppression,
    SuppressionSource,
)
from mindo.phones import phone_normalize

# What an operator types to find a number: digits, maybe a `+`, maybe written with separators.
PHONE_SEARCH = re.compile(r"\+?[0-9][0-9 ().-]*")


class EstimatedCountPaginator(Paginator):
    """A paginator whose `count` never runs COUNT(*) over a whole table.

    - Unfiltered, the count is PostgreSQL's own estimate of the table's rows: the planner's,
      which scales `pg_class.reltuples` to the table's current size, so it stays close between
      ANALYZEs and costs no scan. The admin's total is then approximate, which is fine for a
      table an operator searches rather than browses.
    - Filtered (a search, a status), the count stops at `count_cap` + 1 rows, so a filter that
      matches millions costs a bounded scan; the total then reads `count_cap` + 1.
    """

    count_cap = 10_000

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        if not isinstance(queryset, QuerySet):
            return len(queryset)
        if not queryset.query.where:
            self.count_note = (
                "The total is PostgreSQL's estimate of the table's rows, not a count: "
                "the table is too large to count on every page."
            )
            return self._estimated_rows(queryset)
        counted = int(queryset.order_by()[: self.count_cap + 1].count())
        if counted > self.count_cap:
            self.count_note = (
                f"More than {self.count_cap:,} messages match: counting stops there, "
                "so the total and the last page are not exact."
            )
        return counted

    # Said under the list when `count` is not an exact count (the changelist template shows it).
    count_note = ""

    @staticmethod
    def _estimated_rows(queryset: QuerySet[Any]) -> int:
        connection = connections[queryset.db]
        table = connection.ops.quote_name(queryset.model._meta.db_table)
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (FORMAT JSON) SELECT 1 FROM {table}")
            row = cursor.fetchone()
        plan = json.loads(row[0]) if row and isinstance(row[0], str) else (row[0] if row else [])
        return max(0, int(plan[0]["Plan"]["Plan Rows"])) if plan else 0


def phone_prefix_filter(prefix: str) -> Q:
    """Phones starting with `prefix`, written so the btree index on the phone can serve it.

    LIKE 'x%' only uses a plain btree index under the C collation; a range does under any, and
    the LIKE beside it keeps the result exact whatever the collation orders.
    """
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return Q(
        recipient_phone__gte=prefix,
        recipient_phone__lt=upper,
        recipient_phone__startswith=prefix,
    )


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "recipient",
        "status",
        "wamid",
        "bulk_send",
        "created_at",
        "sent_at",
        "delivered_at",
        "read_at",
        "failed_at",
        "error_code",
        "pricing",
    ]
    list_filter = ["status"]
    list_select_related = ["bulk_send"]
    ordering = ["-id"]
    paginator = EstimatedCountPaginator
    # Both would count: the unfiltered total and the per-filter facet counts.
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    # Searched by get_search_results below, through the indexes; listed so the box shows.
    search_fields = ["=wamid", "^recipient_phone"]
    search_help_text = (
        "A wamid (exact), the start of a phone number (+54911...), or a bulk send id."
    )
    raw_id_fields = ["bulk_send", "business_account"]
    fieldsets = [
        (
            None,
            {"fields": ["bulk_send", "business_account", "recipient_phone", "recipient_user_id"]},
        ),
        ("Content", {"fields": ["variables", "button_variables"]}),
        (
            "State",
            {
                "fields": [
                    "status",
                    "wamid",
                    "attempts",
                    "created_at",
                    "sent_at",
                    "delivered_at",
                    "read_at",
                    "failed_at",
                    "error_code",
                    "error_message",
                ]
            },
        ),
        (
            "Pricing (from Meta's status webhooks)",
            {"fields": ["pricing_category", "pricing_type", "pricing_model", "pricing_billable"]},
        ),
    ]
    # Everything shown is read-only: state moves only through the statements that move it.
    readonly_fields = flatten_fieldsets(fieldsets)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    @admin.display(description="category · type")
    def pricing(self, message: Message) -> SafeString | str:
        """How Meta bills the message, once a status with `pricing` came: one narrow cell."""
        if not message.pricing_category and not message.pricing_type:
            return "-"
        return format_html("{}<br>{}", message.pricing_category or "-", message.pricing_type or "-")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Message], search_term: str
    ) -> tuple[QuerySet[Message], bool]:
        """One indexed lookup chosen by the shape of the term, never an OR across columns.

        The default search would compare UPPER(column), which no index serves, and OR the
        fields together, which turns any search into a scan of the whole table.
        """
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            # First: a 32-digit id would also pass for a phone, and no phone has 32 digits.
            return queryset.filter(bulk_send_id=uuid.UUID(term)), False
        except ValueError:
            pass
        if PHONE_SEARCH.fullmatch(term):
            return queryset.filter(phone_prefix_filter("+" + re.sub(r"\D", "", term))), False
        return queryset.filter(wamid=term), False


@admin.register(Contact)
class ContactAdmin(admin.ModelAdmin):
    form = ContactForm
    list_display = [
        "phone",
        "name",
        "email",
        "contact_list",
        "source",
        "organization",
        "created_at",
    ]
    list_filter = ["source", "organization"]
    list_select_related = ["organization", "contact_list"]
    search_fields = ["^phone", "name", "email"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["contact_list"]


class SuppressionForm(forms.ModelForm):
    class Meta:
        model = Suppression
        fields = ["organization", "phone", "source", "reason"]

    def clean_phone(self) -> str:
        phone = phone_normalize(self.cleaned_data["phone"])
        if phone is None:
            raise forms.ValidationError("Enter a phone number in international format.")
        return phone


@admin.register(Suppression)
class SuppressionAdmin(admin.ModelAdmin):
    """The organizations' suppression lists: operators search, add and delete entries."""

    form = SuppressionForm
    list_display = ["phone", "organization", "source", "reason", "created_at"]
    list_filter = ["source", "organization"]
    search_fields = ["^phone", "reason"]
    fields = ["organization", "phone", "source", "reason", "created_at"]
    readonly_fields = ["created_at"]
    list_select_related = ["organization"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"source": SuppressionSource.ADMIN}


@admin.register(MarketingCooldown)
class MarketingCooldownAdmin(admin.ModelAdmin):
    """Recipients Meta's per-user marketing limit (131049) holds, and until when."""

    list_display = ["phone", "business_account", "strikes", "until", "updated_at"]
    search_fields = ["^phone"]
    list_select_related = ["business_account"]
    readonly_fields = ["business_account", "phone", "strikes", "until", "updated_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
