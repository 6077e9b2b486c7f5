"""Draining a bulk send to Meta: claim, admit by quota, pace, send concurrently, settle.

One drain runs in one Celery task for at most `DELIVERY_DRAIN_SECONDS`, then hands over to a new
task if work is left: many sends share the workers fairly, and a worker that dies loses at most
its current batch's leases (the reaper hands them back). Any number of drains, on any number of
machines, may work on the same send: the claim skips what another holds.

Each batch:
1. In one transaction: claim up to a batch of due `pending` messages (SKIP LOCKED, with a lease)
   and, on a limited tier, admit only the recipients the portfolio's 24 h window has room for;
   the others go back to `pending` until the window frees room (bulksend.quota).
2. Take permits for the number from the shared Redis limiter, so no combination of workers ever
   exceeds the number's rate, and send each message as its permit comes, many at once over
   kept-alive connections.
3. Settle the batch in one transaction (messaging.delivery), counters by delta.
4. Stop at once if Meta says the token is invalid (190) or the account is blocked (368): the
   send is halted with the reason, its untried messages stay pending for when it is resumed.

Redis away: the limiter's pacer waits for it (bounded, see `_redis_wait_seconds`) rather than
failing the batch. Whatever interrupts a batch's sending (Redis away for longer, a bug, a time
limit), the messages that were never handed to Meta go back to `pending` at once, untried; those
that were settle by Meta's answers, or as uncertain when none came (`_settle_interrupted`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import orjson
import redis
from django.conf import settings
from django.db import transaction
from django.db.models import Min
from django.utils import timezone

from bulksend.admission import QuotaGate
from bulksend.lifecycle import (
    batch_settle,
    bulk_send_cancel_leftovers,
    bulk_send_finish_if_done,
    bulk_send_halt,
    bulk_send_start,
)
from bulksend.liveness import DrainHeartbeat
from bulksend.models import BulkSend, BulkSendStatus
from messaging.delivery import ClaimedMessage, DeliveryResult, Settle, messages_claim
from messaging.models import Message, MessageStatus, callback_data_for
from messaging.ratelimit import AsyncPacer, LimiterUnavailable, RateLimiter, get_rate_limiter
from meta.graph import (
    AsyncGraphClient,
    ErrorClass,
    GraphError,
    SendOutcome,
    SendProgress,
    SendRequest,
)
from meta.template_message import MissingVariableError, template_message_body
from mindo import metrics
from mindo.meta_client import async_graph_client
from templates_app.shapes import TemplateShape, template_shape

logger = logging.getLogger(__name__)

# Meta's "too many messages for this number" (130429), and how long every worker then pauses.
RATE_LIMIT_HIT = "130429"
RATE_LIMIT_PAUSE_SECONDS = 1.0


@dataclass(slots=True)
class DrainReport:
    batches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    halted: str | None = None
    more_work: bool = False
    next_wake_at: datetime | None = None

    def add(self, counts: dict[str, int]) -> None:
        self.batches += 1
        for key, count in counts.items():
            self.outcomes[key] = self.outcomes.get(key, 0) + count


def _retry_delay(attempts: int, error: GraphError) -> float:
    """Exponential backoff with full jitter; Meta's "try again later" class waits hours."""
    if error.error_class == ErrorClass.DEFER:
        return float(settings.DELIVERY_DEFER_SECONDS)
    ceiling = min(
        settings.DELIVERY_RETRY_MAX_SECONDS, settings.DELIVERY_RETRY_BASE_SECONDS * 2**attempts
    )
    return random.uniform(ceiling / 2, ceiling)


def _result_for(message: ClaimedMessage, outcome: SendOutcome, now: datetime) -> DeliveryResult:
    if outcome.wamid is not None:
        return DeliveryResult(message.id, Settle.SENT, wamid=outcome.wamid)
    error = outcome.error
    assert error is not None
    if error.error_class == ErrorClass.HALT:
        return DeliveryResult(message.id, Settle.RELEASE)
    if error.error_class in (ErrorClass.RETRY, ErrorClass.DEFER):
        if error.maybe_delivered:
            return DeliveryResult(message.id, Settle.UNCERTAIN)
        if message.attempts < settings.DELIVERY_MAX_ATTEMPTS:
            retry_at = now + timedelta(seconds=_retry_delay(message.attempts, error))
            return DeliveryResult(message.id, Settle.RETRY, retry_at=retry_at)
    return DeliveryResult(
        message.id, Settle.FAILED, error_code=error.code, error_message=error.text
    )


