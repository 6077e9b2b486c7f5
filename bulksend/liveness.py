"""A drain keeps a short-lived mark of its send in Redis, so the reaper leaves that send alone.

The mark lives ALIVE_SECONDS and a heartbeat renews it every HEARTBEAT_SECONDS for as long as
the drain runs (between batches and while one is sent or waits for Redis): a drain that dies
stops renewing it, and within seconds the reaper wakes another. The heartbeat stops at the
drain's own deadline, so a drain stuck for good does not keep its send to itself.

Redis being away never stops a drain here: a mark that cannot be written is logged, and a mark
that cannot be read counts as absent. That may wake a second drain of a live send, which is safe:
claims skip what another drain holds (SKIP LOCKED), and every settle is guarded by the status.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from functools import lru_cache

from django.conf import settings

from messaging.ratelimit import REDIS_SOCKET_TIMEOUT_SECONDS
from mindo.redisconn import REDIS_ERRORS, RedisClient, redis_from_url

logger = logging.getLogger(__name__)

ALIVE_KEY = "bulksend:drain-alive:{}"
ALIVE_SECONDS = 15
HEARTBEAT_SECONDS = 5.0  # a third of the mark's life: two renewals may fail before it lapses


@lru_cache(maxsize=1)
def redis_client() -> RedisClient:
    """The process's client for the drains' marks in Redis (this module's and
    bulksend.stopping's): one client (and its connection pool) per process, not a new connection
    per batch. A mark is one key, touched by one command at a time: on a cluster it needs no hash
    tag and lives in whichever slot its name falls in."""
    return redis_from_url(settings.REDIS_URL, timeout=REDIS_SOCKET_TIMEOUT_SECONDS)


def drain_alive_mark(bulk_send_id: uuid.UUID | str) -> bool:
    """Mark the send as being drained for ALIVE_SECONDS; False (logged) if Redis is away."""
    try:
        redis_client().set(ALIVE_KEY.format(bulk_send_id), 1, ex=ALIVE_SECONDS)
    except REDIS_ERRORS as error:
        logger.warning("Cannot mark the drain of send %s alive: %s", bulk_send_id, error)
        return False
    return True


def drain_alive_clear(bulk_send_id: uuid.UUID | str) -> None:
    try:
        redis_client().delete(ALIVE_KEY.format(bulk_send_id))
    except REDIS_ERRORS as error:
        # The mark expires by itself within ALIVE_SECONDS.
        logger.warning("Cannot clear the drain mark of send %s: %s", bulk_send_id, error)


def drain_is_alive(bulk_send_id: uuid.UUID | str) -> bool:
    """Whether a drain marked the send lately; False when Redis cannot say (see the module)."""
    try:
        return bool(redis_client().exists(ALIVE_KEY.format(bulk_send_id)))
    except REDIS_ERRORS as error:
        logger.warning("Cannot read the drain mark of send %s: %s", bulk_send_id, error)
        return False


def drain_may_be_alive(bulk_send_id: uuid.UUID | str) -> bool:
    """Whether a drain may hold the send: its mark is there, or Redis cannot say (the opposite
    answer of `drain_is_alive`'s, for a caller that must not take a live drain for dead)."""
    try:
        return bool(redis_client().exists(ALIVE_KEY.format(bulk_send_id)))
    except REDIS_ERRORS:
        return True


class DrainHeartbeat:
    """The send's mark, renewed by a thread between `start()` and `stop()`.

    A thread rather than the drain's event loop, because the drain also blocks outside it
    (claiming and settling in PostgreSQL) and inside it (the limiter's Redis calls).
    """

    def __init__(self, bulk_send_id: uuid.UUID | str, *, until: float) -> None:
        self.bulk_send_id = bulk_send_id
        self.until = until  # time.monotonic() after which the mark is no longer renewed
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self._beat, name=f"drain-heartbeat-{bulk_send_id}", daemon=True
        )

    def start(self) -> None:
        drain_alive_mark(self.bulk_send_id)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2 * REDIS_SOCKET_TIMEOUT_SECONDS)
        drain_alive_clear(self.bulk_send_id)

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            if time.monotonic() > self.until:
                return
            drain_alive_mark(self.bulk_send_id)
