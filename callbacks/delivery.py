"""A delivery run: claim due events, post them, settle what came of it, until nothing is due or
the run's time is up. A Celery task is only a wake-up; the outbox says what is left to do."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from callbacks.posting import Poster
from callbacks.store import Outcome, events_claim, results_settle


@dataclass(slots=True)
class DeliveryReport:
    rounds: int = 0
    posts: int = 0
    delivered: int = 0
    failed: int = 0
    retried: int = 0
    released: int = 0


def callbacks_deliver(*, budget_seconds: float | None = None) -> DeliveryReport:
    """Deliver what is due; returns what it did. Runs in no transaction: each claim and each
    settle commits on its own, so a worker killed between them loses nothing (the claimed events
    come due again when their lease ends)."""
    budget = settings.CALLBACKS_RUN_SECONDS if budget_seconds is None else budget_seconds
    ends_at = time.monotonic() + budget
    report = DeliveryReport()
    with Poster() as poster:
        while True:
            claim = events_claim(now=timezone.now())
            if not claim.events:
                return report
            results = poster.post_round(claim)
            results_settle(results, now=timezone.now())
            report.rounds += 1
            for result in results:
                count = len(result.events)
                report.posts += result.outcome != Outcome.RELEASED
                report.delivered += count * (result.outcome == Outcome.DELIVERED)
                report.failed += count * (result.outcome == Outcome.FAILED)
                report.retried += count * (result.outcome == Outcome.RETRY)
                report.released += count * (result.outcome == Outcome.RELEASED)
            if time.monotonic() >= ends_at:
                return report
            close_old_connections()
