"""The portfolio's 24 h unique-recipient quota and the time a send will take.

A business portfolio may message at most its tier's number of unique recipients in any moving
24 h window, shared by all its numbers. A recipient holds a place in the window when a message
to them was sent in the last 24 h outside their customer-service window with the sending
number, or when a message to them still waits in an active send (it will be sent, so its place
is already spoken for) and their window with that send's number is not open now. A recipient
who already holds a place costs no new quota, nor does one whose window is open (see
`window_sql`, which holds the rule as SQL).
"""

from __future__ import annotations

import functools
import math
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connection
from django.db.models import OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from bulksend.models import ACTIVE_STATUSES, BulkSend
from bulksend.window_sql import (
    HELD_COUNT_SQL,
    NTH_EXPIRY_SQL,
    QUOTA_FOR_PHONES_SQL,
    QUOTA_SQL,
    WINDOW,
    WINDOW_SIZE_SQL,
    window_params,
    window_sql,
)
from templates_app.models import WhatsAppBusinessAccount

# No send: the held places of a whole portfolio (`window_usage`) leave none out.
NO_SEND = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class QuotaInfo:
    """The contract's `quota_info`. `quota_available` is the room left once this send is counted,
    so a fresh 1,000 tier sending to 3 shows 997; `quota_total` and `quota_available` are None on
    an unlimited tier."""

    can_send: bool
    quota_needed: int
    quota_available: int | None
    quota_total: int | None
    tier: str
    # Recipients of this send that must wait for the window to free room, and when it starts to.
    overflow: int
    room_frees_at: datetime | None


def quota_for_send(
    *, bulk_send: BulkSend, account: WhatsAppBusinessAccount, now: datetime
) -> QuotaInfo:
    """Quota figures for `bulk_send`'s unsent messages against all else its portfolio holds;
    recipients whose service window with the send's number is open now need none."""
    params = window_params(account_id=account.pk, now=now)
    params.update(send=bulk_send.pk, number=bulk_send.phone_number_id)
    with connection.cursor() as cursor:
        cursor.execute(window_sql(QUOTA_SQL), params)
        held, needed = cursor.fetchone()
    return _quota_info(account, held=held, needed=needed, now=now)


def quota_for_phones(
    *, account: WhatsAppBusinessAccount, number_id: int, phones: list[str], now: datetime
) -> QuotaInfo:
    """`quota_for_send`'s figures for a send of `phones` (unique, E.164) by the number
    `number_id` that is not stored: a dry run's."""
    params = window_params(account_id=account.pk, now=now)
    params.update(send=NO_SEND, number=number_id, phones="\n".join(phones))
    with connection.cursor() as cursor:
        cursor.execute(window_sql(QUOTA_FOR_PHONES_SQL), params)
        held, needed = cursor.fetchone()
    return _quota_info(account, held=held, needed=needed, now=now)


def _quota_info(
    account: WhatsAppBusinessAccount, *, held: int, needed: int, now: datetime
) -> QuotaInfo:
    total = account.quota_total
    if total is None:
        return QuotaInfo(True, needed, None, None, account.messaging_limit_tier, 0, None)
    room = max(total - held, 0)
    overflow = max(needed - room, 0)
    return QuotaInfo(
        can_send=overflow == 0,
        quota_needed=needed,
        quota_available=max(room - needed, 0),
        quota_total=total,
        tier=account.messaging_limit_tier,
        overflow=overflow,
        room_frees_at=(
            window_room_frees_at(account_id=account.pk, overflow=overflow, total=total, now=now)
            if overflow
            else None
        ),
    )


@dataclass(frozen=True, slots=True)
class WindowUsage:
    """A portfolio's 24 h window as business-accounts shows it: `held` places (recipients sent to
    in the last 24 h or waiting in an active send) of `limit` (None: unlimited tier)."""

    limit: int | None
    held: int

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.held, 0)

    @property
    def usage_percentage(self) -> float | None:
        if self.limit is None:
            return None
        return round(self.held / self.limit * 100, 2)

    @property
    def can_send(self) -> bool:
        return self.remaining is None or self.remaining > 0


def window_usage(account: WhatsAppBusinessAccount, now: datetime) -> WindowUsage:
    """How much of the portfolio's window is taken: the count `quota_for_send` starts from."""
    params = window_params(account_id=account.pk, now=now)
    params["send"] = NO_SEND
    with connection.cursor() as cursor:
        cursor.execute(window_sql(HELD_COUNT_SQL), params)
        (held,) = cursor.fetchone()
    return WindowUsage(limit=account.quota_total, held=int(held))


def window_room_frees_at(*, account_id: int, overflow: int, total: int, now: datetime) -> datetime:
    """When the portfolio's window will have room for `overflow` more recipients: for the
    estimate of a send accepted beyond the room left, and for when a drain tries the recipients
    it had to put back (`overflow=1`: as soon as one place frees, the drain admits what fits).

    Places held by sent messages free up 24 h after each recipient's last send. Beyond those, each
    further `total` recipients need another full window (an approximation: places held by waiting
    or in-flight messages free up 24 h after they go out, which is soon after now).
    """
    params = window_params(account_id=account_id, now=now)
    params["offset"] = overflow - 1
    with connection.cursor() as cursor:
        cursor.execute(window_sql(NTH_EXPIRY_SQL), params)
        row = cursor.fetchone()
        if row is not None:
            return row[0] + WINDOW
        cursor.execute(window_sql(WINDOW_SIZE_SQL), params)
        (expiring,) = cursor.fetchone()
    windows = math.ceil((overflow - expiring) / total)
    return now + WINDOW * windows


