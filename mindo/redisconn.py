"""The service's own Redis clients: a plain Redis, or Redis Cluster when REDIS_CLUSTER is set.

What lives here is the limiter's schedule, the sends' stop marks, the drains' liveness marks and
the API's throttling counters: small keys, read and written by every worker and web server. On
Redis Cluster each command must touch keys of one hash slot; the keys that travel together (a
number's rate key and its sends' stop marks, in the limiter's script) carry the number as a hash
tag (`{...}`), so they share a slot (messaging.ratelimit). The Celery broker is not here: kombu
has no cluster transport, so CELERY_BROKER_URL stays a plain Redis (settings).

A cluster client learns the cluster's layout when it is made and again after a node refuses or
moves a slot, and its failures are not all `redis.RedisError`s: REDIS_AWAY and REDIS_ERRORS name
what the callers catch. Made, it must reach a node at once, so the process's cluster client is
made on its first command instead (LazyCluster): a worker that starts while the cluster is away
meets the outage in a command, where the limiter waits for Redis as for any outage.
"""

from __future__ import annotations

import threading
from typing import Any, TypeAlias

import redis
from django.conf import settings
from redis.cluster import RedisCluster
from redis.commands.core import Script
from redis.connection import Encoder
from redis.exceptions import ClusterDownError, RedisClusterException

RedisClient: TypeAlias = "redis.Redis | RedisCluster | LazyCluster"

# Redis cannot be reached now (or the cluster lost a slot's node): worth waiting for. A cluster
# client that reaches no node at all raises RedisClusterException, not a ConnectionError.
REDIS_AWAY: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    ClusterDownError,
    RedisClusterException,
)
# Anything Redis or the cluster client may raise.
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)


def redis_from_url(url: str, *, timeout: float) -> RedisClient:
    """A client of `url` with `timeout` seconds to connect and to answer: a cluster client when
    settings.REDIS_CLUSTER is set (`url` names any one node; the client finds the others)."""
    if settings.REDIS_CLUSTER:
        return LazyCluster(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)


class LazyCluster:
    """A RedisCluster made on the first command that needs it (again after a failed attempt),
    then every attribute is the cluster client's."""

    def __init__(self, url: str, **options: Any) -> None:
        self._url = url
        self._options = options
        self._client: RedisCluster | None = None
        self._making = threading.Lock()

    def cluster(self) -> RedisCluster:
        """The client, made now if it was not yet; raises one of REDIS_AWAY when no node answers."""
        with self._making:
            if self._client is None:
                self._client = RedisCluster.from_url(self._url, **self._options)
            return self._client

    def get_encoder(self) -> Encoder:
        """A script's text is encoded to compute its SHA before any command: the cluster
        client's default encoding, without making the client."""
        return Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cluster(), name)


def script_register(client: RedisClient, script: str) -> Script:
    """`client.register_script(script)`: run by EVALSHA (its SHA alone), loaded again after a
    restart forgot it; on a cluster, on the node of the call's keys."""
    return Script(client, script)  # type: ignore[arg-type]  # typed for redis.Redis only
