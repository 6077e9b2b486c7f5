"""Probes for load balancers and orchestrators: liveness (`/healthz`) and readiness (`/readyz`).

Neither needs an API key. Liveness does no I/O at all, so a slow database never gets a healthy
process restarted; readiness asks PostgreSQL and Redis with short timeouts, so a dead dependency
takes a process out of rotation within a couple of seconds instead of hanging the probe.

Both are answered before Django's host check (mindo.paths.OperatorPathsMiddleware):
orchestrators probe a process by its IP address, a Host that DJANGO_ALLOWED_HOSTS rightly does not
list.
"""

from __future__ import annotations

import logging

import redis
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

logger = logging.getLogger(__name__)

# Seconds a probe waits for Redis to accept a connection and to answer PING.
REDIS_TIMEOUT_SECONDS = 1.0

OK = "ok"
DOWN = "down"


def _database() -> BaseDatabaseWrapper:
    return connections[DEFAULT_DB_ALIAS]


def database_check() -> bool:
    """True when PostgreSQL answers a trivial query on this process's connection."""
    try:
        with _database().cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.warning("Readiness: the database does not answer", exc_info=True)
        return False
    return True


def redis_check() -> bool:
    """True when Redis answers PING within REDIS_TIMEOUT_SECONDS."""
    client = redis.Redis.from_url(
        settings.REDIS_URL,
        socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
        socket_timeout=REDIS_TIMEOUT_SECONDS,
    )
    try:
        return bool(client.ping())
    except Exception:
        logger.warning("Readiness: Redis does not answer", exc_info=True)
        return False
    finally:
        client.close()


@never_cache
@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """The process is alive and serving requests."""
    return JsonResponse({"status": OK})


@never_cache
@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    """PostgreSQL and Redis both answer: 200, else 503 naming what is down."""
    checks = {
        "database": OK if database_check() else DOWN,
        "redis": OK if redis_check() else DOWN,
    }
    ready = all(state == OK for state in checks.values())
    return JsonResponse(
        {"status": OK if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )
