"""Prometheus metrics: what the service counts as it works, and the `/metrics` endpoint.

Two kinds:
- Counters and histograms, bumped by one-line calls where the work happens (accepting a send,
  settling a drain's batch, a Graph API request, waiting for the limiter, storing and applying
  a webhook body). Each process counts its own; with PROMETHEUS_MULTIPROC_DIR set (gunicorn's
  workers, Celery's children) every process writes its samples to files there and a scrape adds
  them up, whichever process answers it.
- Gauges read from the database when scraped (webhook lag, pending messages per number, quota
  room per portfolio): each app that owns the tables provides a collector, named in
  settings.METRICS_DATABASE_COLLECTORS, so nothing has to run periodically to keep them fresh
  and this module imports none of the apps.
"""

from __future__ import annotations

import functools
import hmac
import logging
import os
import socket
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from typing import ParamSpec, Protocol, TypeVar

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

logger = logging.getLogger(__name__)

# In multiprocess mode each process writes `<type>_<pid>.db`. Containers that share the directory
# (docker-compose's web and worker) do not share process ids, so the host name goes into the file
# name too (without `_`, which the collector splits names on).
_HOST = socket.gethostname().replace("_", "-")
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(lambda: f"{_HOST}-{os.getpid()}")

# `_created` samples double every series for a timestamp no dashboard here uses.
disable_created_metrics()

SENDS_ACCEPTED = Counter("mindo_bulk_sends_accepted", "Bulk sends accepted (answered 202).")
RECIPIENTS_ACCEPTED = Counter(
    "mindo_bulk_send_recipients_accepted",
    "Unique recipients of accepted bulk sends: one message each.",
)
MESSAGES_SETTLED = Counter(
    "mindo_messages_settled",
    "Messages a drain sent to Meta, by what came of it (sent, failed, retry, uncertain, release) "
    "and Meta's error code (empty when sent).",
    ["outcome", "error_code"],
)
GRAPH_REQUEST_SECONDS = Histogram(
    "mindo_graph_request_seconds",
    "Time a template send to the Graph API took, answered or not.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
LIMITER_WAIT_SECONDS = Histogram(
    "mindo_limiter_wait_seconds",
    "Time a send waited for a permit of its number's rate limiter.",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
LIMITER_FORFEITS = Counter(
    "mindo_limiter_permits_forfeited",
    "Permits of a number's rate limiter given up: the worker woke too late for the permit's slot "
    "(a busy machine), or had stopped waiting.",
)
LIMITER_PAID_LATE = Counter(
    "mindo_limiter_permits_paid_late",
    "Permits of a number's rate limiter used late but within the payable bound: each moved the "
    "number's later slots back or skipped one a second later (a busy machine).",
)
WEBHOOKS_STORED = Counter("mindo_webhook_events_stored", "Webhook bodies verified and stored.")
WEBHOOKS_APPLIED = Counter("mindo_webhook_events_applied", "Stored webhook bodies applied.")


# --- recording ---------------------------------------------------------------------------------

P = ParamSpec("P")
T = TypeVar("T")


def observe_seconds(
    histogram: Histogram,
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorates a coroutine function: each call's duration goes to `histogram`."""

    def decorate(function: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        @functools.wraps(function)
        async def timed(*args: P.args, **kwargs: P.kwargs) -> T:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed

    return decorate


def send_accepted(*, recipients: int) -> None:
    SENDS_ACCEPTED.inc()
    RECIPIENTS_ACCEPTED.inc(recipients)


class _Error(Protocol):
    @property
    def code(self) -> str: ...


class _Settled(Protocol):
    @property
    def outcome(self) -> str: ...


class _Answered(Protocol):
    @property
    def error(self) -> _Error | None: ...


def messages_settled(results: Sequence[_Settled], answers: Sequence[_Answered]) -> None:
    """Counts a settled batch: each message's outcome beside Meta's answer to it."""
    tally = Tally(
        (str(result.outcome), answer.error.code if answer.error is not None else "")
        for result, answer in zip(results, answers, strict=True)
    )
    for (outcome, error_code), count in tally.items():
        MESSAGES_SETTLED.labels(outcome=outcome, error_code=error_code).inc(count)


# --- scraping ----------------------------------------------------------------------------------


class _DatabaseGauges:
    """Runs the apps' database collectors; a failing database costs their gauges, not the scrape
    (`mindo_metrics_database_up` says so)."""

    def collect(self) -> Iterator[Metric]:
        up = 1
        for path in settings.METRICS_DATABASE_COLLECTORS:
            collect: Callable[[], Iterable[Metric]] = import_string(path)
            try:
                yield from list(collect())
            except DatabaseError:
                logger.warning("Metrics: %s could not read the database", path, exc_info=True)
                up = 0
        yield GaugeMetricFamily(
            "mindo_metrics_database_up",
            "1 when every database gauge could be read at this scrape.",
            value=up,
        )


class _ThisProcess:
    """The default registry (this process's samples), inside the per-scrape registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def metrics_exposition() -> bytes:
    """The text exposition of every metric, summed over processes in multiprocess mode."""
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(_DatabaseGauges())
    return generate_latest(registry)


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    given = request.headers.get("Authorization", "")
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = JsonResponse({"error": "Bearer token required (METRICS_TOKEN)"}, status=401)
        response["WWW-Authenticate"] = "Bearer"
        return response
    return HttpResponse(metrics_exposition(), content_type=CONTENT_TYPE_LATEST)
