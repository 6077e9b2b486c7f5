"""One atomic limiter per phone number, in Redis, shared by every worker on every machine.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket written as one number):
each key stores its TAT, the theoretical arrival time of the next permit, in microseconds of
Redis's clock. With emission interval T (seconds per permit) and tolerance tau, a call for n
permits at Redis time `now` runs, atomically, in one Lua script:

1. Read `now` from Redis (`TIME`), never from the caller, so machines with drifting clocks agree
   (a test may inject a clock instead: `RateLimiter(..., clock=...)`).
2. TAT' = max(stored TAT, now): an idle key has no debt and keeps no credit beyond tau.
3. Permit i of the call (i = 0, 1, ...) conforms when TAT' + i*T - tau <= now; grant the k
   conforming ones, k = min(n, floor((now + tau - TAT') / T) + 1). k may be less than n.
4. Store TAT = TAT' + k*T, expiring once it lies in the past (an expired key means "no debt").
5. Answer k and retry_after = max(0, TAT - tau - now): when the next permit will conform.

The window guarantee, and the burst trade-off. Every granted permit p has a slot s_p (TAT' + i*T)
with slots T apart and a grant time g_p in [s_p - tau, s_p]. So any rate+1 consecutive permits
span at least rate*T - tau. Choosing

    T = (1 s + GUARD + TOLERANCE) / rate,   tau = TOLERANCE

makes that span at least 1 s + GUARD: no 1-second window, sliding and measured at grant time,
ever holds more than `rate` permits, and the GUARD keeps it so when the moment a permit is used
drifts from its grant by up to GUARD (the reply's trip back, a busy event loop, another process
scheduled first). The price is the average: rate / (1 + GUARD + TOLERANCE), 1.1% under the
rate with the values below. TOLERANCE is the burst: it lets a caller that wakes a little late still
take its permit without pushing the schedule back (which would lose throughput for good), and
lets a call take 1 + floor(tau / T) permits at once: 1 below 337/s, 3 at 1,000/s. A larger tau
would mean fewer Redis calls at high rates but, for the same window guarantee, a lower average.

`slow_down` moves TAT at least `seconds` ahead: Meta's 130429 says the number went too fast.

A stop key. A call may name a stop key, checked in the same script before anything else: while
it exists, the call grants nothing and takes nothing from the schedule, and answers "stopped"
(`LimiterStopped` for the caller). A send that was cancelled or paused sets its key, so a worker in
the middle of a batch stops before its next request, within the Redis call it makes anyway.

Redis Cluster. A script may only touch keys of one hash slot, so a number's key is
`mindo:rate:{<number>}`: the braces make the number its hash tag, and a send's stop key carries
the same tag (bulksend.stopping), so both land in the number's slot. Keys without the tag, as
versions before it wrote them (`mindo:rate:<number>`, `bulksend:stopped:<send>`), are legacy
keys: on a plain Redis the limiter also reads and writes the number's legacy key and checks the
send's legacy stop key (`legacy_keys`), so that during a rolling deploy the old and the new
workers share one schedule and see each other's stop marks. A cluster has no legacy keys (no
earlier version ran on one), and could not reach them from the script anyway.

Redis away. The pacer rides out an outage: a connection error or timeout is retried with capped
exponential backoff for up to the pacer's `redis_wait` seconds (a restart takes a few), and only
past that bound do its waiters get `LimiterUnavailable`, so that the drain gives back at once what
it has not sent. Nothing is granted while Redis is away. A Redis that restarted empty has
forgotten the TAT of the permits it granted just before: the first retry comes 1 s + GUARD after
the first failure, when none of those can share a window with a new permit any more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from mindo import metrics
from mindo.redisconn import REDIS_AWAY, RedisClient, redis_from_url, script_register

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 0.003
GUARD_SECONDS = 0.008
KEY_PREFIX = "mindo:rate:"
# The limiter's calls block the drain's event loop: a Redis that stopped answering (a lost
# network rather than a crash, which is refused at once) must not hold it for minutes.
REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
# Retrying a Redis that is away: the first pause (see the docstring), then doubled up to the cap.
OUTAGE_FIRST_PAUSE_SECONDS = 1.0 + GUARD_SECONDS
OUTAGE_MAX_PAUSE_SECONDS = 2.0

# KEYS[1..r]: the number's key and its legacy key (both read, the later TAT wins, both written),
# KEYS[r+1..]: stop keys, any of which refuses every permit while it exists (answer {-1, 0}).
# ARGV: rate (permits/s), n (permits wanted, 0 to only slow down), tolerance (us), guard (us),
# block (us: slow_down's pause, 0 otherwise), now (us: an injected clock's reading, for tests;
# empty for Redis's TIME), r (how many of KEYS are the number's).
GCRA_SCRIPT = """
local rate = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local guard = tonumber(ARGV[4])
local block = tonumber(ARGV[5])
local injected = tonumber(ARGV[6])
local rate_keys = tonumber(ARGV[7])
for i = rate_keys + 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    return {-1, 0}
  end