def message_request(
    message: ClaimedMessage, shape: TemplateShape, phone_number_id: str, access_token: str
) -> SendRequest | SendOutcome:
    """The Graph request of one claimed message, or the failure of a message that cannot be
    built (only a template edited after the message was accepted gets there)."""
    try:
        body = template_message_body(
            to_e164=message.recipient_phone,
            template=shape,
            variables=message.variables,
            button_variables=message.button_variables,
            callback_data=callback_data_for(message.id),
        )
    except MissingVariableError as error:
        unsendable = GraphError(
            code="unsendable",
            message=str(error),
            details=None,
            http_status=None,
            error_class=ErrorClass.FAIL,
        )
        return SendOutcome(None, unsendable)
    return SendRequest(phone_number_id, access_token, orjson.dumps(body))


def number_slow_down_if_told(
    limiter: RateLimiter, phone_number_id: str, outcomes: list[SendOutcome]
) -> None:
    """Meta says this number goes too fast (130429): every sender of it slows down, not just the
    one that was told."""
    if any(o.error is not None and o.error.code == RATE_LIMIT_HIT for o in outcomes):
        try:
            limiter.slow_down(phone_number_id, RATE_LIMIT_PAUSE_SECONDS)
        except redis.RedisError as error:
            logger.warning("Cannot slow number %s down: %s", phone_number_id, error)


class _Sender:
    """Sends a batch at the number's pace over one kept-alive client."""

    def __init__(self, bulk_send: BulkSend, client: AsyncGraphClient) -> None:
        number = bulk_send.phone_number
        self.client = client
        self.shape = template_shape(bulk_send.template)
        self.phone_number_id = number.phone_number_id
        self.access_token = number.business_account.access_token
        self.limiter = get_rate_limiter()
        # A permit is taken right before its request goes out, never banked: the limiter's
        # promise (no 1-s window above the rate) holds for the moments requests leave.
        self.pacer = AsyncPacer(
            self.limiter,
            self.phone_number_id,
            number.throughput_per_second,
            redis_wait=_redis_wait_seconds(),
        )
        self.before_send = self.pacer.wait if settings.DELIVERY_PACING else None

    def _request(self, message: ClaimedMessage) -> SendRequest | SendOutcome:
        return message_request(message, self.shape, self.phone_number_id, self.access_token)

    async def send(self, batch: list[ClaimedMessage], progress: SendProgress) -> list[SendOutcome]:
        """The outcome of each message of `batch`, in order.

        `progress` has a slot per message of the batch; if this raises, it says which were
        handed to Meta and what came back of them.
        """
        prepared = [self._request(message) for message in batch]
        positions = [i for i, item in enumerate(prepared) if isinstance(item, SendRequest)]
        requests = [item for item in prepared if isinstance(item, SendRequest)]
        sent = SendProgress(len(requests))
        try:
            await self.client.send_many(
                requests,
                settings.DELIVERY_CONCURRENCY,
                before_send=self.before_send,
                progress=sent,
            )
        finally:
            for index, item in enumerate(prepared):
                if isinstance(item, SendOutcome):
                    progress.outcomes[index] = item
            for index, position in enumerate(positions):
                progress.handed_over[position] = sent.handed_over[index]
                progress.outcomes[position] = sent.outcomes[index]
        outcomes = [outcome for outcome in progress.outcomes if outcome is not None]
        number_slow_down_if_told(self.limiter, self.phone_number_id, outcomes)
        return outcomes


def _redis_wait_seconds() -> float:
    """How long a batch waits for an unreachable Redis before giving back what it has not sent.

    At most half a lease: a batch that waited and then sends must finish well inside its lease,
    or the reaper could hand its messages to another drain while it still sends them.
    """
    return float(min(settings.DELIVERY_REDIS_WAIT_SECONDS, settings.DELIVERY_LEASE_SECONDS / 2))


def _send_batch(
    loop: asyncio.AbstractEventLoop, sender: _Sender, batch: list[ClaimedMessage]
) -> list[SendOutcome] | None:
    """The batch's outcomes; None if Redis stayed away, what was not sent being back already."""
    progress = SendProgress(len(batch))
    try:
        return loop.run_until_complete(sender.send(batch, progress))
    except LimiterUnavailable as error:
        _settle_interrupted(batch, progress, error)
        return None
    except BaseException as error:
        _settle_interrupted(batch, progress, error)
        raise


