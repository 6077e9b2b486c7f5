from __future__ import annotations

from datetime import date, datetime, time, timedelta

import django_filters
from django.db.models import QuerySet
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessagePhase, MessageStatus
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


# A message a worker has claimed is still pending to clients.
MESSAGE_STATUS_FILTER = {
    MessageStatus.PENDING: [MessageStatus.PENDING, MessageStatus.SENDING],
    MessageStatus.SENT: [MessageStatus.SENT],
    MessageStatus.DELIVERED: [MessageStatus.DELIVERED],
    MessageStatus.READ: [MessageStatus.READ],
    MessageStatus.FAILED: [MessageStatus.FAILED],
    MessageStatus.CANCELLED: [MessageStatus.CANCELLED],
}


# The phase each status filter's messages are in, when they are all in one: the page walks the
# (send, phase, id) index and rechecks the status only among those (messaging.MessagePhase).
MESSAGE_STATUS_PHASE = {
    MessageStatus.PENDING: MessagePhase.OPEN,
    MessageStatus.SENT: MessagePhase.HANDED,
    MessageStatus.DELIVERED: MessagePhase.HANDED,
    MessageStatus.READ: MessagePhase.HANDED,
    MessageStatus.CANCELLED: MessagePhase.CLOSED,
}


class MessageFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(status.value, status.value) for status in MESSAGE_STATUS_FILTER],
        method="filter_status",
    )

    class Meta:
        model = Message
        fields = ["status"]

    def filter_status(
        self, queryset: QuerySet[Message], name: str, value: str
    ) -> QuerySet[Message]:
        status = MessageStatus(value)
        if status == MessageStatus.PENDING:  # every open message is pending to clients
            return queryset.filter(phase=MessagePhase.OPEN)
        filtered = queryset.filter(status__in=MESSAGE_STATUS_FILTER[status])
        phase = MESSAGE_STATUS_PHASE.get(status)
        return filtered if phase is None else filtered.filter(phase=phase)
