"""Quiet hours: a send's `send_window`, the hours of each recipient's own day it may go out in.

A window is two wall-clock times, `start` included and `end` excluded, in the recipient's local
time; it wraps midnight when `start` is after `end` (22:00-06:00 is the night). A recipient's time
zone comes from the phone number's country and area (`phonenumbers`); where the number maps to
zones that disagree (a US toll-free number, a Spanish or Russian mobile) the organization's
`timezone` stands in for it, and so it does where the number maps to none.

A message outside its window waits, untried and `pending`, until the window's next opening: the
moment is computed per message when the send is accepted (its `next_attempt_at`: the claim and the
reaper already leave such a message alone until then), and again when a drain claims it outside
its window (a long wait for the quota, a send resumed late): the drain gives it back until then.

Time zones are read per prefix of the number and openings per zone, each once per call, so a
100,000-recipient send costs a dictionary lookup per recipient (bench/send_window.py).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from phonenumbers.timezone import UNKNOWN_TIMEZONE, time_zones_for_number
from phonenumbers.tzdata import TIMEZONE_DATA, TIMEZONE_LONGEST_PREFIX

from bulksend.models import BulkSend

# Two moments of the year a zone's offsets are compared at, to tell whether zones agree: one
# in each hemisphere's summer.
_SEASONS = (datetime(2026, 1, 15, 12, tzinfo=UTC), datetime(2026, 7, 15, 12, tzinfo=UTC))
# A zone's offset changes at most once within this step (DST changes are months apart): finding
# the changes near a moment samples it this often and narrows down between samples.
_SAMPLE_STEP = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Local wall-clock hours a message may go out in: `start` <= t < `end`, across midnight
    when `start` > `end`. Equal times are refused when the window is read (it would be empty or
    the whole day: either way no window)."""

    start: time
    end: time

    @property
    def wraps(self) -> bool:
        return self.start > self.end

    def contains(self, moment: datetime, zone: ZoneInfo) -> bool:
        local = moment.astimezone(zone).time().replace(tzinfo=None)
        if self.wraps:
            return local >= self.start or local < self.end
        return self.start <= local < self.end

    def next_opening(self, moment: datetime, zone: ZoneInfo) -> datetime:
        """The first instant at or after `moment` inside the window in `zone`: `moment` itself
        when it is inside.

        The window opens either when the local clock reaches `start` (once a day; twice on the
        day a clock goes back, none on the day it jumps over it) or when a change of offset makes
        the clock jump into the window. Both kinds of instant near `moment` are candidates, and
        the earliest one inside the window wins: right across DST changes, any zone, any window.
        """
        if self.contains(moment, zone):
            return moment
        today = moment.astimezone(zone).date()
        candidates = [
            instant
            for day in (today + timedelta(days=offset) for offset in range(-1, 3))
            for instant in _wall_clock_instants(day, self.start, zone)
        ]
        candidates += _offset_changes(zone, moment, moment + timedelta(days=3))
        return min(c for c in candidates if c >= moment and self.contains(c, zone))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def _wall_clock_instants(day: date, wall: time, zone: ZoneInfo) -> list[datetime]:
    """The instants (UTC) whose local time is `wall` on `day`, both readings of an ambiguous
    one; for a time a clock jumps over, the two readings land either side of the gap, and the
    jump itself is a candidate of `_offset_changes`."""
    return [
        datetime.combine(day, wall, tzinfo=zone).replace(fold=fold).astimezone(UTC)
        for fold in (0, 1)
    ]


def _offset_changes(zone: ZoneInfo, since: datetime, until: datetime) -> list[datetime]:
    """The instants in [since, until] at which `zone`'s UTC offset changes (whole seconds, as
    every zone's changes are)."""

    def offset(second: int) -> timedelta | None:
        return datetime.fromtimestamp(second, UTC).astimezone(zone).utcoffset()

    changes = []
    step = int(_SAMPLE_STEP.total_seconds())
    last = math.ceil(until.timestamp())
    left = math.floor(since.timestamp())
    while left < last:
        right = min(left + step, last)
        if offset(left) != offset(right):
            low, high = left, right  # offset(low) differs from offset(high)
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == offset(low):
                    low = middle
                else:
                    high = middle
            changes.append(datetime.fromtimestamp(high, UTC))
        left = right
    return changes


# --- recipients' time zones ----------------------------------------------------------------


@functools.cache
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _zones_agree(names: Iterable[str]) -> bool:
    """Whether the zones keep one offset all year (Jersey and London; Canary and Madrid do
    not)."""
    offsets = {
        tuple(season.astimezone(_zone(name)).utcoffset() for season in _SEASONS) for name in names
    }
    return len(offsets) == 1


def _zone_names_of(phone: str) -> tuple[str, ...]:
    """`phonenumbers`' zones for an E.164 number; for a number it does not know (its ranges
    learn new allocations late), the zones of the number's country."""
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    names = tuple(n for n in time_zones_for_number(number) if n != UNKNOWN_TIMEZONE)
    return names or TIMEZONE_DATA.get(str(number.country_code), ())


def _data_prefix(phone: str) -> str:
    """The longest prefix of an E.164 number that `phonenumbers` maps zones by ("" if none)."""
    digits = phone[1:]
    for length in range(min(TIMEZONE_LONGEST_PREFIX, len(digits)), 0, -1):
        if digits[:length] in TIMEZONE_DATA:
            return digits[:length]
    return ""


class RecipientZones:
    """Recipients' time zones, read once per number prefix (the longest one `phonenumbers`
    maps zones by): the numbers of a send share a few hundred prefixes at most."""

    def __init__(self, fallback: str) -> None:
        self.fallback = _zone(fallback)
        # By the number's first digits (one lookup a recipient), then by the prefix
        # `phonenumbers` maps (the first number read under it stands for all of them).
        self.by_key: dict[str, ZoneInfo] = {}
        self.by_prefix: dict[str, ZoneInfo] = {}

    def zone_of(self, phone: str | None) -> ZoneInfo:
        if not phone:
            return self.fallback  # a recipient known only by Meta's user id
        key = phone[: 1 + TIMEZONE_LONGEST_PREFIX]
        zone = self.by_key.get(key)
        if zone is None:
            prefix = _data_prefix(phone)
            zone = self.by_prefix.get(prefix)
            if zone is None:
                zone = self.by_prefix[prefix] = self._read(phone)
            self.by_key[key] = zone
        return zone

    def _read(self, phone: str) -> ZoneInfo:
        names = _zone_names_of(phone)
        if not names:
            return self.fallback
        if len(names) == 1 or _zones_agree(names):
            return _zone(names[0])
        # The number does not tell which: the organization's zone stands in for it.
        return self.fallback


class WindowOpenings:
    """Each recipient's next opening of `window` from one moment, computed once per zone."""

    def __init__(self, window: SendWindow, zones: RecipientZones, moment: datetime) -> None:
        self.window = window
        self.zones = zones
        self.moment = moment
        self.by_zone: dict[ZoneInfo, datetime] = {}

    def of(self, phone: str | None) -> datetime:
        zone = self.zones.zone_of(phone)
        opening = self.by_zone.get(zone)
        if opening is None:
            opening = self.by_zone[zone] = self.window.next_opening(self.moment, zone)
        return opening


def send_window_of(bulk_send: BulkSend) -> SendWindow | None:
    if bulk_send.send_window_start is None or bulk_send.send_window_end is None:
        return None
    return SendWindow(bulk_send.send_window_start, bulk_send.send_window_end)
