"""A drain marks its send alive in Redis between batches, so the reaper leaves that send alone.

The mark expires by itself: a drain that dies stops renewing it, and the reaper steps in.
"""

from __future__ import annotations

import uuid
from functools import lru_cache

import redis
from django.conf import settings

ALIVE_KEY = "bulksend:drain-alive:{}"


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    # One client (and its connection pool) per process, not a new connection per batch.
    return redis.Redis.from_url(settings.REDIS_URL)


def drain_alive_mark(bulk_send_id: uuid.UUID | str) -> None:
    _redis().set(ALIVE_KEY.format(bulk_send_id), 1, ex=settings.DELIVERY_LEASE_SECONDS)


def drain_alive_clear(bulk_send_id: uuid.UUID | str) -> None:
    _redis().delete(ALIVE_KEY.format(bulk_send_id))


def drain_is_alive(bulk_send_id: uuid.UUID | str) -> bool:
    return bool(_redis().exists(ALIVE_KEY.format(bulk_send_id)))
