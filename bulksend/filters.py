from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import QueryDict
from django.utils import timezone
from django_filters.utils import translate_validation

from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessagePhase, MessageStatus, stored_statuses_of
from mindo.query_params import PositiveIntegerFilter, positive_int_parse


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=timezone.get_current_timezone())


def _created_until(day: date) -> datetime | None:
    """The exclusive bound of sends created up to `day` included (None: the calendar's last
    day bounds nothing)."""
    return None if day == date.max else _day_start(day + timedelta(days=1))


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
        until = _created_until(value)
        return queryset if until is None else queryset.filter(created_at__lt=until)


@dataclass(frozen=True, slots=True)
class SendsFilter:
    """The sends list's filters, validated (bulksend.filters.BulkSendFilter): None filters
    nothing. `created_from` includes its moment, `created_until` does not."""

    status: str | None = None
    template: int | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None

    def shape(self) -> tuple[bool, bool, bool, bool]:
        return (
            self.status is not None,
            self.template is not None,
            self.created_from is not None,
            self.created_until is not None,
        )

    def values(self, organization_id: int) -> dict[str, Any]:
        given = {
            "status": self.status,
            "template": self.template,
            "created_from": self.created_from,
            "created_until": self.created_until,
        }
        return {
            "organization": organization_id,
            **{k: v for k, v in given.items() if v is not None},
        }


def sends_filter_of(query: QueryDict) -> SendsFilter:
    """The sends list's filters in `query`, as BulkSendFilter validates and applies them; its
    400 for a value it refuses. The usual values (a status, an id, ISO dates) are read without
    building its form."""
    given = {name: query.get(name) or None for name in BulkSendFilter.base_filters}
    try:
        status = given["status"]
        if status is not None and status not in BulkSendStatus.values:
            raise ValueError(status)
        template = given["template"]
        values: dict[str, Any] = {
            "status": status,
            "template": None if template is None else positive_int_parse(template),
            "created_after": _iso_day(given["created_after"]),
            "created_before": _iso_day(given["created_before"]),
        }
    except ValueError:
        filterset = BulkSendFilter(query, queryset=BulkSend.objects.none())
        if not filterset.is_valid():
            raise translate_validation(filterset.errors) from None
        values = {name: filterset.form.cleaned_data.get(name) for name in given}
    after: date | None = values["created_after"] or None
    before: date | None = values["created_before"] or None
    return SendsFilter(
        status=values["status"] or None,
        template=values["template"] or None,
        created_from=None if after is None else _day_start(after),
        created_until=None if before is None else _created_until(before),
    )


_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _iso_day(text: str | None) -> date | None:
    """A YYYY-MM-DD day (ValueError for anything else: BulkSendFilter's form reads it)."""
    if text is None:
        return None
    if not _ISO_DAY.fullmatch(text):
        raise ValueError(text)
    return date.fromisoformat(text)


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
