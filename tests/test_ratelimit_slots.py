"""The pacer's reserved slots, on a clock the test moves: a permit is used at its slot, paid for
when used a little late, forfeited when used much later, and however late the workers wake no
1-s window of requests leaving holds more than the rate (messaging.ratelimit's docstring)."""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from messaging.ratelimit import (
    LATE_PAYMENT_MAX_SECONDS,
    TOLERANCE_SECONDS,
    AsyncPacer,
    Grant,
    Permit,
    RateLimiter,
    permits_of,
)
from tests.delivery_support import permits_counted, redis_client
from tests.test_ratelimit import MICROS, ManualClock, VirtualSleep, max_in_any_window

TOLERANCE = TOLERANCE_SECONDS


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(clock: ManualClock) -> Iterator[RateLimiter]:
    """A limiter on the test's clock, its keys of its own, deleted afterwards."""
    client = redis_client()
    limiter = RateLimiter(client, prefix=f"test:rate:{uuid.uuid4().hex}:", clock=clock)
    yield limiter
    client.delete(*limiter.rate_keys("number"), limiter.skips_key("number"))
    client.close()


def test_a_reservation_grants_the_slots_up_to_its_horizon_and_says_where_they_are(
    limiter: RateLimiter,
) -> None:
    interval = limiter.interval(100)

    first = limiter.reserve("number", 100, 50, horizon=0.05)
    # The slots now, now + T, ... up to the horizon and the tolerance ahead.
    assert first.granted == int((0.05 + limiter.tolerance) / interval) + 1
    assert first.first_slot == 0
    assert first.interval == pytest.approx(interval)

    second = limiter.reserve("number", 100, 50, horizon=0.05)
    assert second.granted == 0  # the horizon is full until the clock moves
    assert second.retry_after == pytest.approx(first.granted * interval - 0.05 - limiter.tolerance)


