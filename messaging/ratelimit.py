"""One atomic limiter per phone number, in Redis, shared by every worker on every machine.

The algorithm is GCRA (the generic cell rate algorithm, a token bucket written as one number):
each key stores its TAT, the theoretical arrival time of the next permit, in microseconds of
Redis's clock. With emission interval T (seconds per permit) and tolerance tau, a call for n
permits at Redis time `now` runs, atomically, in one Lua script:

1. Read `now` from Redis (`TIME`), never from the caller, so machines with drifting clocks agree
   (a test may inject a clock instead: `RateLimiter(..., clock=...)`).
2. TAT' = max(stored TAT + push, now): an idle key has no debt and keeps no credit beyond tau
   (push: what permits used late owe, 0 but from the pacer's `reserve`).
3. Permit i of the call (i = 0, 1, ...) conforms when TAT' + i*T - tau - h <= now (h: the
   horizon of a reservation, 0 for `acquire`); grant the k conforming ones,
   k = min(n, floor((now + tau + h - TAT') / T) + 1). k may be less than n.
4. Store TAT = TAT' + k*T, expiring once it lies in the past (an expired key means "no debt").
5. Answer k, retry_after = max(0, TAT - tau - h - now) (when the next permit will conform) and
   TAT' - now (where the first granted permit's slot lies).

The window guarantee, at the moment requests leave. Every granted permit p has a slot s_p
(TAT' + i*T), slots T apart. The drain's pacer (`AsyncPacer`) reserves permits a little ahead
(`reserve`: up to RESERVE_AHEAD_SECONDS further than tau) and sends each request no earlier than
its slot and no later than tau after it: a worker that wakes later either pays for the excess,
every slot not granted yet moving back by it (`reserve(push=...)`), or skips a slot a second
later (`reserve(skips=...)`, below), or forfeits the permit (`Permit.debt_at`). So any rate+1
consecutive requests leave at least rate*T - tau apart (plus whatever was paid in between).
Choosing

    T = (1 s + GUARD + TOLERANCE) / rate,   tau = TOLERANCE

makes that at least 1 s + GUARD: no 1-second window, sliding and measured when requests leave
the worker, ever holds more than `rate`, and the GUARD keeps it so at Meta when requests take
different times to get there (the write on the socket, the network, the receiver reading them).
Before the pacer reserved slots, the guarantee held at grant time only, and a worker's event
loop that ran its granted requests late (a busy machine) could land a late group on top of the
next on-time group: 1,073 arrivals in a second at 1,000/s across two hosts.

Paying by skips. Moving every later slot back costs the schedule the whole excess lateness, for
good. When that is more than one interval T per late permit (the largest excess since the last
payment covers them all), each late permit skips one slot instead: the slot, among
those not granted yet, that is the last no later than rate*T (a second and the margin) after the
late permit's slot s. A request leaving at d = s + l (l its lateness, guard included) adds one
to the windows (t - 1 s, t] that hold d but not s, and takes one from the others; each of those
windows holds the slots of (t - 1 s - GUARD - TOLERANCE, t], at most `rate`, of which the skipped
one (which lies after d - GUARD - TOLERANCE and no later than s + rate*T <= t) is one: the count
stays within the rate. Every late request skips its own slot, so the same holds for several in
one window. A skip costs T, 1 ms at 1,000/s, where the excess of a worker a busy machine woke
late is a few milliseconds: at 1,000/s across two hosts on a loaded machine, moving the slots
back had cost 9% of the rate (531 payments of 3.7 ms on average in 22 s). Like a payment, a
skip must reach Redis before its slot is granted, a second later; one that comes later finds
nothing to skip (`LATE_PAYMENT_MAX_SECONDS` keeps them far from that). During a rolling deploy,
workers of a version before skips grant the slots without leaving any out, as they moved slots
back before: a window can then hold one more per late permit until they are gone.

The price is the average: rate / (1 + GUARD + TOLERANCE), 1.1% under the rate with the values
below, plus the slots paid for or forfeited by late workers (none on a quiet machine). The split
of those 11 ms: TOLERANCE 7 ms is the lateness a worker's wake-up may have for free (an event
loop with 64 workers on a busy 2-core machine wakes a sleeper 3 ms late at the median, 9 ms at
the 90th percentile); GUARD 4 ms is what is left for the path after that check, which on one
machine is well under a millisecond. A larger margin would cut the paid and forfeited slots
under load but costs its share of the average on every machine. `acquire` (single sends, which
use a permit at once) keeps its meaning: a caller may take a permit up to tau before its slot,
1 + floor(tau / T) at once.

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
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from mindo import metrics
from mindo.redisconn import REDIS_AWAY, RedisClient, redis_from_url, script_register

logger = logging.getLogger(__name__)

TOLERANCE_SECONDS = 0.007
GUARD_SECONDS = 0.004
KEY_PREFIX = "mindo:rate:"
# The limiter's calls block the drain's event loop: a Redis that stopped answering (a lost
# network rather than a crash, which is refused at once) must not hold it for minutes.
REDIS_SOCKET_TIMEOUT_SECONDS = 2.0
# Retrying a Redis that is away: the first pause (see the docstring), then doubled up to the cap.
OUTAGE_FIRST_PAUSE_SECONDS = 1.0 + GUARD_SECONDS
OUTAGE_MAX_PAUSE_SECONDS = 2.0
# How far ahead of its slot the pacer reserves a permit (see `AsyncPacer`): more than a Redis round
# trip and a busy loop's usual lateness, so that no slot goes by unasked for; little enough that
# a host that stalls strands few permits (they are forfeited, lost to every host).
RESERVE_AHEAD_SECONDS = 0.025
# The most lateness a permit may pay for rather than be forfeited (see `Permit.debt_at`). Far
# below a second: the payment must reach Redis before anyone reserves the slots a second later.
LATE_PAYMENT_MAX_SECONDS = 0.05

# KEYS[1..r]: the number's key and its legacy key (both read, the later TAT wins, both written),
# KEYS[r+1]: the number's skips (a sorted set: each a slot to leave out, scored by the latest
# moment that slot may lie at, see `AsyncPacer`), KEYS[r+2..]: stop keys, any of which refuses
# every permit while it exists (answer {-1, 0, 0, 0}).
# ARGV: rate (permits/s), n (permits wanted, 0 to only slow down), tolerance (us), guard (us),
# block (us: slow_down's pause, 0 otherwise), now (us: an injected clock's reading, for tests;
# empty for Redis's TIME), r (how many of KEYS are the number's), horizon (us: how far ahead of
# the tolerance slots may be reserved, 0 for `acquire`), push (us: every later slot moves back by
# this much, even when stopped: permits used late, see `AsyncPacer`), skips (us: the slots, on
# this clock, of permits used late that each skip one slot a second after theirs; space-separated,
# recorded even when stopped).
# Answer: permits granted, us until the next one can be, us from now to the first one's slot, and
# that slot on the script's clock (us). A skip after a granted slot ends the grant there, so that
# the granted slots are evenly spaced.
GCRA_SCRIPT = """
local rate = tonumber(ARGV[1])
local wanted = tonumber(ARGV[2])
local tolerance = tonumber(ARGV[3])
local guard = tonumber(ARGV[4])
local block = tonumber(ARGV[5])
local injected = tonumber(ARGV[6])
local rate_keys = tonumber(ARGV[7])
local ahead = tolerance + tonumber(ARGV[8])
local push = tonumber(ARGV[9])
local skips = KEYS[rate_keys + 1]
local stopped = false
for i = rate_keys + 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    stopped = true
  end
