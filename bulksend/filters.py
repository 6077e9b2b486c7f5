from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessagePhase, MessageStatus, stored_statuses_of
from mindo.query_params import PositiveIntegerFilter


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


class BulkSendFilter(django_filters.FilterSet):
    """Dates are whole days in UTC and both bounds include their day."""

    status = django_filters.ChoiceFilter(choices=BulkSendStatus.choices)
    template = PositiveIntegerFilter(field_name="template_id")
    created_after = django_filters.DateFilter(method="filter_created_after")
    created_before = django_filters.DateFilter(method="filter_created_before")

    class Meta:
        model = BulkSend
        fields = ["status", "template", "created_after", "created_before"]

    def filter_created_after(
        self, queryset: QuerySet[BulkSend], name: str, value: date
    ) -> QuerySet[BulkSend]:
        return queryset.filter(created_at__gte=_day_start(value))

    def filter_created_before(
        self, queryset: QuerySet[BulkSend], name: str, value: date
    ) -> QuerySet[BulkSend]:
        if value == date.max:  # the calendar's last day bounds nothing
            return queryset
        return queryset.filter(created_at__lt=_day_start(value + timedelta(days=1)))


# The statuses a client may filter by: a message a worker has claimed is still pending to them.
PUBLIC_MESSAGE_STATUSES = [status for status in MessageStatus if status != MessageStatus.SENDING]


class MessageFilter(django_filters.FilterSet):
    """Validates `status`; the view filters by it, knowing whether the send is cancelled (its
    `pending` messages are cancelled to a client then: messaging.models.public_status_of)."""

    status = django_filters.ChoiceFilter(
        choices=[(status.value, status.value) for status in PUBLIC_MESSAGE_STATUSES],
        method="filter_status",
    )

    class Meta:
        model = Message
        fields = ["status"]

    def filter_status(
        self, queryset: QuerySet[Message], name: str, value: str
    ) -> QuerySet[Message]:
        return queryset


# The phase of the messages in each stored status, where it is one (a failed message is HANDED
# when Meta had given it a wamid, CLOSED when not): messaging.MessagePhase.
STATUS_PHASE = {
    MessageStatus.PENDING: MessagePhase.OPEN,
    MessageStatus.SENDING: MessagePhase.OPEN,
    MessageStatus.SENT: MessagePhase.HANDED,
    MessageStatus.DELIVERED: MessagePhase.HANDED,
    MessageStatus.READ: MessagePhase.HANDED,
    MessageStatus.CANCELLED: MessagePhase.CLOSED,
}


def messages_with_public_status(
    messages: QuerySet[Message], public: str | None, *, send_cancelled: bool
) -> QuerySet[Message]:
    """`messages` of one send that a client sees as `public` (all when None). When they are all
    in one phase, the page walks the (send, phase, id) index and rechecks the status only among
    those; otherwise it walks the send's (send, id) index."""
    if not public:
        return messages
    stored = stored_statuses_of(public, send_cancelled=send_cancelled)
    filtered = messages.filter(status__in=stored)
    phases = {STATUS_PHASE.get(MessageStatus(status)) for status in stored}
    if len(phases) == 1 and None not in phases:
        return filtered.filter(phase=phases.pop())
    return filtered
