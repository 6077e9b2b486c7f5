"""The outbox as a queue: claiming due events, settling what came of their attempts.

PostgreSQL is the queue of record. A worker claims events with `FOR UPDATE SKIP LOCKED` and moves
each past a lease as it takes it; a worker that dies mid-delivery leaves its events due again
when the lease ends, so every event is delivered at least once, a duplicate only ever with the
same `id`. Each endpoint gets at most CALLBACKS_CLAIM_PER_ENDPOINT events a claim, so one
customer with a backlog never holds the others' events back.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from callbacks.models import CallbackEvent, DeliveryAttempt, WebhookEndpoint


class Outcome:
    DELIVERED = "delivered"  # 2xx: settled
    FAILED = "failed"  # 4xx other than 408/429, a redirect, a refused address: failed at once
    RETRY = "retry"  # 5xx, 408, 429, a timeout or a connection error: again after a backoff
    RELEASED = "released"  # not attempted (the round's time ran out): due again now


@dataclass(slots=True)
class ClaimedEvent:
    id: str
    endpoint_id: str
    type: str
    body_json: str
    created_at: datetime
    attempts: int

    def envelope(self) -> bytes:
        """The event as its receiver gets it; `data` is spliced in as stored, not parsed again."""
        return (
            f'{{"id":"{self.id}","type":"{self.type}",'
            f'"created_at":"{self.created_at.isoformat()}","data":{self.body_json}}}'
        ).encode()


@dataclass(slots=True)
class EndpointTarget:
    id: str
    url: str
    secrets: list[str]
    batch_events: bool


@dataclass(slots=True)
class AttemptResult:
    endpoint_id: str
    events: list[ClaimedEvent]
    outcome: str
    attempted_at: datetime | None = None
    status_code: int | None = None
    latency_ms: int | None = None
    response_excerpt: str = ""
    error: str = ""


@dataclass(slots=True)
class Claim:
    events: list[ClaimedEvent] = field(default_factory=list)
    endpoints: dict[str, EndpointTarget] = field(default_factory=dict)


_CLAIM_SQL = """
WITH picked AS (
    SELECT ev.id FROM {endpoints} ep
    CROSS JOIN LATERAL (
        SELECT e.id FROM {events} e
         WHERE e.endpoint_id = ep.id AND e.delivered_at IS NULL AND e.failed_at IS NULL
           AND e.next_attempt_at <= %(now)s
         ORDER BY e.next_attempt_at
         LIMIT %(per_endpoint)s
           FOR UPDATE SKIP LOCKED
    ) ev
    WHERE ep.enabled
    LIMIT %(total)s
)
UPDATE {events} e SET next_attempt_at = %(lease_until)s, attempts = e.attempts + 1
  FROM picked WHERE e.id = picked.id
RETURNING e.id, e.endpoint_id, e.type, e.body::text, e.created_at, e.attempts
"""

_SETTLE_SQL = """
UPDATE {events} e SET
    delivered_at = CASE WHEN s.outcome = 'delivered' THEN %(now)s ELSE e.delivered_at END,
    failed_at = CASE WHEN s.outcome = 'failed' THEN %(now)s ELSE e.failed_at END,
    next_attempt_at = COALESCE(s.next_at, e.next_attempt_at),
    attempts = CASE WHEN s.outcome = 'released' THEN e.attempts - 1 ELSE e.attempts END,
    last_error = CASE WHEN s.outcome = 'delivered' THEN '' ELSE COALESCE(s.error, e.last_error) END
FROM unnest(%(ids)s::uuid[], %(outcomes)s::text[], %(next_at)s::timestamptz[], %(errors)s::text[])
    AS s(id, outcome, next_at, error)
