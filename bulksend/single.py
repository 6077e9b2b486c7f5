"""One template message sent within its request (POST send/), through a bulk message's machinery.

A single send is a send of one recipient (`BulkSendKind.SINGLE`): the same validation, the same
message row (so the wamid lookup and Meta's status webhooks treat it as any other), the same
quota gate, the number's shared limiter, the Graph client and its error classes, and the same
settling through bulksend.lifecycle. What differs is who sends it: the web process, at once,
with every wait bounded (SINGLE_SEND_* settings), instead of a worker.

Never out twice: a call Meta may have accepted without our reading its answer (a timeout, a
dropped connection) is not retried. The message stays `sending`, the client gets 202 with a
reference the wamid lookup accepts and status `pending`, and Meta's `sent` webhook, carrying
the message's `biz_opaque_callback_data`, settles it (or the reaper, as for a worker's message).
"""

from __future__ import annotations

import asyncio
import atexit
import math
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from bulksend.admission import QuotaGate
from bulksend.creation import callback_url_check, number_and_template_get, single_send_create
from bulksend.lifecycle import batch_settle_outcome, single_sent_settle
from bulksend.recipients import Recipient, check_against_template
from bulksend.screening import FAILURE_TEXT, Verdict, is_marketing, verdicts_of
from bulksend.sending import message_request, number_slow_down_if_told
from messaging.delivery import ClaimedMessage, DeliveryResult, Settle
from messaging.models import Message, MessageStatus, callback_data_for
from messaging.ratelimit import OUTAGE_FIRST_PAUSE_SECONDS, RateLimiter, get_rate_limiter, take
from messaging.suppression import marketing_holds
from meta.graph import (
    AsyncGraphClient,
    ErrorClass,
    GraphConfig,
    SendOutcome,
    SendRequest,
)
from meta.graph_errors import local_failure
from mindo import metrics
from mindo.errors import (
    InvalidFieldsError,
    MetaRefusedError,
    MetaUnavailableError,
    RateLimitedError,
    ServiceUnavailableError,
)
from mindo.meta_client import async_graph_client, graph_config
from mindo.models import Organization
from mindo.redisconn import REDIS_AWAY
from templates_app.models import MessageTemplate, PhoneNumber
from templates_app.shapes import template_shape

# Codes of the sends that never reached Meta, kept on the failed message.
CODE_NO_PERMIT = "no_permit"
CODE_LIMITER_UNAVAILABLE = "limiter_unavailable"


@dataclass(frozen=True, slots=True)
class SingleSendResult:
    """The answer to a single send: `status` is `sent` (Meta gave `message_id`, its wamid) or
    `pending` (Meta may have taken it; `message_id` is then our reference to the message, which
    the wamid lookup accepts until Meta's webhook brings the wamid)."""

    message_id: str
    template_name: str
    recipient_phone: str | None
    status: str
    sent_at: datetime | None
    # Set only for a message to a business-scoped user id (and `recipient_phone` None then).
    recipient_user_id: str | None = None

    @property
    def success(self) -> bool:
        return True

    @property
    def settled(self) -> bool:
        return self.status == MessageStatus.SENT


class _Channel:
    """An event loop and a Graph client kept by a web thread between its requests, so that a
    single send reuses a kept-alive connection to Meta instead of opening one each time."""

    def __init__(self, key: tuple[GraphConfig, float]) -> None:
        self.key = key
        self.loop = asyncio.new_event_loop()
        self.client: AsyncGraphClient = async_graph_client(timeout=key[1])
        self.loop.run_until_complete(self.client.__aenter__())
        # Closed at exit too: a session left open is reported as leaked.
        atexit.register(self.close)

    def close(self) -> None:
        atexit.unregister(self.close)
        if not self.loop.is_closed():
            self.loop.run_until_complete(self.client.__aexit__(None, None, None))
            self.loop.close()


_threads = threading.local()


def _channel() -> _Channel:
    """This thread's channel, made again when where Meta is (or how long to wait) changed."""
    key = (graph_config(), float(settings.SINGLE_SEND_META_TIMEOUT_SECONDS))
    channel: _Channel | None = getattr(_threads, "channel", None)
    if channel is None or channel.key != key:
        if channel is not None:
            channel.close()
        channel = _threads.channel = _Channel(key)
    return channel


def _no_answer(code: str, text: str) -> SendOutcome:
    """The outcome of a send that never left: no permit, so nothing was handed to Meta."""
    return SendOutcome(None, local_failure(code, text))