def _earlier_active_sends(phone_number_id: Any, created_at: Any, pk: Any) -> QuerySet[BulkSend]:
    """Active sends on a number created before a send: values, or OuterRefs in a subquery. A
    paused one takes none of the number's throughput until it is resumed."""
    return (
        BulkSend.objects.filter(
            phone_number_id=phone_number_id,
            status__in=ACTIVE_STATUSES,
            created_at__lt=created_at,
            paused_at__isnull=True,
        )
        .exclude(pk=pk)
        .order_by()
    )


@functools.cache
def _queued_ahead_expression() -> Coalesce:
    """The subquery of `with_queued_ahead`, built once per process: building it costs about as
    much as compiling the rest of the status read's query, and annotating a queryset with it
    copies it (Django resolves a copy against each queryset), so one can serve every request."""
    earlier = (
        _earlier_active_sends(OuterRef("phone_number_id"), OuterRef("created_at"), OuterRef("pk"))
        .values("phone_number_id")
        .annotate(pending=Sum("pending_count"))
        .values("pending")
    )
    return Coalesce(Subquery(earlier), 0)


def with_queued_ahead(queryset: QuerySet[BulkSend]) -> QuerySet[BulkSend]:
    """`queryset` with each send's `queued_ahead` in the same statement: the status endpoint then
    reads a send and its estimate in one round trip."""
    return queryset.annotate(queued_ahead_count=_queued_ahead_expression())


def queued_ahead_on_number(phone_number_id: int, now: datetime) -> int:
    """Messages of the active sends on a number now: what a send made now would wait for."""
    ahead = _earlier_active_sends(phone_number_id, now, NO_SEND).aggregate(
        pending=Sum("pending_count")
    )["pending"]
    return int(ahead or 0)


def queued_ahead(bulk_send: BulkSend) -> int:
    """Messages of earlier active sends on the same number: they share its throughput first."""
    annotated = getattr(bulk_send, "queued_ahead_count", None)  # see with_queued_ahead
    if annotated is not None:
        return int(annotated)
    earlier = _earlier_active_sends(bulk_send.phone_number_id, bulk_send.created_at, bulk_send.pk)
    ahead = earlier.aggregate(pending=Sum("pending_count"))["pending"]
    return int(ahead or 0)


def estimate_minutes(
    *,
    pending: int,
    ahead: int,
    rate_per_second: int,
    overflow: int = 0,
    room_frees_at: datetime | None = None,
    now: datetime,
) -> float:
    """Minutes until the last pending message goes out, rounded up to a hundredth of a minute
    (0.6 s: finer would promise more than the wake-up of a worker can keep).

    1. Everything queued on the number before this send goes first, at the number's rate.
    2. Recipients beyond the quota cannot start before the window frees room for them.
    """
    seconds = (ahead + pending) / rate_per_second
    if overflow and room_frees_at is not None:
        wait = max((room_frees_at - now).total_seconds(), 0.0)
        seconds = max(seconds, wait + min(overflow, pending) / rate_per_second)
    if pending == 0:
        return 0.0
    return math.ceil(round(seconds / 60 * 100, 6)) / 100


@dataclass(frozen=True, slots=True)
class QuotaWait:
    """Recipients of an active send that wait for the portfolio's 24 h window, and the moment
    the window has room for all of them."""

    recipients: int
    until: datetime


def bulk_send_quota_wait(bulk_send: BulkSend, now: datetime) -> QuotaWait | None:
    """Whether `bulk_send` waits for the quota window, from the figures taken when it was accepted
    (the ones its estimate uses): the status endpoint reads no message to say so.

    The trade-off: the drain admits recipients as it claims them, not in the order sends were
    accepted, so when several sends of one portfolio wait at once another may take room this
    one was counted on; it then waits past `until` without saying so.
    """
    if not bulk_send.is_active or not bulk_send.pending_count or not bulk_send.quota_overflow:
        return None
    until = bulk_send.quota_frees_at
    if until is None or until <= now:
        return None
    return QuotaWait(min(bulk_send.quota_overflow, bulk_send.pending_count), until)


def bulk_send_estimate_minutes(bulk_send: BulkSend, *, now: datetime | None = None) -> float:
    """The estimate shown on the status endpoint: recomputed from what is left while active,
    counting from `now` (the present by default; a scheduled send's start, bulksend.schedule)."""
    if not bulk_send.is_active:
        return bulk_send.estimated_time_minutes
    return estimate_minutes(
        pending=bulk_send.pending_count,
        ahead=queued_ahead(bulk_send),
        rate_per_second=bulk_send.phone_number.throughput_per_second,
        overflow=bulk_send.quota_overflow,
        room_frees_at=bulk_send.quota_frees_at,
        now=now or timezone.now(),
    )
