"""Sending a drain's batches from an event loop of their own, in a thread beside the drain's.

A drain waits on three things in turn: Meta (and, paced, the limiter) while it sends a batch, and
PostgreSQL while it settles that batch and claims the next. Done one after the other, every settle
and claim is a pause in sending: paced, the number's rate is lost for that long; unpaced, the
connections stand idle. So the batches go out from an event loop running in a thread of its own
(`SendingLoop`) while batch N is settled and batch N+2 claimed (bulksend.drain). The threads
mostly wait on sockets (Meta's, PostgreSQL's, Redis's), which release the GIL.

Batch N+1 is submitted once every request of batch N has been taken, and its requests take the
connections N's last requests free as their answers come: the batches of one sender share
DELIVERY_CONCURRENCY slots, so the requests in flight never exceed it, and the connections are not
left idle while a batch's last answers come back (at Meta's answer time, that tail was a tenth of
a drain's time with batches of 500). A halt in N's last answers stops N+1 before its next request
(the client's `stop`, set before the answer's slot is freed), and the first request of each batch
reads the send's stop mark afresh. Nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, timedelta
from typing import Any

import orjson
from django.conf import settings

from bulksend.models import BulkSend
from bulksend.stopping import StopPoll, send_stop_keys
from messaging.delivery import ClaimedMessage, DeliveryResult, Settle
from messaging.models import callback_data_for
from messaging.ratelimit import AsyncPacer, RateLimiter
from meta.graph import ErrorClass, GraphError, SendOutcome, SendProgress, SendRequest
from meta.graph_errors import NUMBER_RATE_LIMIT_HIT, local_failure
from meta.template_message import MissingVariableError, template_message_body
from mindo.meta_client import async_graph_client
from mindo.redisconn import REDIS_ERRORS
from templates_app.shapes import TemplateShape, template_shape

logger = logging.getLogger(__name__)

# How long every worker of a number pauses when Meta says it goes too fast (130429).
RATE_LIMIT_PAUSE_SECONDS = 1.0
# How long closing the loop waits for the client's connections to close.
CLOSE_TIMEOUT_SECONDS = 10.0


def _retry_delay(attempts: int) -> float:
    """Exponential backoff with full jitter."""
    ceiling = min(
        settings.DELIVERY_RETRY_MAX_SECONDS, settings.DELIVERY_RETRY_BASE_SECONDS * 2**attempts
    )
    return random.uniform(ceiling / 2, ceiling)


def result_for(message: ClaimedMessage, outcome: SendOutcome, now: datetime) -> DeliveryResult:
    if outcome.wamid is not None:
        return DeliveryResult(message.id, Settle.SENT, wamid=outcome.wamid)
    error = outcome.error
    assert error is not None
    if error.error_class in (ErrorClass.HALT, ErrorClass.PAUSE):
        return DeliveryResult(message.id, Settle.RELEASE)
    if error.error_class == ErrorClass.DEFER:
        # The recipient's cooldown decides when, or whether, it goes again (messaging.cooldown).
        return DeliveryResult(message.id, Settle.DEFER, error_code=error.code)
    if error.error_class == ErrorClass.RETRY:
        if error.maybe_delivered:
            return DeliveryResult(message.id, Settle.UNCERTAIN)
        if message.attempts < settings.DELIVERY_MAX_ATTEMPTS:
            retry_at = now + timedelta(seconds=_retry_delay(message.attempts))
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
            user_id=message.recipient_user_id,
            template=shape,
            variables=message.variables,
            button_variables=message.button_variables,
            callback_data=callback_data_for(message.id),
        )
    except MissingVariableError as error:
        return SendOutcome(None, local_failure("unsendable", str(error)))
    return SendRequest(phone_number_id, access_token, orjson.dumps(body))


def number_slow_down_if_told(
    limiter: RateLimiter, phone_number_id: str, outcomes: list[SendOutcome]
) -> None:
    """Meta says this number goes too fast (130429): every sender of it slows down, not just the
    one that was told."""
    if any(o.error is not None and o.error.code == NUMBER_RATE_LIMIT_HIT for o in outcomes):
        try:
            limiter.slow_down(phone_number_id, RATE_LIMIT_PAUSE_SECONDS)
        except REDIS_ERRORS as error:
            logger.warning("Cannot slow number %s down: %s", phone_number_id, error)


def redis_wait_seconds() -> float:
    """How long a batch waits for an unreachable Redis before giving back what it has not sent.

    At most half a lease: a batch that waited and then sends must finish well inside its lease,
    or the reaper could hand its messages to another drain while it still sends them.
    """
    return float(min(settings.DELIVERY_REDIS_WAIT_SECONDS, settings.DELIVERY_LEASE_SECONDS / 2))


class SendingLoop:
    """An event loop in a thread of its own, holding the drain's kept-alive Graph client."""

    def __init__(self) -> None:
        self.client = async_graph_client()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="drain-sending", daemon=True
        )

    def start(self) -> None:
        self._thread.start()
        self.run(self.client.__aenter__()).result()

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> concurrent.futures.Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self) -> None:
        """Close the client and stop the loop; every batch must have been waited for."""
        if self._thread.is_alive():
            try:
                closing = self.run(self.client.__aexit__(None, None, None))
                closing.result(timeout=CLOSE_TIMEOUT_SECONDS)
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(timeout=CLOSE_TIMEOUT_SECONDS)
        if not self._thread.is_alive():
            self._loop.close()