end
if stopped and push == 0 and ARGV[10] == '' then
  return {-1, 0, 0, 0}
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
    tat = math.max(tonumber(stored) + push, tat)
  end
end
for slot in string.gmatch(ARGV[10], '%S+') do
  -- The latest moment its skip may lie at: the slot `rate` places after it, were none moved.
  local latest = tonumber(slot) + rate * interval
  redis.call('ZADD', skips, latest, slot)
  local ttl = 60000
  if not injected then
    ttl = math.ceil((latest - now) / 1000) + 1000
  end
  redis.call('PEXPIRE', skips, ttl)
end
if stopped then
  wanted = 0
end
local granted = 0
local first_slot = tat - now
local first_at = 0
local due = {}
if wanted > 0 then
  due = redis.call('ZRANGEBYSCORE', skips, '-inf', now + ahead + interval, 'WITHSCORES')
end
local next_skip = 1
while granted < wanted and tat <= now + ahead do
  while next_skip < #due and tonumber(due[next_skip + 1]) < tat do
    -- Its slot was granted before it came (it came over a second late): nothing to skip.
    redis.call('ZREM', skips, due[next_skip])
    next_skip = next_skip + 2
  end
  if next_skip < #due and tonumber(due[next_skip + 1]) < tat + interval then
    -- The last slot no later than the skip's moment: left out.
    redis.call('ZREM', skips, due[next_skip])
    next_skip = next_skip + 2
    tat = tat + interval
    if granted > 0 then
      break
    end
  else
    if granted == 0 then
      first_slot = tat - now
      first_at = math.floor(tat)
    end
    granted = granted + 1
    tat = tat + interval
  end
