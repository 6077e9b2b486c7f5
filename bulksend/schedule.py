"""Scheduled sends: `send_at` and quiet hours (`send_window`, bulksend.send_window) on send-bulk.

A scheduled send is a plain QUEUED send whose messages are due later: each message's
`next_attempt_at` is `send_at`, or its recipient's next window opening when the send has a window.
No worker polls for it and no delayed task has to survive: the claim leaves a message alone until
it is due, and the reaper (Celery beat, every few seconds) wakes every active send with due
messages and no live drain, so a send whose time comes after a worker or Redis restart starts all
the same. A wake-up that comes early anyway (an operator's resume, a stray task) does not start
the send before `send_at` (lifecycle.bulk_send_start). Cancel and pause see a send like any
other QUEUED one.

The estimate counts from `send_at` (and the quota's wait from then too), and, with a window, is
at least the time until the last recipients' window opens (`window_last_opens_at`, computed at
acceptance: a drain that finds a message outside its window later, after a long wait for the
quota, moves that message on without moving the figure).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from bulksend.models import BulkSend
from bulksend.send_window import RecipientZones, SendWindow, WindowOpenings, send_window_of

SEND_AT_MAX_AHEAD = timedelta(days=30)
# A send due sooner than this is woken by a delayed task (seconds late at most); a later one by
# the reaper when its first message is due (a delayed task is lost with Redis and redelivered
# after the broker's visibility timeout, so the reaper is the one to count on anyway).
SHORT_WAIT = timedelta(seconds=60)

SEND_AT_FORMAT = (
    "Enter send_at as an ISO 8601 date and time with its UTC offset, such as "
    "2026-03-01T09:30:00-03:00 or 2026-03-01T12:30:00Z."
)
SEND_AT_NO_OFFSET = (
    "send_at has no UTC offset: add one (-03:00, +01:00, Z) so the moment is not ambiguous."
)
SEND_AT_PAST = "send_at must be in the future."
SEND_AT_TOO_FAR = f"send_at must be at most {SEND_AT_MAX_AHEAD.days} days ahead."
SEND_WINDOW_SHAPE = (
    'Enter send_window as {"start": "HH:MM", "end": "HH:MM"} (24-hour local times of each '
    'recipient, e.g. {"start": "09:00", "end": "20:00"}; start after end wraps midnight).'
)
SEND_WINDOW_EMPTY = "send_window's start and end must differ."


class ScheduleError(ValueError):
    """A `send_at` or `send_window` that cannot be accepted; the text says why."""


def send_at_parse(value: object, *, now: datetime) -> datetime:
    """`send_at` as given: an ISO 8601 string with an offset, in the future, at most 30 days
    ahead of `now`."""
    if not isinstance(value, str):
        raise ScheduleError(SEND_AT_FORMAT)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ScheduleError(SEND_AT_FORMAT) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ScheduleError(SEND_AT_NO_OFFSET)
    if moment <= now:
        raise ScheduleError(SEND_AT_PAST)
    if moment - now > SEND_AT_MAX_AHEAD:
        raise ScheduleError(SEND_AT_TOO_FAR)
    return moment


def _wall_time(value: object) -> time:
    if not isinstance(value, str) or len(value) != 5 or value[2] != ":":
        raise ScheduleError(SEND_WINDOW_SHAPE)
    try:
        return time(int(value[:2]), int(value[3:]))
    except ValueError:
        raise ScheduleError(SEND_WINDOW_SHAPE) from None


def send_window_parse(value: object) -> SendWindow:
    """`send_window` as given: an object of exactly `start` and `end`, each `HH:MM`."""
    if not isinstance(value, dict) or set(value) != {"start", "end"}:
        raise ScheduleError(SEND_WINDOW_SHAPE)
    window = SendWindow(_wall_time(value["start"]), _wall_time(value["end"]))
    if window.start == window.end:
        raise ScheduleError(SEND_WINDOW_EMPTY)
    return window


@dataclass(frozen=True, slots=True)
class MessagesDue:
    """When each message of a send is due: None for at once, by recipient order."""

    due_at: list[datetime | None]
    first: datetime | None  # the earliest (None: some are due at once)
    last_window_opens_at: datetime | None  # the latest opening of a window, when one waits


def messages_due(
    phones: Sequence[str | None],
    *,
    send_at: datetime | None,
    window: SendWindow | None,
    fallback_timezone: str,
    now: datetime,
) -> MessagesDue | None:
    """The due moments of a send's messages; None when every message is due at once."""
    start = send_at if send_at is not None and send_at > now else now
    if window is None:
        if start <= now:
            return None
        return MessagesDue([start] * len(phones), start, None)
    openings = WindowOpenings(window, RecipientZones(fallback_timezone), start)
    due_at: list[datetime | None] = []
    for phone in phones:
        opening = openings.of(phone)
        due_at.append(opening if opening > now else None)
    waiting = [opening for opening in openings.by_zone.values() if opening > start]
    firsts = [moment for moment in due_at if moment is not None]
    return MessagesDue(
        due_at,
        first=min(firsts) if len(firsts) == len(due_at) and firsts else None,
        last_window_opens_at=max(waiting) if waiting else None,
    )


def schedule_estimate_minutes(
    minutes_from: Callable[[datetime], float],
    *,
    send_at: datetime | None,
    last_window_opens_at: datetime | None,
    now: datetime,
) -> float:
    """The estimate of a send that starts at `send_at` (or now, when that is past):
    `minutes_from(start)` (the quota's estimate from that moment) plus the wait until then, and
    at least the wait until the last window opens. Rounded up to a hundredth, as the quota's."""
    start = send_at if send_at is not None and send_at > now else now
    minutes = (start - now).total_seconds() / 60 + minutes_from(start)
    if last_window_opens_at is not None and last_window_opens_at > now:
        minutes = max(minutes, (last_window_opens_at - now).total_seconds() / 60)
    return math.ceil(round(minutes * 100, 6)) / 100


def bulk_send_schedule_estimate(
    bulk_send: BulkSend, minutes_from: Callable[[datetime], float], *, now: datetime
) -> float:
    """The status endpoint's estimate of an active send, its schedule counted."""
    if not bulk_send.is_active or (
        bulk_send.send_at is None and bulk_send.window_last_opens_at is None
    ):
        return minutes_from(now)
    return schedule_estimate_minutes(
        minutes_from,
        send_at=bulk_send.send_at,
        last_window_opens_at=bulk_send.window_last_opens_at,
        now=now,
    )


def schedule_reason(
    bulk_send: BulkSend, *, now: datetime, moment: Callable[[datetime], str]
) -> str:
    """Why an active send waits for its schedule ("" when it does not): its `send_at` to come,
    recipients outside their window. Computed when read, so it is gone by itself once past;
    `moment` writes a date and time as the API does."""
    if not bulk_send.is_active or not bulk_send.pending_count:
        return ""
    reasons = []
    if bulk_send.send_at is not None and bulk_send.send_at > now:
        reasons.append(f"Scheduled: nothing goes out before {moment(bulk_send.send_at)}.")
    window = send_window_of(bulk_send)
    last = bulk_send.window_last_opens_at
    if window is not None and last is not None and last > now:
        reasons.append(
            f"Quiet hours: messages go out from {window.start:%H:%M} to {window.end:%H:%M} in "
            "each recipient's local time; those outside it wait for their window, the last of "
            f"which opens at {moment(last)}."
        )
    return " ".join(reasons)