class SentBatch:
    """A batch handed to the sending loop: what became of each message, once `wait()` returns."""

    def __init__(self, batch: list[ClaimedMessage]) -> None:
        self.batch = batch
        self.progress = SendProgress(len(batch))
        self.error: BaseException | None = None  # what interrupted the sending, if anything
        # Set once no request of the batch is left to take, or its sending ended.
        self.taken = threading.Event()
        self.seconds = 0.0  # how long the sending took, limiter waits included
        self.forfeited = 0  # permits its workers woke too late to use (messaging.ratelimit)
        self.paid_late = 0  # permits its workers used late, paid for by the schedule (same)
        self._future: concurrent.futures.Future[None] | None = None

    def wait(self) -> None:
        """Until the sending is over; `error` says whether it was cut short."""
        assert self._future is not None
        # Not `result()`: an exception raised in this thread while it waits (a task's time limit)
        # must go up, not be taken for the sending's own.
        concurrent.futures.wait([self._future])
        self.error = self._future.exception()

    def taken_early(self) -> bool:
        """Whether the sending already ended with an error (`wait` has not read it yet)."""
        future = self._future
        return future is not None and future.done() and future.exception() is not None

    def wait_taken(self) -> None:
        """Until every request of the batch is taken (its last may still be in flight) or its
        sending ended: from then on the next batch may be submitted."""
        self.taken.wait()

    @property
    def handed_over(self) -> int:
        return sum(self.progress.handed_over)

    def results(self, now: datetime) -> list[DeliveryResult]:
        """What to record of each message, whether the sending ended or was cut short.

        Answered by Meta: by the answer. Handed over without an answer: uncertain (Meta may have
        it). Never handed over (a halt, Redis away, the drain stopping): back to `pending` now,
        the attempt not counted; waiting out the lease would only delay it.
        """
        results = []
        progress = self.progress
        for message, handed_over, outcome in zip(
            self.batch, progress.handed_over, progress.outcomes, strict=True
        ):
            if outcome is not None:
                results.append(result_for(message, outcome, now))
            elif handed_over:
                results.append(DeliveryResult(message.id, Settle.UNCERTAIN))
            else:
                results.append(DeliveryResult(message.id, Settle.RELEASE))
        return results

    def summary(
        self, results: list[DeliveryResult], *, bulk_send_id: object, phone_number_id: str
    ) -> dict[str, Any]:
        """The batch's line in the drain's log, as fields (JSON logs keep them apart)."""
        tally = Counter(result.outcome for result in results)
        return {
            "bulk_send_id": str(bulk_send_id),
            "phone_number_id": phone_number_id,
            "sent": tally[Settle.SENT],
            "failed": tally[Settle.FAILED],
            "retried": tally[Settle.RETRY],
            "uncertain": tally[Settle.UNCERTAIN],
            "not_tried": tally[Settle.RELEASE],
            # Requests handed to Meta per second of the batch's sending, limiter waits included.
            "rate": round(self.handed_over / self.seconds, 1) if self.seconds > 0 else 0.0,
            "forfeited": self.forfeited,
            "paid_late": self.paid_late,
        }

    def halting(self) -> GraphError | None:
        """Meta's error that halts the send (an invalid token, a blocked account), if it came."""
        for outcome in self.progress.outcomes:
            if outcome is not None and outcome.halts:
                return outcome.error
        return None