end
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
local wait = math.max(tat - ahead - now, 0)
if stopped then
  return {-1, 0, 0, 0}
end
return {granted, math.ceil(wait), math.ceil(first_slot), first_at}
"""


class LimiterUnavailable(Exception):
    """Redis did not answer the limiter for longer than the pacer was told to wait."""


class LimiterStopped(Exception):
    """The call's stop key is set: no permit until it is gone (see the module's docstring)."""


@dataclass(frozen=True, slots=True)
class Grant:
    granted: int
    retry_after: float  # seconds until the next permit conforms (0: one is available now)
    # Seconds from Redis's `now` of the call to the first granted permit's slot (the others follow
    # `interval` apart); 0 when nothing was granted.
    first_slot: float = 0.0
    interval: float = 0.0
    first_at_us: int = 0  # the first granted permit's slot on the limiter's clock (us)


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
        self.tolerance = tolerance
        self.guard = guard
        self._tolerance_us = round(tolerance * 1_000_000)
        self._guard_us = round(guard * 1_000_000)
        # Registered once: later calls send only the script's SHA (EVALSHA).
        self._script = script_register(redis_client, GCRA_SCRIPT)

    def rate_keys(self, key: str) -> list[str]:
        """The Redis keys of `key`'s schedule: tagged for its own slot, and the legacy one."""
        tagged = f"{self.prefix}{{{key}}}"
        return [tagged, self.prefix + key] if self.legacy_keys else [tagged]

    def skips_key(self, key: str) -> str:
        """The Redis key of the slots `key`'s schedule is to leave out (in the number's slot)."""
        return f"{self.prefix}{{{key}}}:skips"

    def interval(self, rate: int) -> float:
        """Seconds between two permits' slots at `rate` (see the module's docstring)."""
        return (1.0 + (self._guard_us + self._tolerance_us) / 1_000_000) / rate

    def _call(
        self,
        key: str,
        rate: int,
        n: int,
        block_us: int,
        stop_keys: Sequence[str] = (),
        horizon: float = 0.0,
        push: float = 0.0,
        skips: Sequence[int] = (),
    ) -> Grant:
        if not 1 <= rate <= 1_000_000:
            raise ValueError(f"rate must be a positive number of permits per second, not {rate}")
        clock = "" if self.clock is None else round(self.clock() * 1_000_000)
        rate_keys = self.rate_keys(key)
        args = [rate, max(n, 0), self._tolerance_us, self._guard_us, block_us, clock]
        granted, wait_us, first_us, first_at_us = self._script(
            keys=[*rate_keys, self.skips_key(key), *stop_keys],
            args=[
                *args,
                len(rate_keys),
                round(max(horizon, 0.0) * 1_000_000),
                math.ceil(max(push, 0.0) * 1_000_000),
                " ".join(str(slot) for slot in skips),
            ],
        )
        if int(granted) < 0:
            raise LimiterStopped(f"{stop_keys[0]} is set: no permit for {key}")
        return Grant(
            int(granted),
            int(wait_us) / 1_000_000,
            first_slot=int(first_us) / 1_000_000 if int(granted) else 0.0,
            interval=self.interval(rate),
            first_at_us=int(first_at_us),
        )

    def acquire(self, key: str, rate: int, n: int = 1, *, stop_keys: Sequence[str] = ()) -> Grant:
        """Take up to `n` permits of `key` at `rate` per second, atomically, without waiting;
        `LimiterStopped` while any of `stop_keys` (whole Redis keys, no prefix, in `key`'s slot on
        a cluster) exists."""
        return self._call(key, rate, n, 0, stop_keys)

    def reserve(
        self,
        key: str,
        rate: int,
        n: int,
        *,
        horizon: float,
        push: float = 0.0,
        skips: Sequence[int] = (),
        stop_keys: Sequence[str] = (),
    ) -> Grant:
        """`acquire`, also granting permits whose slots lie up to `horizon` seconds further in
        the future; each is good only at its slot (`Grant.first_slot`, then `interval` apart):
        see `AsyncPacer`. First (also when a stop key refuses the permits), what permits used
        late owe: every slot not granted yet moves `push` seconds later, and for each of `skips`
        (a late permit's slot on the limiter's clock, `Permit.at_us`) the last slot no later
        than `rate` intervals after it is left out."""
        return self._call(key, rate, n, 0, stop_keys, horizon, push, skips)

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


