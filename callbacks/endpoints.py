"""An organization's endpoints: registering, rotating a secret, deleting, a test event, replays.
Every function takes the organization, so nothing reaches another's endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from callbacks.addresses import AddressRefused, url_check
from callbacks.models import TEST_EVENT_TYPE, CallbackEvent, EventType, WebhookEndpoint
from callbacks.outbox import delivery_wake
from callbacks.signing import secret_generate
from mindo.errors import NotFoundError, field_error
from mindo.models import Organization

ENDPOINT_NOT_FOUND = "Endpoint no encontrado"
EVENT_NOT_FOUND = "Evento no encontrado"
# After a rotation the old secret keeps signing (a second v1=) this long, so receivers can switch.
PREVIOUS_SECRET_VALID_FOR = timedelta(hours=24)
MAX_ENDPOINTS_PER_ORGANIZATION = 20


def endpoints_of(organization: Organization) -> QuerySet[WebhookEndpoint]:
    """The endpoints the organization registered (not its sends' `callback_url`s)."""
    return WebhookEndpoint.objects.filter(organization=organization, send_scoped=False)


def endpoint_get(*, organization: Organization, endpoint_id: str) -> WebhookEndpoint:
    """The organization's endpoint, or NotFoundError alike for a malformed, unknown or another
    organization's id."""
    try:
        key = uuid.UUID(str(endpoint_id))
    except ValueError:
        raise NotFoundError(ENDPOINT_NOT_FOUND) from None
    endpoint = endpoints_of(organization).filter(pk=key).first()
    if endpoint is None:
        raise NotFoundError(ENDPOINT_NOT_FOUND)
    return endpoint


def endpoint_create(
    *, organization: Organization, url: str, events: list[str], batch_events: bool = False
) -> WebhookEndpoint:
    """Register an endpoint after checking its URL (http(s), a public address); its secret is
    on the returned row, for the one answer that shows it."""
    try:
        url_check(url)
    except AddressRefused as error:
        raise field_error("url", str(error)) from None
    if endpoints_of(organization).count() >= MAX_ENDPOINTS_PER_ORGANIZATION:
        raise field_error(
            "url", f"Se admiten hasta {MAX_ENDPOINTS_PER_ORGANIZATION} endpoints por organización."
        )
    return WebhookEndpoint.objects.create(
        organization=organization,
        url=url,
        events=sorted(set(events)),
        batch_events=batch_events,
        secret=secret_generate(),
    )


def endpoint_delete(*, organization: Organization, endpoint_id: str) -> None:
    """Delete the endpoint; its outbox and attempt log go with it."""
    endpoint_get(organization=organization, endpoint_id=endpoint_id).delete()


def endpoint_rotate_secret(
    *, organization: Organization, endpoint_id: str, now: datetime | None = None
) -> WebhookEndpoint:
    """A new secret; the current one keeps signing beside it for PREVIOUS_SECRET_VALID_FOR."""
    now = now or timezone.now()
    with transaction.atomic():
        endpoint = endpoint_get(organization=organization, endpoint_id=endpoint_id)
        endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        endpoint.previous_secret = endpoint.secret
        endpoint.previous_secret_expires_at = now + PREVIOUS_SECRET_VALID_FOR
        endpoint.secret = secret_generate()
        endpoint.save(update_fields=["secret", "previous_secret", "previous_secret_expires_at"])
    return endpoint


def endpoint_enable(endpoint: WebhookEndpoint) -> None:
    """Deliver again to a disabled endpoint (its waiting events go out at once)."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
        enabled=True, disabled_at=None, disabled_reason="", failing_since=None
    )
    CallbackEvent.objects.filter(
        endpoint=endpoint, delivered_at__isnull=True, failed_at__isnull=True
    ).update(next_attempt_at=timezone.now())
    transaction.on_commit(delivery_wake)


def endpoint_test_event(*, organization: Organization, endpoint_id: str) -> CallbackEvent:
    """Queue an `endpoint.test` event for the endpoint, whatever events it subscribed to."""
    endpoint = endpoint_get(organization=organization, endpoint_id=endpoint_id)
    event = CallbackEvent.objects.create(
        organization=organization,
        endpoint=endpoint,
        type=TEST_EVENT_TYPE,
        body={
            "endpoint_id": str(endpoint.pk),
            "message": "Evento de prueba de Mindo: la firma y la URL funcionan.",
        },
    )
    transaction.on_commit(delivery_wake)
    return event


def events_replay(
    *,
    organization: Organization,
    endpoint_id: str,
    event_id: str | None = None,
    since: datetime | None = None,
) -> int:
    """Deliver again one event (delivered or failed alike, with its same `id`), or every failed
    event created since `since`; returns how many were queued."""
    endpoint = endpoint_get(organization=organization, endpoint_id=endpoint_id)
    events = CallbackEvent.objects.filter(endpoint=endpoint)
    if event_id is not None:
        try:
            key = uuid.UUID(str(event_id))
        except ValueError:
            raise NotFoundError(EVENT_NOT_FOUND) from None
        events = events.filter(pk=key)
        if not events.exists():
            raise NotFoundError(EVENT_NOT_FOUND)
    else:
        events = events.filter(failed_at__isnull=False, created_at__gte=since)
    replayed = events_requeue(events)
    if replayed:
        transaction.on_commit(delivery_wake)
    return replayed


def events_requeue(events: QuerySet[CallbackEvent]) -> int:
    return events.update(
        delivered_at=None, failed_at=None, attempts=0, last_error="", next_attempt_at=timezone.now()
    )


EVENT_TYPES = EventType.values