async def _permit(limiter: RateLimiter, number: PhoneNumber, wait_seconds: float) -> str | None:
    """Wait up to `wait_seconds` for the number's next permit; None once it is granted, else
    the code of why not (the number is at its rate, or Redis did not answer)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        left = deadline - time.monotonic()
        try:
            granted = await take(
                limiter, number.phone_number_id, number.throughput_per_second, timeout=left
            )
        except REDIS_AWAY:
            # As the drain's pacer: the first retry only once no permit granted before a restart
            # of Redis can share a one-second window with ours.
            if left < OUTAGE_FIRST_PAUSE_SECONDS:
                return CODE_LIMITER_UNAVAILABLE
            await asyncio.sleep(OUTAGE_FIRST_PAUSE_SECONDS)
            continue
        return None if granted else CODE_NO_PERMIT


def _worth_another_try(outcome: SendOutcome) -> bool:
    error = outcome.error
    return error is not None and error.error_class == ErrorClass.RETRY and not error.maybe_delivered


async def _deliver(
    client: AsyncGraphClient, request: SendRequest, number: PhoneNumber
) -> tuple[SendOutcome, int]:
    """Meta's last answer and how many calls were made.

    1. Take the number's permit (bounded wait) right before each call, as a worker does.
    2. Call Meta. A retryable error that Meta surely did not act on is tried again after a
       short, doubling pause, up to SINGLE_SEND_MAX_ATTEMPTS calls in all.
    """
    limiter = get_rate_limiter()
    outcome: SendOutcome | None = None
    attempts = 0
    while True:
        if settings.DELIVERY_PACING:
            refused = await _permit(limiter, number, settings.SINGLE_SEND_PERMIT_WAIT_SECONDS)
            if refused is not None:
                # Not handed over this time: the last answer, if any, is the outcome.
                if outcome is not None:
                    return outcome, attempts
                return _no_answer(refused, _PERMIT_TEXT[refused]), attempts
        attempts += 1
        outcome = await client.send_template(
            phone_number_id=request.phone_number_id,
            access_token=request.access_token,
            body=request.body,
        )
        number_slow_down_if_told(limiter, number.phone_number_id, [outcome])
        if attempts >= settings.SINGLE_SEND_MAX_ATTEMPTS or not _worth_another_try(outcome):
            return outcome, attempts
        await asyncio.sleep(settings.SINGLE_SEND_RETRY_SECONDS * 2 ** (attempts - 1))


_PERMIT_TEXT = {
    CODE_NO_PERMIT: "Not sent: the number's rate left no room within the wait allowed.",
    CODE_LIMITER_UNAVAILABLE: "Not sent: the rate limiter (Redis) could not be reached.",
}


def _result_for(message: ClaimedMessage, outcome: SendOutcome) -> DeliveryResult:
    """How the message settles: sent, uncertain (Meta may have it), or failed for good."""
    if outcome.wamid is not None:
        return DeliveryResult(message.id, Settle.SENT, wamid=outcome.wamid)
    error = outcome.error
    assert error is not None
    if error.maybe_delivered:
        return DeliveryResult(message.id, Settle.UNCERTAIN)
    return DeliveryResult(
        message.id, Settle.FAILED, error_code=error.code, error_message=error.text
    )


def _quota_refused(gate: QuotaGate, now: datetime) -> RateLimitedError:
    frees_at = gate.room_frees_at(now)
    seconds = math.ceil((frees_at - now).total_seconds())
    return RateLimitedError(
        f"Cuota de 24 h agotada: el portfolio ya envio mensajes a {gate.limit} destinatarios "
        "unicos en las ultimas 24 horas y este destinatario seria uno nuevo. Habra lugar para "
        f"un destinatario nuevo desde {frees_at.isoformat().replace('+00:00', 'Z')}.",
        retry_after_seconds=seconds,
    )


def _raise_for(outcome: SendOutcome, number: PhoneNumber) -> None:
    """The error a failed send answers with: Meta's refusal of this message (400), or Meta,
    our credentials or our limiter failing (502, 429, 503)."""
    error = outcome.error
    assert error is not None
    if error.code == CODE_NO_PERMIT:
        raise RateLimitedError(
            f"El numero {number.display_phone_number} esta enviando al maximo de su capacidad "
            f"({number.throughput_per_second} mensajes por segundo). Intente nuevamente en unos "
            "segundos.",
            retry_after_seconds=1,
        )
    if error.code == CODE_LIMITER_UNAVAILABLE:
        raise ServiceUnavailableError(
            "Servicio no disponible temporalmente. Intente nuevamente en unos segundos."
        )
    if error.error_class in (ErrorClass.FAIL, ErrorClass.DEFER):
        raise MetaRefusedError(
            f"Meta rechazo el mensaje (error {error.code}): {error.text}",
            code=error.code,
            meta_message=error.message,
        )
    raise MetaUnavailableError(
        f"Meta no acepto el mensaje (error {error.code}): {error.text}. No fue enviado.",
        code=error.code,
        meta_message=error.message,
    )


def _marketing_rules_check(
    organization: Organization, template: MessageTemplate, recipient: Recipient, now: datetime
) -> None:
    """Meta's marketing rules, before anything is written (bulksend.screening): an opted-out or
    US recipient is a 400 naming `recipient_phone` (or `recipient_user_id`), as any recipient
    the template cannot go to; one cooling down after Meta's 131049 is a 429 with the moment the
    cooldown ends."""
    phone = recipient.key
    if not is_marketing(template):
        return
    holds = marketing_holds(
        organization_id=organization.pk,
        business_account_id=template.business_account_id,
        phones=[phone],
        now=now,
    )
    verdict = verdicts_of(
        [phone], marketing=True, suppressed=holds.suppressed, cooling=holds.cooling
    ).get(0)
    if verdict is None:
        return
    if verdict == Verdict.COOLING_DOWN:
        until = holds.cooling[phone]
        raise RateLimitedError(
            "Meta limita los mensajes de marketing a este destinatario (error 131049): podra "
            f"recibir otro desde {until.isoformat().replace('+00:00', 'Z')}.",
            retry_after_seconds=math.ceil((until - now).total_seconds()),
        )
    field = "recipient_phone" if recipient.phone else "recipient_user_id"
    raise InvalidFieldsError({field: [f"{verdict.value}: {FAILURE_TEXT[verdict]}"]})


def single_send(
    *,
    organization: Organization,
    created_by: User | None,
    phone_number_id: str,
    template_name: str,
    language: str,
    recipient: Recipient,
    callback_url: str = "",
) -> SingleSendResult:
    """Send `template_name` to `recipient` (already checked for shape) and settle it.

    1. Resolve the number and the template in the caller's organization (404s, 400), check
       the variables against the template and a marketing template's recipient against Meta's
       rules (400 or 429, nothing written).
    2. In one transaction: the send and its claimed message, admitted by the portfolio's quota
       gate; a new recipient with no room left is refused (429) and nothing is written.
    3. Send it (see `_deliver`), then settle it through the lifecycle: sent, failed, or
       uncertain (Meta may have it). Meta's `sent` webhook may settle it first; both meet.
    4. Answer: sent (200), pending (202), or the error Meta's answer means.
    A `callback_url` is checked first and gets the send's events.
    """
    callback_url_check(organization, callback_url)
    number, template = number_and_template_get(
        organization=organization,
        phone_number_id=phone_number_id,
        name=template_name,
        language=language,
    )
    errors = check_against_template(
        [recipient],
        variables=list(template.variables),
        buttons=template.button_specs,
        template=template.name,
        variable_types=template.typed_variables,
        currency_code=template.currency_code,
    )
    if errors:
        raise InvalidFieldsError(errors["0"])
    now = timezone.now()
    _marketing_rules_check(organization, template, recipient, now)
    gate = QuotaGate(number)
    # The rows are one statement: a transaction only when the gate must decide with them.
    with transaction.atomic() if gate.limit is not None else nullcontext():
        bulk_send, claimed = single_send_create(
            organization=organization,
            created_by=created_by,
            number=number,
            template=template,
            recipient=recipient,
            lease_seconds=settings.DELIVERY_LEASE_SECONDS,
            now=now,
            callback_url=callback_url,
        )
        _, waiting = gate.split([claimed], now)
        if waiting:
            raise _quota_refused(gate, now)  # rolls the send back: nothing is written
    prepared = message_request(
        claimed,
        template_shape(template),
        number.phone_number_id,
        number.business_account.access_token,
    )
    attempts = 1
    if isinstance(prepared, SendOutcome):
        outcome = prepared
    else:
        channel = _channel()
        outcome, attempts = channel.loop.run_until_complete(
            _deliver(channel.client, prepared, number)
        )
    result = _result_for(claimed, outcome)
    if attempts > 1:
        Message.objects.filter(pk=claimed.id).update(attempts=attempts)
    settled_at = timezone.now()
    # The answer waits for this commit, not for its disk write (see `batch_settle_outcome`).
    if result.outcome == Settle.SENT:
        settled = single_sent_settle(message_id=claimed.id, wamid=str(result.wamid), now=settled_at)
    else:
        settled = batch_settle_outcome([result], now=settled_at, durable=False)
    metrics.messages_settled([result], [outcome])
    if result.outcome == Settle.FAILED:
        _raise_for(outcome, number)
    if result.outcome == Settle.UNCERTAIN:
        return SingleSendResult(
            message_id=callback_data_for(claimed.id),
            template_name=template.name,
            recipient_phone=recipient.phone,
            status=MessageStatus.PENDING,
            sent_at=None,
            recipient_user_id=recipient.user_id,
        )
    # Sent by this settle, at its time; or Meta's `sent` webhook came first, with its own time,
    # which the row keeps.
    if settled.counters.get(str(bulk_send.pk), {}).get("sent", 0) > 0:
        sent_at: datetime | None = settled_at
    else:
        sent_at = Message.objects.filter(pk=claimed.id).values_list("sent_at", flat=True).first()
    return SingleSendResult(
        message_id=str(outcome.wamid),
        template_name=template.name,
        recipient_phone=recipient.phone,
        status=MessageStatus.SENT,
        sent_at=sent_at or now,
        recipient_user_id=recipient.user_id,
    )