@dataclass(frozen=True, slots=True)
class Permit:
    """One reserved permit, on the pacer's clock. Its request leaves no earlier than `slot`; how
    late it leaves is counted from `due`, which is never after the slot's true moment (see
    `permits_of`)."""

    slot: float
    due: float
    interval: float  # the schedule's, between two slots
    stops: int  # how many stops the pacer had met when it was granted (see `AsyncPacer.wait`)
    at_us: int = 0  # its slot on the limiter's clock (us): what a skip is counted from

    def debt_at(self, now: float, tolerance: float) -> float | None:
        """What using the permit at `now` costs the schedule: nothing up to `tolerance` after its
        slot (the margin the interval carries); beyond that, while under LATE_PAYMENT_MAX_SECONDS,
        its excess lateness, by which every slot not granted yet must move back (see
        `AsyncPacer`); later still None: the permit is forfeited (a stall's permits are better
        lost than the whole number's schedule pushed back that far)."""
        excess = now - self.due - tolerance
        if excess <= 0:
            return 0.0
        return excess if excess < LATE_PAYMENT_MAX_SECONDS else None


def permits_of(grant: Grant, *, asked_at: float, answered_at: float, stops: int) -> list[Permit]:
    """The permits of `grant` on the caller's clock, from its readings just before (`asked_at`)
    and after (`answered_at`) the Redis call: Redis read its clock somewhere between, so a slot
    is waited for from the later reading (never early) and its lateness counted from the
    earlier one (never underestimated)."""
    return [
        Permit(
            slot=answered_at + grant.first_slot + i * grant.interval,
            due=asked_at + grant.first_slot + i * grant.interval,
            interval=grant.interval,
            stops=stops,
            at_us=grant.first_at_us + round(i * grant.interval * 1_000_000),
        )
        for i in range(grant.granted)
    ]


