"""Probes for load balancers and orchestrators: liveness (`/healthz`) and readiness (`/readyz`).

Neither needs an API key. Liveness does no I/O at all, so a slow database never gets a healthy
process restarted; readiness asks PostgreSQL and Redis with short timeouts, so a dead dependency
takes a process out of rotation within a few seconds instead of hanging the probe. "Dead" includes
a server that accepts connections and never answers (a hung host, a black-holing firewall), which
only a timeout on every step notices: connecting, and each question asked.

Both are answered before Django's host check (mindo.paths.OperatorPathsMiddleware):
orchestrators probe a process by its IP address, a Host that DJANGO_ALLOWED_HOSTS rightly does not
list.
"""

from __future__ import annotations

import contextlib
import logging

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from mindo.redisconn import REDIS_ERRORS, redis_from_url

logger = logging.getLogger(__name__)

# Seconds a probe waits for Redis to accept a connection and to answer PING.
REDIS_TIMEOUT_SECONDS = 1.0
# Seconds a probe waits for PostgreSQL to accept a connection and log it in (libpq counts whole
# seconds, and at least 2), then milliseconds it lets the server spend on the probe's query.
DATABASE_CONNECT_TIMEOUT_SECONDS = 2
DATABASE_STATEMENT_TIMEOUT_MS = 1000

OK = "ok"
DOWN = "down"


def _database() -> BaseDatabaseWrapper:
    return connections[DEFAULT_DB_ALIAS]


def _probe_connection() -> BaseDatabaseWrapper:
    """A connection of the probe's own to the database the process uses, bounded in time.

    Not the process's connection: that one was opened without a connect timeout and may sit on
    a socket the server stopped answering, where a query would wait for the kernel's TCP timeout
    (minutes). A new connection also proves that the server still takes connections.
    """
    database = _database()
    options = {
        key: value
        for key, value in database.settings_dict.get("OPTIONS", {}).items()
        if key != "pool"  # one connection, closed after the probe
    }
    server_options = options.get("options", "")
    options["options"] = f"{server_options} -c statement_timeout={DATABASE_STATEMENT_TIMEOUT_MS}"
    options["connect_timeout"] = DATABASE_CONNECT_TIMEOUT_SECONDS
    settings_dict = {
        **database.settings_dict,
        "OPTIONS": options,
        "CONN_MAX_AGE": 0,
        "CONN_HEALTH_CHECKS": False,
    }
    return type(database)(settings_dict, alias="readiness")


def database_check() -> bool:
    """True when PostgreSQL takes a connection and answers a trivial query within the timeouts."""
    probe = _probe_connection()
    try:
        with probe.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.warning("Readiness: the database does not answer", exc_info=True)
        return False
    finally:
        probe.close()
    return True


def redis_check() -> bool:
    """True when Redis answers PING within REDIS_TIMEOUT_SECONDS."""
    # A cluster's client asks every primary, and is made (reaching a node) by the PING itself.
    client = redis_from_url(settings.REDIS_URL, timeout=REDIS_TIMEOUT_SECONDS)
    try:
        return bool(client.ping())
    except Exception:
        logger.warning("Readiness: Redis does not answer", exc_info=True)
        return False
    finally:
        with contextlib.suppress(*REDIS_ERRORS):
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