end
local now = injected
if not now then
  local clock = redis.call('TIME')
  now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
end
local interval = (1000000 + guard + tolerance) / rate
local tat = now
for i = 1, rate_keys do
  local stored = redis.call('GET', KEYS[i])
  if stored then
    tat = math.max(tonumber(stored), tat)
  end
end
local granted = 0
if wanted > 0 then
  granted = math.min(wanted, math.floor((now + tolerance - tat) / interval) + 1)
  granted = math.max(granted, 0)
end
tat = tat + granted * interval
if block > 0 then
  -- No permit before now + block: the first one after it conforms at TAT - tolerance.
  tat = math.max(tat, now + block + tolerance)
end
for i = 1, rate_keys do
  if tat > now and injected then
    -- An injected clock need not keep Redis's pace: no expiry, the caller deletes its keys.
    redis.call('SET', KEYS[i], string.format('%.3f', tat))
  elseif tat > now then
    local ttl = math.ceil((tat - now) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.3f', tat), 'PX', ttl)
  end
end
local wait = math.max(tat - tolerance - now, 0)
return {granted, math.ceil(wait)}
"""


class LimiterUnavailable(Exception):
    """Redis did not answer the limiter for longer than the pacer was told to wait."""


class LimiterStopped(Exception):
    """The call's stop key is set: no permit until it is gone (see the module's docstring)."""


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    retry_after: float  # seconds until the next permit conforms (0: one is available now)


class RateLimiter:
    """GCRA over Redis; see the module's docstring. Thread- and process-safe by construction."""

    def __init__(
        self,
        redis_client: RedisClient,
        *,
        prefix: str = KEY_PREFIX,
        tolerance: float = TOLERANCE_SECONDS,
        guard: float = GUARD_SECONDS,
        clock: Callable[[], float] | None = None,
        legacy_keys: bool = False,
    ) -> None:
        self.redis = redis_client
        # Seconds on any scale, read once per call: lets a test decide what time it is. None (the
        # default, and what production uses) is Redis's own clock.
        self.clock = clock
        self.prefix = prefix
        # Also keep the untagged key of each number in step (see the module's docstring).
        self.legacy_keys = legacy_keys
        self._tolerance_us = round(tolerance * 1_000_000)
        self._guard_us = round(guard * 1_000_000)
        # Registered once: later calls send only the script's SHA (EVALSHA).
        self._script = script_register(redis_client, GCRA_SCRIPT)

    def rate_keys(self, key: str) -> list[str]:
        """The Redis keys of `key`'s schedule: tagged for its own slot, and the legacy one."""
        tagged = f"{self.prefix}{{{key}}}"
        return [tagged, self.prefix + key] if self.legacy_keys else [tagged]

    def _call(
        self, key: str, rate: int, n: int, block_us: int, stop_keys: Sequence[str] = ()
    ) -> Grant:
        if not 1 <= rate <= 1_000_000:
            raise ValueError(f"rate must be a positive number of permits per second, not {rate}")
        clock = "" if self.clock is None else round(self.clock() * 1_000_000)
        rate_keys = self.rate_keys(key)
        args = [rate, max(n, 0), self._tolerance_us, self._guard_us, block_us, clock]
        granted, wait_us = self._script(keys=[*rate_keys, *stop_keys], args=[*args, len(rate_keys)])
        if int(granted) < 0:
            raise LimiterStopped(f"{stop_keys[0]} is set: no permit for {key}")
        return Grant(int(granted), int(wait_us) / 1_000_000)

    def acquire(self, key: str, rate: int, n: int = 1, *, stop_keys: Sequence[str] = ()) -> Grant:
        """Take up to `n` permits of `key` at `rate` per second, atomically, without waiting;
        `LimiterStopped` while any of `stop_keys` (whole Redis keys, no prefix, in `key`'s slot on
        a cluster) exists."""
        return self._call(key, rate, n, 0, stop_keys)

    def slow_down(self, key: str, seconds: float) -> Grant:
        """Grant nothing on `key` for `seconds` from now (Meta's 130429 for that number)."""
        return self._call(key, 1, 0, round(seconds * 1_000_000))


async def take(
    limiter: RateLimiter,
    key: str,
    rate: int,
    n: int = 1,
    *,
    timeout: float | None = None,
    stop_keys: Sequence[str] = (),
) -> int:
    """Wait until at least one of `n` permits is granted and return how many were.

    The Redis call itself is blocking (a local round trip is a fraction of a millisecond, and at
    most a few hundred happen a second); the waiting between calls is `asyncio.sleep`. With a
    `timeout`, returns 0 once it has passed without a grant. `LimiterStopped` once one of
    `stop_keys` is set.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        grant = (
            limiter.acquire(key, rate, n, stop_keys=stop_keys)
            if stop_keys
            else limiter.acquire(key, rate, n)
        )
        if grant.granted:
            return grant.granted
        pause = max(grant.retry_after, 0.0005)
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                return 0
            pause = min(pause, left)
        await asyncio.sleep(pause)


class AsyncPacer:
    """Hands permits of one key to the workers of one event loop, one permit per request.

    A worker calls `await pacer.wait()` right before it sends. Waiting workers queue up, and one
    of them at a time asks Redis for as many permits as there are waiters, so a loop with 64
    workers makes far fewer Redis calls than permits. Permits are never banked for later: a
    permit used long after its grant would break the window guarantee.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        key: str,
        rate: int,
        *,
        redis_wait: float = 0.0,
        stop_keys: Sequence[str] = (),
    ) -> None:
        self.limiter = limiter
        self.key = key
        self.rate = rate
        self.redis_wait = redis_wait
        # Its waiters get `LimiterStopped` once one of these is set (see the module's docstring).
        self.stop_keys = stop_keys
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._pump_task: asyncio.Task[None] | None = None

    @metrics.observe_seconds(metrics.LIMITER_WAIT_SECONDS)
    async def wait(self) -> None:
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        if self._pump_task is None:
            # Kept in an attribute: the loop holds only weak references to its tasks.
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())
        await waiter

    async def _pump(self) -> None:
        try:
            while self._waiters:
                # Cancelled waiters (a worker that gave up) need no permit.
                while self._waiters and self._waiters[0].done():
                    self._waiters.popleft()
                if not self._waiters:
                    break
                granted = await self._take_through_outage(len(self._waiters))
                while granted and self._waiters:
                    waiter = self._waiters.popleft()
                    if not waiter.done():
                        waiter.set_result(None)
                        granted -= 1
                # Let the granted workers send now, before the next (blocking) Redis call: a
                # permit is only good while its request leaves on time.
                await asyncio.sleep(0)
        except Exception as error:  # Redis is away for too long: let the workers see why
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
        finally:
            self._pump_task = None

    async def _take_through_outage(self, wanted: int) -> int:
        """`take`, retrying while Redis is unreachable for up to `redis_wait` seconds in all."""
        failing_since: float | None = None
        pause = OUTAGE_FIRST_PAUSE_SECONDS
        while True:
            try:
                granted = await take(
                    self.limiter, self.key, self.rate, wanted, stop_keys=self.stop_keys
                )
            except REDIS_AWAY as error:
                now = time.monotonic()
                if failing_since is None:
                    failing_since = now
                    logger.warning(
                        "Rate limiter of %s: Redis is unreachable (%s); waiting up to %s s",
                        self.key,
                        error,
                        self.redis_wait,
                    )
                waited = now - failing_since
                if waited >= self.redis_wait:
                    raise LimiterUnavailable(
                        f"Redis did not answer the rate limiter for {waited:.1f} s: {error}"
                    ) from error
                await asyncio.sleep(min(pause, self.redis_wait - waited))
                pause = min(pause * 2, OUTAGE_MAX_PAUSE_SECONDS)
                continue
            if failing_since is not None:
                outage = time.monotonic() - failing_since
                logger.warning(
                    "Rate limiter of %s: Redis answers again after %.1f s", self.key, outage
                )
            return granted


@lru_cache(maxsize=1)
def get_rate_limiter() -> RateLimiter:
    """The process's limiter on settings.REDIS_URL (a cluster's when settings.REDIS_CLUSTER)."""
    client = redis_from_url(settings.REDIS_URL, timeout=REDIS_SOCKET_TIMEOUT_SECONDS)
    return RateLimiter(client, legacy_keys=not settings.REDIS_CLUSTER)