class AsyncPacer:
    """Hands permits of one key to the workers of one event loop, one permit per request.

    A worker calls `await pacer.wait()` right before it sends. Waiting workers queue up, and one
    of them at a time (the pump) reserves from Redis as many permits as there are waiters, with
    slots up to `ahead` seconds in the future, so a loop with 64 workers makes far fewer Redis
    calls than permits, and neither the Redis round trip nor a pump that wakes late lets a slot
    go by unasked for. Each worker then sleeps until its permit's slot. A permit is good only
    for its slot: a worker that wakes more than the limiter's tolerance after it either pays for
    the lateness, moving every later slot of the number back by it (the next Redis call carries
    the debt), or, when that would cost more than the one slot, forfeits the permit and queues
    for a new one (`Permit.debt_at`). Either way a late group of requests never lands on top of
    the next on-time group: the window guarantee holds at the moment requests leave (see the
    module's docstring). Permits are never banked for later.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        key: str,
        rate: int,
        *,
        redis_wait: float = 0.0,
        stop_keys: Sequence[str] = (),
        ahead: float = RESERVE_AHEAD_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limiter = limiter
        self.key = key
        self.rate = rate
        self.redis_wait = redis_wait
        self.ahead = ahead
        # Its waiters get `LimiterStopped` once one of these is set (see the module's docstring).
        self.stop_keys = stop_keys
        # This process's clock, for the slots (the limiter's, when a test injects one: then the
        # limiter's `now` is that clock's too).
        self.clock = clock
        self.forfeited = 0  # permits whose worker woke too late to use them
        self.paid_late = 0  # permits used late, their lateness owed to the schedule
        self._debt = 0.0  # seconds every later slot must move back by: not told to Redis yet
        self._skips: list[int] = []  # late permits' slots (`Permit.at_us`): not told to Redis yet
        self._stops = 0  # stop keys met so far: a permit granted before the last one is void
        self._stop_error: LimiterStopped | None = None
        self._waiters: deque[asyncio.Future[Permit]] = deque()
        self._pump_task: asyncio.Task[None] | None = None
        self._pump_wake: asyncio.Future[None] | None = None  # ends the pump's pause early

    @metrics.observe_seconds(metrics.LIMITER_WAIT_SECONDS)
    async def wait(self) -> None:
        while True:
            permit = await self._permit()
            early = permit.slot - self.clock()
            if early > 0:
                await asyncio.sleep(early)
            if permit.stops != self._stops and self._stop_error is not None:
                # The send was stopped while this worker slept: no request after that.
                raise self._stop_error
            debt = permit.debt_at(self.clock(), self.limiter.tolerance)
            if debt is None:
                self.forfeited += 1
                metrics.LIMITER_FORFEITS.inc()
                continue
            if debt:
                self.paid_late += 1
                metrics.LIMITER_PAID_LATE.inc()
                # Either way of paying covers every permit used late since the last payment
                # (`_reserve` takes the cheaper). Not a sum: moving every later slot back by the
                # largest lateness keeps each late permit a second plus the guard from the ones
                # it could share a window with (a second of slots later, not granted yet); or
                # each skips a slot of those (see the module's docstring).
                self._debt = max(self._debt, debt)
                self._skips.append(permit.at_us)
                # Told to Redis at once, even with nobody else waiting or the pump pausing.
                self._pump_start()
                if self._pump_wake is not None and not self._pump_wake.done():
                    self._pump_wake.set_result(None)
            return

    async def _permit(self) -> Permit:
        waiter: asyncio.Future[Permit] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._pump_start()
        return await waiter

    def _pump_start(self) -> None:
        if self._pump_task is None:
            # Kept in an attribute: the loop holds only weak references to its tasks.
            self._pump_task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while self._waiters or self._debt:
                # Cancelled waiters (a worker that gave up) need no permit.
                while self._waiters and self._waiters[0].done():
                    self._waiters.popleft()
                if not self._waiters:
                    await self._reserve_through_outage(0)  # only the debt to pay
                    continue
                permits, retry_after = await self._reserve_through_outage(len(self._waiters))
                for permit in permits:
                    while self._waiters and self._waiters[0].done():
                        self._waiters.popleft()
                    if not self._waiters:
                        self.forfeited += 1  # its worker gave up meanwhile
                        metrics.LIMITER_FORFEITS.inc()
                        continue
                    self._waiters.popleft().set_result(permit)
                # Let the granted workers start their sleeps; with waiters left, the reservation
                # is full up to `ahead`: come back once a part of it has room again, so that
                # each call reserves a few permits.
                await self._pump_pause(max(retry_after, self.ahead / 4) if self._waiters else 0)
        except Exception as error:  # stopped, or Redis away for too long: tell the workers why
            if isinstance(error, LimiterStopped):
                self._stops += 1
                self._stop_error = error
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(error)
        finally:
            self._pump_task = None

    async def _pump_pause(self, seconds: float) -> None:
        """`asyncio.sleep`, cut short by a debt to pay (`wait`)."""
        wake = self._pump_wake = asyncio.get_running_loop().create_future()
        nap = asyncio.ensure_future(asyncio.sleep(seconds))
        try:
            await asyncio.wait([nap, wake], return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            self._pump_wake = None

    def payment(self, debt: float, late: list[int]) -> tuple[float, list[int]]:
        """How the permits used late since the last payment pay (`reserve`'s push and skips):
        the cheaper way, one slot each or the largest lateness once (a stall's many late
        permits)."""
        if late and len(late) * self.limiter.interval(self.rate) < debt:
            return 0.0, late
        return debt, []

    async def _reserve(self, wanted: int) -> tuple[list[Permit], float]:
        """At least one permit (waiting for it; none when `wanted` is 0: only the debt is paid),
        and when the reservation has room again."""
        while True:
            asked_at = self.clock()
            debt, self._debt = self._debt, 0.0
            late, self._skips = self._skips, []
            push, skips = self.payment(debt, late)
            try:
                grant = self.limiter.reserve(
                    self.key,
                    self.rate,
                    wanted,
                    horizon=self.ahead,
                    push=push,
                    skips=skips,
                    stop_keys=self.stop_keys,
                )
            except REDIS_AWAY:
                # Not paid: the next call carries it.
                self._debt = max(self._debt, debt)
                self._skips = late + self._skips
                raise
            if grant.granted or not wanted:
                permits = permits_of(
                    grant, asked_at=asked_at, answered_at=self.clock(), stops=self._stops
                )
                return permits, grant.retry_after
            await asyncio.sleep(max(grant.retry_after, 0.0005))

    async def _reserve_through_outage(self, wanted: int) -> tuple[list[Permit], float]:
        """`_reserve`, retrying while Redis is unreachable for up to `redis_wait` s in all."""
        failing_since: float | None = None
        pause = OUTAGE_FIRST_PAUSE_SECONDS
        while True:
            try:
                reserved = await self._reserve(wanted)
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
            return reserved


@lru_cache(maxsize=1)
def get_rate_limiter() -> RateLimiter:
    """The process's limiter on settings.REDIS_URL (a cluster's when settings.REDIS_CLUSTER)."""
    client = redis_from_url(settings.REDIS_URL, timeout=REDIS_SOCKET_TIMEOUT_SECONDS)
    return RateLimiter(client, legacy_keys=not settings.REDIS_CLUSTER)