def test_the_next_reservation_starts_where_the_last_one_ended(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    first = limiter.reserve("number", 100, 3, horizon=0.05)
    clock.advance(0.01)

    second = limiter.reserve("number", 100, 1, horizon=0.05)

    assert second.first_slot == pytest.approx(3 * first.interval - 0.01, abs=1e-6)


def test_a_payment_moves_every_later_slot_back_by_it(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    first = limiter.reserve("number", 100, 1, horizon=0.0)

    paid = limiter.reserve("number", 100, 1, horizon=0.05, push=0.004)

    assert paid.first_slot == pytest.approx(first.interval + 0.004, abs=1e-6)


def test_permits_are_waited_for_from_the_answer_and_counted_late_from_the_question() -> None:
    grant = Grant(granted=2, retry_after=0.0, first_slot=0.010, interval=0.002)

    permits = permits_of(grant, asked_at=100.0, answered_at=100.001, stops=0)

    assert [p.slot for p in permits] == pytest.approx([100.011, 100.013])
    assert [p.due for p in permits] == pytest.approx([100.010, 100.012])


@pytest.mark.parametrize(
    ("late", "debt"),
    [
        (0.0, 0.0),
        (TOLERANCE, 0.0),  # within the margin the interval carries: free
        (TOLERANCE + 0.003, 0.003),  # a little late: every later slot moves back by the excess
        (TOLERANCE + LATE_PAYMENT_MAX_SECONDS - 0.001, LATE_PAYMENT_MAX_SECONDS - 0.001),
        (TOLERANCE + LATE_PAYMENT_MAX_SECONDS, None),  # a stall: forfeited
        (1.0, None),
    ],
)
def test_a_late_permit_is_paid_for_or_forfeited(late: float, debt: float | None) -> None:
    permit = Permit(slot=10.0, due=10.0, interval=0.001, stops=0)

    owed = permit.debt_at(10.0 + late, TOLERANCE)

    assert owed == (None if debt is None else pytest.approx(debt, abs=1e-9))


def leave_times(
    limiter: RateLimiter,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    *,
    rate: int,
    hosts: int,
    workers: int,
    seconds: float,
    lateness: Iterator[float],
) -> tuple[list[int], list[AsyncPacer]]:
    """When each request of `workers` per host left (the clock when `wait` returned), the hosts'
    pacers sharing one number, every sleep woken late by the next of `lateness`."""
    virtual = VirtualSleep(clock, lateness)
    monkeypatch.setattr(asyncio, "sleep", virtual.sleep)
    pacers = [AsyncPacer(limiter, "number", rate, clock=clock) for _ in range(hosts)]
    end = clock.micros + round(seconds * MICROS)
    stamps: list[int] = []

    async def worker(pacer: AsyncPacer) -> None:
        while clock.micros < end:
            await pacer.wait()
            stamps.append(clock.micros)
            await asyncio.sleep(0.003)  # the request's round trip

    async def main() -> None:
        tasks = (worker(pacer) for pacer in pacers for _ in range(workers))
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=120)

    asyncio.run(main())
    monkeypatch.undo()
    return stamps, pacers


def test_on_time_workers_get_the_rate_from_reserved_slots_and_forfeit_nothing(
    limiter: RateLimiter, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    stamps, pacers = leave_times(
        limiter,
        clock,
        monkeypatch,
        rate=200,
        hosts=2,
        workers=8,
        seconds=1.5,
        lateness=itertools.repeat(0.0),
    )

    assert max_in_any_window(stamps) <= 200
    mean = (len(stamps) - 1) / ((max(stamps) - min(stamps)) / MICROS)
    assert mean == pytest.approx(200 / (1 + limiter.guard + limiter.tolerance), rel=0.01)
    assert sum(p.forfeited + p.paid_late for p in pacers) == 0


@pytest.mark.parametrize(
    ("late", "counted"),
    [
        (TOLERANCE + 0.005, "paid_late"),  # a little late: paid for, the schedule moves back
        (TOLERANCE + LATE_PAYMENT_MAX_SECONDS + 0.02, "forfeited"),  # a stall
    ],
)
def test_workers_that_wake_late_pay_for_their_permits_or_forfeit_them(
    limiter: RateLimiter,
    clock: ManualClock,
    monkeypatch: pytest.MonkeyPatch,
    late: float,
    counted: str,
) -> None:
    stall = itertools.chain([0.0] * 5, [late] * 40, itertools.repeat(0.0))
    counters_before = limiter_counters()

    stamps, pacers = leave_times(
        limiter, clock, monkeypatch, rate=100, hosts=1, workers=4, seconds=1.5, lateness=stall
    )

    assert getattr(pacers[0], counted) > 0
    assert max_in_any_window(stamps) <= 100
    # What /metrics shows an operator: the same counts.
    counters_after = limiter_counters()
    assert {name: counters_after[name] - counters_before[name] for name in counters_after} == {
        "forfeited": pacers[0].forfeited,
        "paid_late": pacers[0].paid_late,
    }


def limiter_counters() -> dict[str, int]:
    return {outcome: permits_counted(outcome) for outcome in ("forfeited", "paid_late")}


# At 40/s a second of slots has no room for one more request. At 300/s it has room for 3 with
# the usual margin, which would hide a payment missed; a margin of 2 ms leaves none, and most
# late permits, later than an interval (3.3 ms), are paid for by skips.
@pytest.mark.parametrize(
    ("rate", "workers", "margins"),
    [(40, 3, {}), (300, 4, {"tolerance": 0.001, "guard": 0.001})],
)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lateness=st.lists(
        st.one_of(
            st.just(0.0),
            st.floats(min_value=0.0, max_value=0.012),
            st.floats(min_value=0.0, max_value=0.2),
        ),
        min_size=1,
        max_size=40,
    ),
    hosts=st.integers(min_value=1, max_value=3),
)
def test_however_late_the_workers_wake_no_second_holds_more_than_the_rate(
    rate: int,
    workers: int,
    margins: dict[str, float],
    lateness: list[float],
    hosts: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = ManualClock()  # not the fixtures: a fresh clock and keys for each example
    client = redis_client()
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    limiter = RateLimiter(client, prefix=prefix, clock=clock, **margins)
    try:
        stamps, _ = leave_times(
            limiter,
            clock,
            monkeypatch,
            rate=rate,
            hosts=hosts,
            workers=workers,
            seconds=2.2,
            lateness=itertools.cycle(lateness),
        )
    finally:
        client.delete(*limiter.rate_keys("number"), limiter.skips_key("number"))
        client.close()

    assert max_in_any_window(stamps) <= rate


def test_a_skip_leaves_out_the_last_slot_within_rate_intervals_of_the_late_one(
    limiter: RateLimiter,
) -> None:
    interval_us = limiter.interval(10) * MICROS
    late = limiter.reserve("number", 10, 1, horizon=0.0)

    limiter.reserve("number", 10, 0, horizon=0.0, skips=[late.first_at_us])
    before = limiter.reserve("number", 10, 100, horizon=2.0)
    after = limiter.reserve("number", 10, 100, horizon=2.0)

    # Slots 1 to 9 after the late one; the 10th, a second and the margin after it, is left out,
    # and the grant ends there so that the slots it answers are evenly spaced.
    assert before.granted == 9
    assert before.first_at_us == pytest.approx(late.first_at_us + interval_us, abs=1)
    assert after.first_at_us == pytest.approx(late.first_at_us + 11 * interval_us, abs=1)


def test_a_skip_that_comes_after_its_slot_was_granted_leaves_nothing_out(
    limiter: RateLimiter,
) -> None:
    interval_us = limiter.interval(10) * MICROS
    late = limiter.reserve("number", 10, 1, horizon=0.0)
    granted = limiter.reserve("number", 10, 20, horizon=2.0).granted
    assert granted > 10  # past the slot the skip would leave out

    limiter.reserve("number", 10, 0, horizon=0.0, skips=[late.first_at_us])
    after = limiter.reserve("number", 10, 1, horizon=3.0)

    assert after.granted == 1
    assert after.first_at_us == pytest.approx(late.first_at_us + (granted + 1) * interval_us, abs=1)


@pytest.mark.parametrize("rate", [400, 40])
def test_a_late_permit_costs_the_schedule_at_most_its_excess_or_one_slot(
    limiter: RateLimiter, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, rate: int
) -> None:
    # Late by 6 ms past the tolerance: more than an interval at 400/s (a skip is cheaper than
    # moving every later slot back by 6 ms), less at 40/s.
    stall = itertools.chain([0.0] * 5, [TOLERANCE + 0.006] * 40, itertools.repeat(0.0))

    stamps, pacers = leave_times(
        limiter, clock, monkeypatch, rate=rate, hosts=1, workers=16, seconds=1.5, lateness=stall
    )

    paid = pacers[0].paid_late
    assert paid > 0
    assert max_in_any_window(stamps) <= rate
    interval = limiter.interval(rate)
    slots = (max(stamps) - min(stamps)) / MICROS / interval + 1
    assert len(stamps) >= math.floor(slots - paid * min(1.0, 0.006 / interval))
    assert pacers[0].forfeited == 0
