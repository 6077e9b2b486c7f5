"""Requests per API key and scope, counted in Redis so that every web server shares the count.

Each key has three budgets: `send` (POST send-bulk, which writes a whole send), `single` (POST
send/, one message) and `read` (everything else), at API_THROTTLE_SEND_RATE,
API_THROTTLE_SINGLE_RATE and API_THROTTLE_READ_RATE. A budget is a fixed
window: one Redis counter per key, scope and window, incremented atomically and expiring with
its window. The price of so simple a counter is the window's edge, where a client may spend two
budgets in a short time; per key, that is harmless. Throttling protects the service but is not
what keeps it correct, so when Redis cannot be reached every request is let through.
"""

from __future__ import annotations

import logging
import time
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.commands.core import Script
from rest_framework.request import Request
from rest_framework.throttling import BaseThrottle

from mindo.models import ApiKey
from mindo.redisconn import REDIS_ERRORS, redis_from_url, script_register

logger = logging.getLogger(__name__)

SEND_SCOPE = "send"
SINGLE_SCOPE = "single"
READ_SCOPE = "read"
KEY_PREFIX = "mindo:throttle:"
# A request waits at most this long for Redis before it is let through unthrottled.
REDIS_TIMEOUT_SECONDS = 0.5
PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def rate_parse(rate: str, *, setting: str) -> tuple[int, int]:
    """`"60/min"` as (60, 60): requests and the seconds of their window, as DRF writes rates."""
    count, _, period = rate.partition("/")
    seconds = PERIOD_SECONDS.get(period[:1])
    if not count.isdigit() or int(count) < 1 or seconds is None:
        raise ImproperlyConfigured(f"{setting} must read like 60/min, not {rate!r}.")
    return int(count), seconds


def throttle_key(scope: str, api_key_id: int, window: int) -> str:
    return f"{KEY_PREFIX}{scope}:{api_key_id}:{window}"


def now() -> float:
    """The clock of the windows (a function, so tests can freeze it)."""
    return time.time()


# KEYS[1]: the window's counter; ARGV[1]: the window's seconds. One key, so one slot on a cluster
# (where a client's MULTI/EXEC pipeline is not to be had): a script keeps the two commands atomic.
COUNT_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1], 'NX')
return count
"""


@lru_cache(maxsize=4)
def _counter(url: str, cluster: bool) -> Script:
    """The counting script on a client of `url` (a cluster's when `cluster`), made once."""
    return script_register(redis_from_url(url, timeout=REDIS_TIMEOUT_SECONDS), COUNT_SCRIPT)


def _count(key: str, period: int) -> int:
    """Add one request to `key` and return its count, the first setting the window's expiry."""
    count = _counter(settings.REDIS_URL, settings.REDIS_CLUSTER)(keys=[key], args=[period])
    return int(count)


class ApiKeyRateThrottle(BaseThrottle):
    """Counts by the authenticating ApiKey's id, in the view's `throttle_scope` (read if none)."""

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request: Request, view: Any) -> bool:
        api_key = request.auth
        if not isinstance(api_key, ApiKey):
            return True  # only the views of the public API take a key
        scope = getattr(view, "throttle_scope", None) or READ_SCOPE
        setting = f"API_THROTTLE_{scope.upper()}_RATE"
        limit, period = rate_parse(getattr(settings, setting), setting=setting)
        moment = now()
        window = int(moment // period)
        try:
            count = _count(throttle_key(scope, api_key.pk, window), period)
        except REDIS_ERRORS as error:
            logger.warning("Throttling is off while Redis cannot be reached: %s", error)
            return True
        if count <= limit:
            return True
        self.wait_seconds = (window + 1) * period - moment
        return False

    def wait(self) -> float | None:
        return self.wait_seconds