WHERE e.id = s.id AND e.delivered_at IS NULL AND e.failed_at IS NULL
"""


def _tables() -> dict[str, str]:
    return {
        "events": CallbackEvent._meta.db_table,
        "endpoints": WebhookEndpoint._meta.db_table,
    }


def events_claim(*, now: datetime) -> Claim:
    """Take the due events (at most CALLBACKS_CLAIM_SIZE, CALLBACKS_CLAIM_PER_ENDPOINT of each
    endpoint) under a lease of CALLBACKS_LEASE_SECONDS, with the endpoints they go to."""
    claim = Claim()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            _CLAIM_SQL.format(**_tables()),
            {
                "now": now,
                "per_endpoint": settings.CALLBACKS_CLAIM_PER_ENDPOINT,
                "total": settings.CALLBACKS_CLAIM_SIZE,
                "lease_until": now + timedelta(seconds=settings.CALLBACKS_LEASE_SECONDS),
            },
        )
        claim.events = [
            ClaimedEvent(str(row[0]), str(row[1]), row[2], row[3], row[4], row[5])
            for row in cursor.fetchall()
        ]
    if not claim.events:
        return claim
    endpoint_ids = {event.endpoint_id for event in claim.events}
    endpoints = list(WebhookEndpoint.objects.filter(pk__in=endpoint_ids))
    signers = _signing_endpoints({e.organization_id for e in endpoints if e.send_scoped})
    for endpoint in endpoints:
        signer = signers.get(endpoint.organization_id, endpoint) if endpoint.send_scoped else None
        claim.endpoints[str(endpoint.pk)] = EndpointTarget(
            str(endpoint.pk),
            endpoint.url,
            endpoint_secrets(signer or endpoint, now=now),
            endpoint.batch_events,
        )
    return claim


def signing_endpoints(organization_ids: Collection[int]) -> QuerySet[WebhookEndpoint]:
    """The endpoints the organizations registered, enabled, each one's oldest first: the first
    one's secrets sign the events of its send-scoped endpoints (a send's `callback_url`), so
    rotating that secret rotates theirs too."""
    return WebhookEndpoint.objects.filter(
        organization_id__in=list(organization_ids), send_scoped=False, enabled=True
    ).order_by("organization_id", "created_at")


def _signing_endpoints(organization_ids: set[int]) -> dict[int, WebhookEndpoint]:
    if not organization_ids:
        return {}
    signers = signing_endpoints(organization_ids).distinct("organization_id")
    return {endpoint.organization_id: endpoint for endpoint in signers}


def endpoint_secrets(endpoint: WebhookEndpoint, *, now: datetime) -> list[str]:
    """The secrets that sign a body now: the current one, and the previous one within the day
    after a rotation."""
    secrets = [endpoint.secret]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret and expires is not None and expires > now:
        secrets.append(endpoint.previous_secret)
    return secrets


def retry_delay(attempts: int) -> timedelta:
    """Exponential backoff with jitter: between half and all of base x 2^(attempts-1), capped, so
    the retries of a burst of failures spread out rather than return together."""
    base = settings.CALLBACKS_RETRY_BASE_SECONDS
    ceiling = min(base * 2 ** max(attempts - 1, 0), settings.CALLBACKS_RETRY_MAX_SECONDS)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _event_settlement(
    event: ClaimedEvent, result: AttemptResult, now: datetime
) -> tuple[str, datetime | None, str | None]:
    give_up_after = timedelta(seconds=settings.CALLBACKS_RETRY_FOR_SECONDS)
    if result.outcome == Outcome.RELEASED:
        return Outcome.RELEASED, now, None
    if result.outcome == Outcome.RETRY:
        if now - event.created_at >= give_up_after:
            return Outcome.FAILED, None, f"Gave up after retrying: {result.error}"[:2000]
        return Outcome.RETRY, now + retry_delay(event.attempts), result.error[:2000]
    return result.outcome, None, result.error[:2000] or None


def results_settle(results: Iterable[AttemptResult], *, now: datetime) -> None:
    """Write what came of a round: the events (one statement), the attempt log, and each
    endpoint's health: a success clears `failing_since`; an endpoint whose deliveries all failed
    for CALLBACKS_RETRY_FOR_SECONDS is disabled, with the reason for its operators."""
    results = list(results)
    ids: list[str] = []
    outcomes: list[str] = []
    next_at: list[datetime | None] = []
    errors: list[str | None] = []
    for result in results:
        for event in result.events:
            outcome, due, error = _event_settlement(event, result, now)
            ids.append(event.id)
            outcomes.append(outcome)
            next_at.append(due)
            errors.append(error)
    attempted = [result for result in results if result.outcome != Outcome.RELEASED]
    succeeded = {r.endpoint_id for r in attempted if r.outcome == Outcome.DELIVERED}
    failing = {r.endpoint_id for r in attempted} - succeeded
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(
                _SETTLE_SQL.format(**_tables()),
                {
                    "now": now,
                    "ids": ids,
                    "outcomes": outcomes,
                    "next_at": next_at,
                    "errors": errors,
                },
            )
        DeliveryAttempt.objects.bulk_create(_attempt_row(result) for result in attempted)
        if succeeded:
            WebhookEndpoint.objects.filter(pk__in=succeeded, failing_since__isnull=False).update(
                failing_since=None
            )
        if failing:
            _endpoints_record_failures(failing, results, now=now)


def _attempt_row(result: AttemptResult) -> DeliveryAttempt:
    return DeliveryAttempt(
        endpoint_id=result.endpoint_id,
        event_ids=[event.id for event in result.events],
        attempted_at=result.attempted_at or timezone.now(),
        status_code=result.status_code,
        latency_ms=result.latency_ms,
        response_excerpt=result.response_excerpt,
        error=result.error[:2000],
        outcome=result.outcome,
    )


def _endpoints_record_failures(
    endpoint_ids: set[str], results: list[AttemptResult], *, now: datetime
) -> None:
    WebhookEndpoint.objects.filter(pk__in=endpoint_ids, failing_since__isnull=True).update(
        failing_since=now
    )
    limit = timedelta(seconds=settings.CALLBACKS_RETRY_FOR_SECONDS)
    last_error = {r.endpoint_id: r.error or f"HTTP {r.status_code}" for r in results}
    for endpoint in WebhookEndpoint.objects.filter(
        pk__in=endpoint_ids, enabled=True, failing_since__lte=now - limit
    ):
        endpoint_disable(
            endpoint,
            reason=(
                f"Disabled on {now:%Y-%m-%d %H:%M} UTC: every delivery failed since "
                f"{endpoint.failing_since:%Y-%m-%d %H:%M} UTC; last error: "
                f"{last_error.get(str(endpoint.pk), '')}"
            )[:2000],
            now=now,
        )


def endpoint_disable(endpoint: WebhookEndpoint, *, reason: str, now: datetime) -> bool:
    """Stop delivering to an endpoint; its undelivered events wait, for a replay once it is
    enabled again. True when it was enabled."""
    return bool(
        WebhookEndpoint.objects.filter(pk=endpoint.pk, enabled=True).update(
            enabled=False, disabled_at=now, disabled_reason=reason
        )
    )