class BatchSender:
    """Sends batches of one send at its number's pace from a `SendingLoop`.

    `stop` ends the sending for good: set by the client when Meta halts the send, by the drain
    when it must end early. Whatever was not handed to Meta then has no outcome. A send cancelled
    or paused meanwhile ends the sending too, before its next request (`LimiterStopped`, see
    bulksend.stopping).
    """

    def __init__(
        self, bulk_send: BulkSend, loop: SendingLoop, limiter: RateLimiter, *, redis_wait: float
    ) -> None:
        number = bulk_send.phone_number
        self.loop = loop
        self.shape = template_shape(bulk_send.template)
        self.phone_number_id = number.phone_number_id
        self.access_token = number.business_account.access_token
        self.limiter = limiter
        self.stop = threading.Event()
        # A permit is taken right before its request goes out, never banked: the limiter's
        # promise (no 1-s window above the rate) holds for the moments requests leave. The same
        # call refuses permits once the send is cancelled or paused (bulksend.stopping).
        self.pacer = AsyncPacer(
            limiter,
            self.phone_number_id,
            number.throughput_per_second,
            redis_wait=redis_wait,
            stop_keys=send_stop_keys(bulk_send.pk, self.phone_number_id),
        )
        self.stop_poll = (
            None if settings.DELIVERY_PACING else StopPoll(bulk_send.pk, self.phone_number_id)
        )
        self.before_send: Callable[[], Awaitable[object]] = self.stop_poll or self.pacer.wait
        # Shared by the batches of this sender: one batch's requests take the connections the
        # last ones of the batch before free (`submit`).
        self.slots = asyncio.Semaphore(settings.DELIVERY_CONCURRENCY)

    def prepare(self, batch: list[ClaimedMessage]) -> list[SendRequest | SendOutcome]:
        """The batch's requests, bodies encoded: built by the drain's thread right after its
        claim, while the batch before is sent, so the sending loop never pauses to build them."""
        return [self._request(message) for message in batch]

    def submit(
        self,
        batch: list[ClaimedMessage],
        prepared: list[SendRequest | SendOutcome] | None = None,
    ) -> SentBatch:
        """Start sending `batch` (its requests `prepare`d, or built here) in the loop's thread;
        returns at once. May be called once the batch before is `taken`: its requests wait for
        the slots that batch's last requests hold."""
        sent = SentBatch(batch)
        sent._future = self.loop.run(
            self._send(sent, self.prepare(batch) if prepared is None else prepared)
        )
        return sent

    def _request(self, message: ClaimedMessage) -> SendRequest | SendOutcome:
        return message_request(message, self.shape, self.phone_number_id, self.access_token)

    async def _send(self, sent: SentBatch, prepared: list[SendRequest | SendOutcome]) -> None:
        """Fill `sent.progress` as requests go out and answers come back."""
        started = time.monotonic()
        forfeited, paid_late = self.pacer.forfeited, self.pacer.paid_late
        progress = sent.progress
        positions = [i for i, item in enumerate(prepared) if isinstance(item, SendRequest)]
        requests = [item for item in prepared if isinstance(item, SendRequest)]
        requested = SendProgress(len(requests))
        if self.stop_poll is not None:
            # A cancel or a pause that came while the batch before was sent stops this one
            # before its first request, not up to STOP_POLL_SECONDS later.
            self.stop_poll.read_next()
        try:
            await self.loop.client.send_many(
                requests,
                settings.DELIVERY_CONCURRENCY,
                before_send=self.before_send,
                progress=requested,
                stop=self.stop,
                slots=self.slots,
                all_taken=sent.taken.set,
            )
        finally:
            sent.taken.set()
            for index, item in enumerate(prepared):
                if isinstance(item, SendOutcome):
                    progress.outcomes[index] = item
            for index, position in enumerate(positions):
                progress.handed_over[position] = requested.handed_over[index]
                progress.outcomes[position] = requested.outcomes[index]
            sent.seconds = time.monotonic() - started
            sent.forfeited = self.pacer.forfeited - forfeited
            sent.paid_late = self.pacer.paid_late - paid_late
        number_slow_down_if_told(
            self.limiter, self.phone_number_id, [o for o in requested.outcomes if o]
        )
