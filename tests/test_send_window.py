"""Quiet hours (bulksend.send_window): recipients' time zones from their numbers, and the next
opening of a window in any zone, across midnight and DST changes; the parsing of `send_at` and
`send_window` (bulksend.schedule). Pure: no database."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bulksend.schedule import (
    SEND_AT_FORMAT,
    SEND_AT_NO_OFFSET,
    SEND_AT_PAST,
    SEND_AT_TOO_FAR,
    SEND_WINDOW_EMPTY,
    SEND_WINDOW_SHAPE,
    ScheduleError,
    messages_due,
    schedule_estimate_minutes,
    send_at_parse,
    send_window_parse,
)
from bulksend.send_window import RecipientZones, SendWindow

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
FALLBACK = "America/Bogota"
NEW_YORK = ZoneInfo("America/New_York")
DAY = SendWindow(time(9), time(20))
NIGHT = SendWindow(time(22), time(6))


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# --- time zones ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "zone"),
    [
        ("+12125551234", "America/New_York"),  # US by area code: New York
        ("+13105551234", "America/Los_Angeles"),  # Los Angeles
        ("+17735551234", "America/Chicago"),  # Chicago
        ("+14165551234", "America/Toronto"),  # Canada shares +1
        ("+18005551234", FALLBACK),  # toll-free: every +1 zone, the number does not tell
        ("+525512345678", "America/Mexico_City"),
        ("+526641234567", "America/Tijuana"),  # Mexico has several zones; Tijuana's area tells
        ("+5511987654321", "America/Sao_Paulo"),
        ("+556832123456", "America/Rio_Branco"),  # Brazil's Acre
        ("+5492235961983", "America/Buenos_Aires"),
        # The contract's own example, a range `phonenumbers` does not know yet: the country's zone.
        ("+5491199887766", "America/Buenos_Aires"),
        ("+34612345678", FALLBACK),  # Spain's mobiles: Madrid or the Canaries, an hour apart
        ("+79161234567", FALLBACK),  # Russia's mobiles: eleven zones
    ],
)
def test_a_recipients_zone_comes_from_the_country_and_area_or_the_organizations(
    phone: str, zone: str
) -> None:
    assert RecipientZones(FALLBACK).zone_of(phone) == ZoneInfo(zone)


def test_zones_that_keep_one_offset_all_year_are_one_zone() -> None:
    """A UK mobile maps to London, Jersey, Guernsey and Man: the same clock, so no fallback."""
    zone = RecipientZones(FALLBACK).zone_of("+447911123456")

    assert zone != ZoneInfo(FALLBACK)
    for moment in (utc(2026, 1, 15, 12), utc(2026, 7, 15, 12)):
        assert (
            moment.astimezone(zone).utcoffset()
            == moment.astimezone(ZoneInfo("Europe/London")).utcoffset()
        )


def test_zones_are_read_once_per_prefix() -> None:
    zones = RecipientZones(FALLBACK)
    for n in range(1000):
        zones.zone_of(f"+1212555{n:04d}")
        zones.zone_of(f"+54911{n:08d}")

    assert len(zones.by_prefix) == 2


# --- the next opening ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("window", "moment", "opening"),
    [
        (DAY, utc(2026, 1, 15, 15), utc(2026, 1, 15, 15)),  # 10:00 in New York: inside, now
        (DAY, utc(2026, 1, 15, 12), utc(2026, 1, 15, 14)),  # 07:00: today at 09:00
        (DAY, utc(2026, 1, 16, 1), utc(2026, 1, 16, 14)),  # 20:00: tomorrow at 09:00
        (DAY, utc(2026, 1, 16, 0, 59), utc(2026, 1, 16, 0, 59)),  # 19:59: still inside
        (NIGHT, utc(2026, 1, 15, 15), utc(2026, 1, 16, 3)),  # 10:00: tonight at 22:00
        (NIGHT, utc(2026, 1, 16, 4), utc(2026, 1, 16, 4)),  # 23:00: inside
        (NIGHT, utc(2026, 1, 16, 10), utc(2026, 1, 16, 10)),  # 05:00: inside, across midnight
        (NIGHT, utc(2026, 1, 16, 11), utc(2026, 1, 17, 3)),  # 06:00: the end is excluded
    ],
)
def test_the_next_opening_in_new_york(
    window: SendWindow, moment: datetime, opening: datetime
) -> None:
    assert window.next_opening(moment, NEW_YORK) == opening


def test_a_start_the_clock_jumps_over_opens_at_the_jump() -> None:
    """2026-03-08 in New York: 02:00 EST becomes 03:00 EDT (07:00 UTC); 02:30 never comes."""
    window = SendWindow(time(2, 30), time(4))

    assert window.next_opening(utc(2026, 3, 8, 5), NEW_YORK) == utc(2026, 3, 8, 7)


def test_a_window_the_clock_goes_back_into_opens_at_the_change() -> None:
    """2026-11-01 in New York: 02:00 EDT becomes 01:00 EST (06:00 UTC). At 01:45 EDT a window
    ending at 01:30 is past, and the clock going back reopens it."""
    window = SendWindow(time(0, 30), time(1, 30))

    assert window.next_opening(utc(2026, 11, 1, 5, 45), NEW_YORK) == utc(2026, 11, 1, 6)


def test_a_start_the_clock_passes_twice_opens_at_the_first() -> None:
    window = SendWindow(time(1, 15), time(1, 45))

    # 00:30 EDT: the first 01:15 (EDT, 05:15 UTC).
    assert window.next_opening(utc(2026, 11, 1, 4, 30), NEW_YORK) == utc(2026, 11, 1, 5, 15)
    # 01:50 EDT: past the window; the clock goes back, and 01:15 EST (06:15 UTC) opens it again.
    assert window.next_opening(utc(2026, 11, 1, 5, 50), NEW_YORK) == utc(2026, 11, 1, 6, 15)


def test_a_window_across_a_spring_forward_in_the_southern_hemisphere() -> None:
    """Lord Howe moves its clock by half an hour (2026-10-04, 02:00 to 02:30)."""
    zone = ZoneInfo("Australia/Lord_Howe")
    window = SendWindow(time(2, 10), time(3))
    before = datetime(2026, 10, 4, 1, 0, tzinfo=zone).astimezone(UTC)

    opening = window.next_opening(before, zone)

    assert opening.astimezone(zone).replace(tzinfo=None) == datetime(2026, 10, 4, 2, 30)


ZONES = [
    "America/New_York",
    "America/Sao_Paulo",
    "America/Santiago",
    "Europe/London",
    "Europe/Madrid",
    "Australia/Lord_Howe",
    "Pacific/Chatham",
    "Asia/Kolkata",
    "Pacific/Apia",
    "UTC",
]
DST_EDGES = [
    utc(2026, 3, 8, 7),  # New York, spring
    utc(2026, 11, 1, 6),  # New York, autumn
    utc(2026, 3, 29, 1),  # Europe, spring
    utc(2026, 10, 25, 1),  # Europe, autumn
    utc(2026, 4, 4, 15),  # Lord Howe, autumn
    utc(2026, 10, 3, 15),  # Lord Howe, spring
    utc(2026, 4, 5, 3),  # Santiago, autumn
]
minutes_of_day = st.integers(min_value=0, max_value=24 * 60 - 1).map(
    lambda m: time(m // 60, m % 60)
)
moments = st.one_of(
    st.datetimes(
        min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31), timezones=st.just(UTC)
    ),
    st.tuples(st.sampled_from(DST_EDGES), st.integers(-36 * 3600, 36 * 3600)).map(
        lambda edge: edge[0] + timedelta(seconds=edge[1])
    ),
)


def _whole_minutes(since: datetime, until: datetime) -> list[datetime]:
    first = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
    count = int((until - first).total_seconds() // 60) + 1
    return [
        first + timedelta(minutes=n)
        for n in range(max(count, 0))
        if first + timedelta(minutes=n) < until
    ]


@given(start=minutes_of_day, end=minutes_of_day, zone=st.sampled_from(ZONES), now=moments)
@example(start=time(2, 30), end=time(4), zone="America/New_York", now=utc(2026, 3, 8, 5))
@example(start=time(0, 30), end=time(1, 30), zone="America/New_York", now=utc(2026, 11, 1, 5, 45))
def test_the_next_opening_is_inside_not_before_now_and_the_first(
    start: time, end: time, zone: str, now: datetime
) -> None:
    if start == end:
        return
    window = SendWindow(start, end)
    tz = ZoneInfo(zone)

    opening = window.next_opening(now, tz)

    assert opening >= now
    assert window.contains(opening, tz)
    assert opening - now <= timedelta(hours=26)
    # Minimal: the window's bounds are whole minutes and clocks change on whole minutes, so
    # inside-ness changes only there: no whole minute before the opening, nor `now`, is inside.
    if opening > now:
        assert not window.contains(now, tz)
        for moment in _whole_minutes(now, opening):
            assert not window.contains(moment, tz), moment


# --- parsing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2026-01-15T13:00:00", SEND_AT_NO_OFFSET),
        ("2026-01-15T11:59:59Z", SEND_AT_PAST),
        ("2026-01-15T12:00:00+00:00", SEND_AT_PAST),
        ("2026-02-14T12:00:01Z", SEND_AT_TOO_FAR),
        ("tomorrow", SEND_AT_FORMAT),
        ("", SEND_AT_FORMAT),
        (1768478400, SEND_AT_FORMAT),
        (None, SEND_AT_FORMAT),
    ],
)
def test_a_send_at_that_cannot_be_accepted(value: object, message: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        send_at_parse(value, now=NOW)

    assert str(raised.value) == message


def test_send_at_takes_any_offset_up_to_30_days_ahead() -> None:
    assert send_at_parse("2026-01-15T09:30:00-03:00", now=NOW) == utc(2026, 1, 15, 12, 30)
    assert send_at_parse("2026-02-14T12:00:00Z", now=NOW) == utc(2026, 2, 14, 12)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"start": "09:00"}, SEND_WINDOW_SHAPE),
        ({"start": "09:00", "end": "20:00", "zone": "UTC"}, SEND_WINDOW_SHAPE),
        ({"start": "9:00", "end": "20:00"}, SEND_WINDOW_SHAPE),
        ({"start": "09:00", "end": "24:00"}, SEND_WINDOW_SHAPE),
        ({"start": "09:60", "end": "20:00"}, SEND_WINDOW_SHAPE),
        ({"start": 9, "end": 20}, SEND_WINDOW_SHAPE),
        ("09:00-20:00", SEND_WINDOW_SHAPE),
        ({"start": "09:00", "end": "09:00"}, SEND_WINDOW_EMPTY),
    ],
)
def test_a_send_window_that_cannot_be_accepted(value: object, message: str) -> None:
    with pytest.raises(ScheduleError) as raised:
        send_window_parse(value)

    assert str(raised.value) == message


def test_a_window_across_midnight_is_accepted() -> None:
    assert send_window_parse({"start": "22:00", "end": "06:30"}) == SendWindow(
        time(22), time(6, 30)
    )


# --- due moments and the estimate ------------------------------------------------------------


def test_each_message_is_due_at_its_recipients_opening_from_send_at() -> None:
    phones = ["+5492235961983", "+12125551234", "+13105551234"]
    send_at = utc(2026, 1, 15, 13)  # 10:00 Buenos Aires, 08:00 New York, 05:00 Los Angeles

    due = messages_due(phones, send_at=send_at, window=DAY, fallback_timezone="UTC", now=NOW)

    assert due is not None
    assert due.due_at == [send_at, utc(2026, 1, 15, 14), utc(2026, 1, 15, 17)]
    assert due.first == send_at
    assert due.last_window_opens_at == utc(2026, 1, 15, 17)


def test_without_send_at_a_recipient_inside_the_window_is_due_at_once() -> None:
    due = messages_due(
        ["+5492235961983", "+12125551234"],
        send_at=None,
        window=DAY,
        fallback_timezone="UTC",
        now=NOW,
    )

    assert due is not None
    assert due.due_at == [None, utc(2026, 1, 15, 14)]
    assert due.first is None  # something to send now: the send is woken at once
    assert (
        messages_due(
            ["+5492235961983"], send_at=None, window=None, fallback_timezone="UTC", now=NOW
        )
        is None
    )


def test_the_estimate_counts_from_send_at_and_waits_for_the_last_window() -> None:
    two_minutes = lambda start: 2.0  # noqa: E731

    assert (
        schedule_estimate_minutes(
            two_minutes, send_at=NOW + timedelta(hours=1), last_window_opens_at=None, now=NOW
        )
        == 62.0
    )
    assert (
        schedule_estimate_minutes(
            two_minutes, send_at=None, last_window_opens_at=NOW + timedelta(hours=5), now=NOW
        )
        == 300.0
    )
    assert (
        schedule_estimate_minutes(
            two_minutes, send_at=NOW - timedelta(hours=1), last_window_opens_at=NOW, now=NOW
        )
        == 2.0
    )
