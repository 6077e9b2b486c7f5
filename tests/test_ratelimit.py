"""The per-number limiter against the real Redis: exact windows, shared across processes."""

from __future__ import annotations

import asyncio
import bisect
import multiprocessing
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from django.conf import settings

from messaging.ratelimit import AsyncPacer, RateLimiter, take


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    client.close()


@pytest.fixture
def limiter(redis_client: redis.Redis) -> Iterator[RateLimiter]:
    prefix = f"test:rate:{uuid.uuid4().hex}:"
    yield RateLimiter(redis_client, prefix=prefix)
    keys = list(redis_client.scan_iter(f"{prefix}*"))
    if keys:
        redis_client.delete(*keys)


def max_in_any_window(stamps: list[float], width: float = 1.0) -> int:
    """The most permits in any window [t, t + width) that starts at a permit."""
    stamps = sorted(stamps)
    return max(bisect.bisect_left(stamps, start + width) - i for i, start in enumerate(stamps))


def acquire_until(
    limiter: RateLimiter, key: str, rate: int, end: float, now: Callable[[], float]
) -> list[float]:
    """Take permits one by one as fast as the limiter allows; one timestamp per permit."""
    stamps: list[float] = []
    while now() < end:
        grant = limiter.acquire(key, rate, 1)
        if grant.granted:
            stamps.extend([now()] * grant.granted)
        else:
            time.sleep(grant.retry_after)
    return stamps


def test_a_single_client_gets_the_rate_and_never_more_in_any_second(
    limiter: RateLimiter,
) -> None:
    stamps = acquire_until(limiter, "number", 50, time.monotonic() + 3.0, time.monotonic)

    assert max_in_any_window(stamps) <= 50
    measured = (len(stamps) - 1) / (stamps[-1] - stamps[0])
    assert measured == pytest.approx(50, rel=0.02)


def _worker(
    prefix: str, key: str, rate: int, seconds: float, ready: Any, go: Any, start_at: Any, out: Any
) -> None:
    limiter = RateLimiter(redis.Redis.from_url(settings.REDIS_URL), prefix=prefix)
    ready.wait(timeout=30)  # every process is up (spawned interpreters start slowly)
    go.wait(timeout=30)
    # One start and one end for all: the window is the same whatever each process's start-up.
    time.sleep(max(0.0, start_at.value - time.time()))
    out.put(acquire_until(limiter, key, rate, start_at.value + seconds, time.time))


def test_processes_sharing_a_number_together_stay_within_its_rate(limiter: RateLimiter) -> None:
    rate, seconds, workers = 80, 3.0, 3
    context = multiprocessing.get_context("spawn")
    ready, go = context.Barrier(workers + 1), context.Event()
    start_at, out = context.Value("d", 0.0), context.Queue()
    args = (limiter.prefix, "shared", rate, seconds, ready, go, start_at, out)
    processes = [context.Process(target=_worker, args=args) for _ in range(workers)]
    for process in processes:
        process.start()
    try:
        ready.wait(timeout=30)
        start_at.value = time.time() + 0.05
        go.set()
        results = [out.get(timeout=30) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
    stamps = sorted(stamp for result in results for stamp in result)

    assert all(results), "every process got permits"
    assert max_in_any_window(stamps) <= rate
    assert len(stamps) == pytest.approx(rate * seconds, rel=0.03), [len(r) for r in results]


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


def test_slow_down_grants_nothing_for_that_long(limiter: RateLimiter) -> None:
    limiter.slow_down("number", 0.6)
    blocked = limiter.acquire("number", rate=1000, n=10)
    started = time.monotonic()

    granted = asyncio.run(take(limiter, "number", 1000, 10, timeout=3))

    assert blocked.granted == 0
    assert blocked.retry_after == pytest.approx(0.6, abs=0.05)
    assert granted >= 1
    assert time.monotonic() - started == pytest.approx(0.6, abs=0.1)


def test_keys_are_independent(limiter: RateLimiter) -> None:
    assert limiter.acquire("one", rate=1, n=1).granted == 1
    assert limiter.acquire("one", rate=1, n=1).granted == 0

    assert limiter.acquire("two", rate=1, n=1).granted == 1


def test_take_gives_up_after_its_timeout(limiter: RateLimiter) -> None:
    limiter.slow_down("number", 5)

    assert asyncio.run(take(limiter, "number", 10, timeout=0.2)) == 0


def test_the_pacer_lets_concurrent_workers_through_at_the_rate(limiter: RateLimiter) -> None:
    pacer = AsyncPacer(limiter, "number", rate=200)
    stamps: list[float] = []

    async def worker() -> None:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            await pacer.wait()
            stamps.append(time.monotonic())

    async def main() -> None:
        await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(16))), timeout=5)

    asyncio.run(main())

    assert max_in_any_window(stamps) <= 200
    measured = (len(stamps) - 1) / (max(stamps) - min(stamps))
    assert measured == pytest.approx(200, rel=0.04)