def _settle_interrupted(
    batch: list[ClaimedMessage], progress: SendProgress, error: BaseException
) -> None:
    """Settle a batch whose sending raised `error` part way.

    Never handed to Meta: back to `pending` now, the attempt not counted (waiting out the lease
    would only delay them). Handed over: by Meta's answer, or uncertain when none came back.
    A failure here is logged, not raised over `error`: the leases and the reaper still hold.
    """
    now = timezone.now()
    results = []
    for message, handed_over, outcome in zip(
        batch, progress.handed_over, progress.outcomes, strict=True
    ):
        if outcome is not None:
            results.append(_result_for(message, outcome, now))
        elif handed_over:
            results.append(DeliveryResult(message.id, Settle.UNCERTAIN))
        else:
            results.append(DeliveryResult(message.id, Settle.RELEASE))
    try:
        counts = batch_settle(results, now=now)
    except Exception:
        logger.exception("Cannot settle the interrupted batch (%s); its leases will", error)
        return
    logger.warning("Batch interrupted (%s): settled %s", error, counts)


def bulk_send_drain(bulk_send_id: uuid.UUID, *, budget_seconds: float | None = None) -> DrainReport:
    """Send what is due of one send for up to `budget_seconds`; see the module docstring."""
    report = DrainReport()
    if not bulk_send_start(bulk_send_id):
        bulk_send_cancel_leftovers(bulk_send_id)
        return report
    bulk_send = BulkSend.objects.select_related(
        "template", "phone_number", "phone_number__business_account"
    ).get(pk=bulk_send_id)
    gate = QuotaGate(bulk_send.phone_number)
    deadline = time.monotonic() + (budget_seconds or settings.DELIVERY_DRAIN_SECONDS)
    batch_size = min(
        settings.DELIVERY_BATCH_SIZE, max(bulk_send.phone_number.throughput_per_second * 2, 1)
    )
    loop = asyncio.new_event_loop()
    client = async_graph_client()
    loop.run_until_complete(client.__aenter__())
    heartbeat = DrainHeartbeat(bulk_send_id, until=deadline + settings.DELIVERY_LEASE_SECONDS)
    try:
        heartbeat.start()
        sender = _Sender(bulk_send, client)
        while time.monotonic() < deadline:
            if not BulkSend.objects.filter(
                pk=bulk_send_id, status=BulkSendStatus.PROCESSING
            ).exists():
                # Halted, cancelled or finished by another drain meanwhile. What this drain's
                # last batch sent back to `pending` after a cancel is cancelled now.
                bulk_send_cancel_leftovers(bulk_send_id)
                break
            now = timezone.now()
            with transaction.atomic():
                claimed = messages_claim(
                    bulk_send_id=bulk_send_id,
                    limit=batch_size,
                    lease_seconds=settings.DELIVERY_LEASE_SECONDS,
                    now=now,
                )
                batch = gate.admit(claimed, now)
            if not claimed:
                break
            if not batch:
                continue
            outcomes = _send_batch(loop, sender, batch)
            if outcomes is None:
                # Redis stayed away: end this drain; the reaper wakes the send once it is back.
                report.more_work = True
                break
            now = timezone.now()
            results = [_result_for(m, o, now) for m, o in zip(batch, outcomes, strict=True)]
            report.add(batch_settle(results, now=now))
            metrics.messages_settled(results, outcomes)
            halting = next(
                (o.error for o in outcomes if o.error and o.error.error_class == ErrorClass.HALT),
                None,
            )
            if halting is not None:
                bulk_send_halt(bulk_send_id, code=halting.code, text=halting.text)
                report.halted = halting.code
                return report
        else:
            report.more_work = True
    finally:
        loop.run_until_complete(client.__aexit__(None, None, None))
        loop.close()
        heartbeat.stop()
    bulk_send_finish_if_done(bulk_send_id)
    report.next_wake_at = _next_wake_at(bulk_send_id)
    return report


def _next_wake_at(bulk_send_id: uuid.UUID) -> datetime | None:
    """When this send next has something to do: its earliest retry, None if nothing waits."""
    waiting = Message.objects.filter(bulk_send_id=bulk_send_id, status=MessageStatus.PENDING)
    if not waiting.exists():
        return None
    earliest = waiting.aggregate(first=Min("next_attempt_at"))["first"]
    return earliest or timezone.now()
