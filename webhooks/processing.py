"""A signed webhook body in, every change it carries applied, the body kept: one transaction."""

from __future__ import annotations

from typing import Any

import orjson
from django.db import transaction

from messaging.status import statuses_apply
from templates_app import meta_updates
from webhooks.models import WebhookEvent
from webhooks.payload import Payload, payload_read


class NotJson(ValueError):
    pass


def _apply_account_changes(payload: Payload) -> dict[str, int]:
    templates = sum(
        meta_updates.template_status_update(
            waba_id=change.waba_id,
            meta_template_id=change.meta_template_id,
            name=change.name,
            language=change.language,
            status=change.status,
        )
        for change in payload.templates
    )
    numbers = sum(
        meta_updates.phone_number_quality_update(
            waba_id=change.waba_id,
            display_phone_number=change.display_phone_number,
            event=change.event,
            current_limit=change.current_limit,
            portfolio_tier=change.portfolio_tier,
        )
        for change in payload.numbers
    )
    numbers += sum(
        meta_updates.business_capability_update(
            waba_id=change.waba_id,
            per_phone_tier=change.per_phone_tier,
            portfolio_tier=change.portfolio_tier,
        )
        for change in payload.capabilities
    )
    return {"templates_changed": templates, "numbers_or_accounts_changed": numbers}


def webhook_process(body: bytes) -> WebhookEvent:
    """Apply what `body` (already verified as Meta's) says and keep it; NotJson if it is not JSON.

    If applying fails the transaction rolls back, nothing is kept and the view answers 500, so
    Meta retries; every change is idempotent, so a retry never counts twice.
    """
    try:
        document: Any = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise NotJson(str(error)) from error
    payload = payload_read(document)
    with transaction.atomic():
        statuses = statuses_apply(payload.statuses)
        outcome: dict[str, Any] = {**statuses.as_dict(), **_apply_account_changes(payload)}
        if payload.inbound_messages:
            outcome["inbound_messages"] = payload.inbound_messages
        return WebhookEvent.objects.create(
            body=body.decode("utf-8", errors="replace"),
            object_type=payload.object_type[:64],
            fields=",".join(sorted(set(payload.fields)))[:200],
            status_events=len(payload.statuses),
            messages_changed=statuses.messages_changed,
            deferred=statuses.deferred,
            outcome=outcome,
        )
