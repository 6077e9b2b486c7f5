"""The per-number limiter against the real Redis: exact windows, shared across processes.

The limiter runs on a clock the test moves (`RateLimiter(clock=...)`), and every permit is
stamped with the time the limiter decided it at. So the guarantees are checked on the limiter's
own time: a busy machine that pauses the test between two calls changes nothing, while a limiter
that granted one permit too many in some second is still caught.
"""

from __future__ import annotations

import asyncio
import bisect
import heapq
import itertools
import multiprocessing
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from messaging.ratelimit import AsyncPacer, RateLimiter, take

MICROS = 1_000_000


class ManualClock:
    """The limiter's clock: whole microseconds that move only when the test says so."""

    def __init__(self) -> None:
        self.micros = 1_000 * MICROS

    def __call__(self) -> float:
        return self.micros / MICROS

    def advance(self, seconds: float) -> None:
        self.micros += round(seconds * MICROS)


class SharedClock:
    """A ManualClock shared by processes; remembers the reading this process's limiter used."""

    def __init__(self, micros: Any) -> None:
        self.shared = micros  # a multiprocessing Value("q")
        self.last = 0

    def __call__(self) -> float:
        self.last = self.shared.value
        return self.last / MICROS

    def advance_to(self, micros: int) -> None:
        with self.shared.get_lock():
            self.shared.value = max(self.shared.value, micros)


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def prefix(redis_client: redis.Redis) -> Iterator[str]:
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    yield prefix
    keys = list(redis_client.scan_iter(f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def limiter(redis_client: redis.Redis, prefix: str, clock: ManualClock) -> RateLimiter:
    return RateLimiter(redis_client, prefix=prefix, clock=clock)


class VirtualSleep:
    """`asyncio.sleep` on a ManualClock: every sleeper wakes at its own time, earliest first, and
    the clock moves to that time only once every task that could run has run. Here a task waits
    only on sleeps or on futures another task resolves (the Redis calls block), so a few turns of
    the loop let them all get to their next wait."""

    SETTLE_TURNS = 20

    def __init__(self, clock: ManualClock, lateness: Iterator[float] | None = None) -> None:
        self.clock = clock
        # Each sleeper wakes this much later than it asked (a busy machine), when given.
        self.lateness = lateness
        self.asked: list[float] = []
        self._due: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._real_sleep = asyncio.sleep

    async def sleep(self, delay: float, result: Any = None) -> Any:
        self.asked.append(delay)
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        late = next(self.lateness) if self.lateness is not None else 0.0
        micros = self.clock.micros + round((max(delay, 0.0) + late) * MICROS)
        heapq.heappush(self._due, (micros, next(self._order), wake))
        if self._driver is None or self._driver.done() or self._driver.get_loop() is not loop:
            self._driver = loop.create_task(self._drive())
        await wake
        return result

    async def _drive(self) -> None:
        while True:
            for _ in range(self.SETTLE_TURNS):
                await self._real_sleep(0)
            if not self._due:
                return
            micros, _, wake = heapq.heappop(self._due)
            if wake.done():  # a cancelled sleep: no one wakes then
                continue
            self.clock.micros = max(self.clock.micros, micros)
            wake.set_result(None)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch, clock: ManualClock) -> list[float]:
    """`asyncio.sleep` moves the limiter's clock (VirtualSleep) instead of waiting it out; the
    pauses asked for, in order."""
    virtual = VirtualSleep(clock)
    monkeypatch.setattr(asyncio, "sleep", virtual.sleep)
    return virtual.asked


def max_in_any_window(stamps: list[int], width: int = MICROS) -> int:
    """The most permits in any window [t, t + width) that starts at a permit."""
    stamps = sorted(stamps)
    return max(bisect.bisect_left(stamps, start + width) - i for i, start in enumerate(stamps))


def average_rate(stamps: list[int]) -> float:
    return (len(stamps) - 1) / ((max(stamps) - min(stamps)) / MICROS)


def test_a_single_client_gets_the_rate_and_never_more_in_any_second(
    limiter: RateLimiter, clock: ManualClock
) -> None:
    end = clock.micros + 3 * MICROS
    stamps: list[int] = []
    while clock.micros < end:
        grant = limiter.acquire("number", 50, 1)
        if grant.granted:
            stamps.extend([clock.micros] * grant.granted)
        else:
            clock.advance(grant.retry_after)

    assert max_in_any_window(stamps) <= 50
    assert average_rate(stamps) == pytest.approx(50, rel=0.02)


def _worker(
    prefix: str, key: str, rate: int, permits: int, micros: Any, ready: Any, out: Any
) -> None:
    clock = SharedClock(micros)
    limiter = RateLimiter(redis.Redis.from_url(settings.REDIS_URL), prefix=prefix, clock=clock)
    stamps: list[int] = []
    ready.wait(timeout=120)  # every process is up (spawned interpreters start slowly)
    while len(stamps) < permits:
        grant = limiter.acquire(key, rate, 1)
        if grant.granted:
            stamps.extend([clock.last] * grant.granted)
        else:
            # Time moves on only when a permit is refused, to when the next one conforms: however
            # the processes are scheduled, the limiter is asked at every moment it could grant.
            clock.advance_to(clock.last + round(grant.retry_after * MICROS))
    out.put(stamps)


def test_processes_sharing_a_number_together_stay_within_its_rate(prefix: str) -> None:
    rate, permits, workers = 80, 80, 3
    context = multiprocessing.get_context("spawn")
    micros = context.Value("q", 1_000 * MICROS)
    ready, out = context.Barrier(workers), context.Queue()
    args = (prefix, "shared", rate, permits, micros, ready, out)
    processes = [context.Process(target=_worker, args=args) for _ in range(workers)]
    for process in processes:
        process.start()
    try:
        results = [out.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=60)
    stamps = sorted(stamp for result in results for stamp in result)

    assert [len(result) for result in results] == [permits] * workers
    assert max_in_any_window(stamps) <= rate
    # Three seconds' worth together, at the rate of one number (not three).
    assert average_rate(stamps) == pytest.approx(rate, rel=0.03)


def test_a_batch_takes_what_the_burst_allows_and_says_when_the_next_comes(
    limiter: RateLimiter,
) -> None:
    first = limiter.acquire("batch", rate=1000, n=100)
    second = limiter.acquire("batch", rate=1000, n=100)

    # Tolerance 2-3 ms at 1.01 ms a permit: a few now, never the hundred asked for.
    assert 1 <= first.granted < 10
    assert second.granted < 10
    assert 0 <= second.retry_after < 0.01
    assert limiter.acquire("slow", rate=2, n=5).granted == 1
    refused = limiter.acquire("slow", rate=2, n=5)
    assert refused.granted == 0
    assert refused.retry_after == pytest.approx(0.5, abs=0.05)


def test_slow_down_grants_nothing_for_that_long(
    limiter: RateLimiter, clock: ManualClock, sleeps: list[float]
) -> None:
    limiter.slow_down("number", 0.6)
    blocked = limiter.acquire("number", rate=1000, n=10)

    granted = asyncio.run(take(limiter, "number", 1000, 10, timeout=3))

    assert (blocked.granted, blocked.retry_after) == (0, 0.6)
    assert granted >= 1
    # take slept once, exactly until the permit conformed, and then had it.
    assert sleeps == [0.6]


def test_slow_down_ends_to_the_microsecond(limiter: RateLimiter, clock: ManualClock) -> None:
    limiter.slow_down("number", 0.6)
    clock.advance(0.599_999)
    still_blocked = limiter.acquire("number", rate=1000, n=10)
    clock.advance(0.000_001)

    assert (still_blocked.granted, still_blocked.retry_after) == (0, 0.000_001)
    assert limiter.acquire("number", rate=1000, n=10).granted >= 1


def test_keys_are_independent(limiter: RateLimiter) -> None:
    assert limiter.acquire("one", rate=1, n=1).granted == 1
    assert limiter.acquire("one", rate=1, n=1).granted == 0

    assert limiter.acquire("two", rate=1, n=1).granted == 1


def test_take_gives_up_after_its_timeout(limiter: RateLimiter) -> None:
    # The limiter's clock stands still: no permit ever comes, whatever the machine's speed.
    limiter.slow_down("number", 5)

    assert asyncio.run(take(limiter, "number", 10, timeout=0.2)) == 0


def test_without_a_clock_the_limiter_keeps_redis_time_and_forgets_past_debts(
    redis_client: redis.Redis, prefix: str
) -> None:
    limiter = RateLimiter(redis_client, prefix=prefix)

    limiter.slow_down("number", 3600)
    blocked = limiter.acquire("number", rate=1000, n=1)

    assert blocked.granted == 0
    # Less than an hour by the time Redis took to answer (generously: a minute).
    assert 3600 - 60 < blocked.retry_after <= 3600
    expires_in_ms = int(redis_client.pttl(f"{prefix}{{number}}"))  # type: ignore[arg-type]
    assert (3600 - 60) * 1000 < expires_in_ms <= (3600 + 2) * 1000


def test_the_pacer_lets_concurrent_workers_through_at_the_rate(
    limiter: RateLimiter, clock: ManualClock, sleeps: list[float]
) -> None:
    pacer = AsyncPacer(limiter, "number", rate=200, clock=clock)
    end = clock.micros + round(1.5 * MICROS)
    stamps: list[int] = []

    async def worker() -> None:
        while clock.micros < end:
            await pacer.wait()
            # Only the sleeps move the clock: this is when its request would leave.
            stamps.append(clock.micros)

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(16))), timeout=120)

    asyncio.run(main())

    assert max_in_any_window(stamps) <= 200
    assert average_rate(stamps) == pytest.approx(200, rel=0.04)
    assert sleeps, "the pacer waited for permits rather than taking them early"
