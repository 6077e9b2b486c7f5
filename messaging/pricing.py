"""What Meta bills for a send's messages, from the `pricing` of their status webhooks."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from django.db.models import Count, Q

from messaging.models import Message


@dataclass(frozen=True, slots=True)
class CategoryTotal:
    # Meta's pricing category (marketing, utility, authentication, service...); None for the
    # messages no priced status has come for yet (pending, failed, or webhooks still on the way).
    category: str | None
    messages: int
    # Of those, how many Meta said it bills (`billable`, or a `regular` pricing type).
    billable: int


def message_totals_by_category(bulk_send_id: uuid.UUID) -> list[CategoryTotal]:
    """The send's messages counted by pricing category, in one GROUP BY, largest first: for the
    admin's send page and for exports."""
    rows = (
        Message.objects.filter(bulk_send_id=bulk_send_id)
        .values("pricing_category")
        .annotate(
            messages=Count("id"),
            billable=Count(
                "id",
                filter=Q(pricing_billable=True)
                | Q(pricing_billable__isnull=True, pricing_type="regular"),
            ),
        )
        .order_by("-messages", "pricing_category")
    )
    return [
        CategoryTotal(row["pricing_category"], row["messages"], row["billable"]) for row in rows
    ]
