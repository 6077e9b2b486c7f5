"""Draining a bulk send to Meta: claim, admit by quota, pace, send concurrently, settle.

One drain runs in one Celery task for at most `DELIVERY_DRAIN_SECONDS`, then hands over to a new
task if work is left: many sends share the workers fairly, and a worker that dies loses at most
the leases of the batch it sends and the one it claimed next (the reaper hands them back). Any
number of drains, on any number of machines, may work on the same send: the claim skips what
another holds.

Each batch:
1. In one transaction: claim up to a batch of due `pending` messages (SKIP LOCKED, with a lease),
   give back until its next opening a message outside its recipient's quiet hours
   (bulksend.window_gate), settle at once the marketing messages Meta's rules hold
   (bulksend.screening: opted out, a US number, a recipient cooling down) and, on a limited tier,
   admit only the recipients the portfolio's 24 h window has room for; the others go back to
   `pending` until the window frees room (bulksend.quota).
2. Take permits for the number from the shared Redis limiter, so no combination of workers ever
   exceeds the number's rate, and send each message as its permit comes, many at once over
   kept-alive connections.
3. Settle the batch in one transaction (messaging.delivery), counters by delta, and log one line.
4. Stop at once if Meta says the token is invalid (190) or the account is blocked (368): no
   request leaves after that answer, the send is halted with the reason, and its untried
   messages stay pending for when it is resumed.

The steps overlap: batches are sent from an event loop in a thread of its own (bulksend.sending)
and settled, one after another, in a second thread, while this thread claims: batch N is
settled and batch N+2 claimed during the sending of batch N+1, and batch N+1's first requests
take the connections that N's last ones free. Sending is never a pause away, so a paced drain
keeps its number's rate and an unpaced one its connections busy. What makes the overlap safe:
- batch N+1 is handed to the sender only once every request of batch N has been taken, after
  the send was seen still PROCESSING and not paused: a cancel, a pause, a halt or the end of the
  send by anyone before then leaves batch N+1 unsent and back in `pending` at once;
- a halt among batch N's last answers stops batch N+1 before its next request (they share the
  sender's `stop`, set before the answer frees its connection); N+1 is settled after N, by what
  came back of what it sent, the rest back in `pending`;
- a cancel or a pause in the middle of batch N stops its sending, and that of a batch handed
  over meanwhile, before the next request (the send's stop mark, bulksend.stopping, read afresh
  by each batch's first request), and the drain ends as above;
- a claimed batch that waited long for the one before it is given back and claimed afresh, so
  it starts with most of its lease ahead (`_held_too_long`);
- whatever ends the drain early (an error here, in the sending or in a settle, a time limit),
  the sender is stopped, what it was sending settles by what came back and what it never sent
  is given back;
- every settle is waited for before the send is halted, its leftovers cancelled or its end
  checked, so those see every message where its batch put it.

Redis away: the limiter's pacer waits for it (bounded, see `redis_wait_seconds`) rather than
failing the batch. Whatever interrupts a batch's sending (Redis away for longer, a bug, a time
limit), the messages that were never handed to Meta go back to `pending` at once, untried; those
that were settle by Meta's answers, or as uncertain when none came (`SentBatch.results`).
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import connections, transaction
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
from bulksend.screening import RecipientScreen
from bulksend.sending import BatchSender, SendingLoop, SentBatch, redis_wait_seconds
from bulksend.window_gate import SendWindowGate
from messaging.delivery import ClaimedMessage, messages_claim
from messaging.models import Message, MessagePhase, MessageStatus
from messaging.ratelimit import LimiterStopped, LimiterUnavailable, get_rate_limiter
from meta.graph import SendOutcome, SendRequest
from mindo import metrics

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class DrainReport:
    batches: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    halted: str | None = None
    more_work: bool = False
    next_wake_at: datetime | None = None

    def add(self, counts: dict[str, int], *, tried: bool = True) -> None:
        """Count a settled batch; one given back untried counts its messages, not a batch."""
        self.batches += tried
        for key, count in counts.items():
            self.outcomes[key] = self.outcomes.get(key, 0) + count


@dataclass(slots=True)
class _Claimed:
    batch: list[ClaimedMessage]
    at: float  # time.monotonic() of the claim: its leases run from then
    requests: list[SendRequest | SendOutcome]  # the batch's requests (BatchSender.prepare)


class _Drain:
    """One drain's batches: the claim, the send (in the sending loop's thread), the settle."""

    def __init__(self, bulk_send: BulkSend, report: DrainReport, deadline: float) -> None:
        self.bulk_send_id = bulk_send.pk
        self.phone_number_id = bulk_send.phone_number.phone_number_id
        self.report = report
        self.deadline = deadline
        self.screen = RecipientScreen(bulk_send)
        self.gate = QuotaGate(bulk_send.phone_number)
        self.window = SendWindowGate(bulk_send, fallback_timezone=bulk_send.organization.timezone)
        self.batch_size = min(
            settings.DELIVERY_BATCH_SIZE, max(bulk_send.phone_number.throughput_per_second * 2, 1)
        )
        self.loop = SendingLoop()
        self.sender = BatchSender(
            bulk_send, self.loop, get_rate_limiter(), redis_wait=redis_wait_seconds()
        )
        self.upcoming: _Claimed | None = None  # claimed, not handed to the sender yet
        self.in_flight: SentBatch | None = None  # handed to the sender, not settled yet
        # The batch before `in_flight`: its last requests still in flight, not settled yet.
        self.finishing: SentBatch | None = None
        # Settling runs in a thread of its own too, one batch after another, so that this thread
        # claims the next batch meanwhile: the sender never waits for both.
        self.settler = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drain-settling")
        self.settling: Future[None] | None = None  # the batch handed to the settling thread last
        self.loop.start()  # last: `close()` is what stops it

    def run(self) -> None:
        """Batches until nothing is due, the budget is spent or the send stops; see the module.

        Each turn: claim batch N+2 (while N+1 is sent); once every request of N+1 is taken, hand
        N+2 to the sender (its requests take the connections N+1's last ones free); once N+1's
        sending has ended, settle it while N+2 is sent.
        """
        while True:
            self.upcoming = self._claim()
            finished, self.in_flight = self.in_flight, None
            self.finishing = finished
            if finished is not None:
                finished.wait_taken()
            # What is known of `finished` so far: an error, or a halt among its answers.
            stopping = finished is not None and (
                self.sender.stop.is_set() or finished.taken_early()
            )
            if self.upcoming is not None:
                if not stopping and self._held_too_long():
                    self._release_upcoming()  # claimed afresh next turn
                elif stopping or not self._still_processing():
                    self._release_upcoming()
                    stopping = True
                else:
                    self.in_flight = self.sender.submit(self.upcoming.batch, self.upcoming.requests)
                    self.upcoming = None
            if finished is None:
                if stopping:
                    # Halted, cancelled or finished by another drain meanwhile. What the last
                    # batch sent back to `pending` after a cancel is cancelled now.
                    self._settled()
                    bulk_send_cancel_leftovers(self.bulk_send_id)
                if self.in_flight is None:
                    self._settled()
                    return
                continue
            finished.wait()
            halting = finished.halting()
            if finished.error is not None or halting is not None:
                # Its last answers stopped it: the batch handed over meanwhile stops too, before
                # its next request, and is settled after it.
                stopping = True
                self.sender.stop.set()
            if finished.error is not None:
                self._settle_interrupted(finished)
                self.finishing = None
                self._settle_interrupted_next()
                if isinstance(finished.error, LimiterStopped):
                    # Cancelled or paused in the middle of the batch (bulksend.stopping): what
                    # was not sent is back in `pending`, cancelled now after a cancel.
                    bulk_send_cancel_leftovers(self.bulk_send_id)
                    return
                if isinstance(finished.error, LimiterUnavailable):
                    # Redis stayed away: end this drain; the reaper wakes the send once it is back.
                    self.report.more_work = True
                    return
                raise finished.error
            self._settle_later(finished)
            self.finishing = None
            if halting is not None:
                self._settled()
                self._settle_interrupted_next()
                bulk_send_halt(self.bulk_send_id, code=halting.code, text=halting.text)
                self.report.halted = halting.code
                return
            if stopping:
                self._settled()
                bulk_send_cancel_leftovers(self.bulk_send_id)
                return

    def _settle_interrupted_next(self) -> None:
        """Settle the batch handed to the sender after one whose answers stopped the sending
        (`sender.stop` is set): what it sent by Meta's answers, the rest back to `pending`."""
        cut, self.in_flight = self.in_flight, None
        self._settle_cut(cut)

    def _settle_cut(self, cut: SentBatch | None) -> None:
        """Once the sending of `cut`, stopped, has ended, settle it (`_settle_interrupted`)."""
        if cut is not None:
            cut.wait()
            self._settle_interrupted(cut)

    def _claim(self) -> _Claimed | None:
        """The next batch to send, None when nothing is due or the budget is spent.

        Claimed in one transaction with the quota's admission; claims again when the quota let
        none of a batch through (those wait for the window, not due again before it frees room).
        """
        while True:
            if time.monotonic() >= self.deadline:
                self.report.more_work = True
                return None
            now = timezone.now()
            with transaction.atomic():
                claimed = messages_claim(
                    bulk_send_id=self.bulk_send_id,
                    limit=self.batch_size,
                    lease_seconds=settings.DELIVERY_LEASE_SECONDS,
                    now=now,
                )
                # Outside its recipient's quiet hours first: it spends no quota room.
                in_window = self.window.admit(claimed, now)
                batch = self.gate.admit(self.screen.screen(in_window, now), now)
            if not claimed:
                return None
            if batch:
                return _Claimed(batch, time.monotonic(), self.sender.prepare(batch))

    def _held_too_long(self) -> bool:
        """Whether the claimed batch waited so long for the one before it (Redis away, a slow
        Meta) that its leases might run out while it is sent."""
        assert self.upcoming is not None
        return time.monotonic() - self.upcoming.at > settings.DELIVERY_LEASE_SECONDS / 4

    def _still_processing(self) -> bool:
        """Neither finished, halted, cancelled nor paused by anyone meanwhile."""
        return BulkSend.objects.filter(
            pk=self.bulk_send_id, status=BulkSendStatus.PROCESSING, paused_at__isnull=True
        ).exists()

    def _release_upcoming(self) -> None:
        """Give a claimed batch that will not be sent back to `pending`, untried."""
        if self.upcoming is None:
            return
        unsent = SentBatch(self.upcoming.batch)
        self.upcoming = None
        self._settle_interrupted(unsent)

    def _settle(self, sent: SentBatch) -> None:
        """Record what Meta said of a batch in one transaction; log one line about it."""
        now = timezone.now()
        results = sent.results(now)
        self.report.add(batch_settle(results, now=now), tried=sent.handed_over > 0)
        outcomes = sent.progress.outcomes
        metrics.messages_settled(
            [r for r, o in zip(results, outcomes, strict=True) if o is not None],
            [o for o in outcomes if o is not None],
        )
        fields = sent.summary(
            results, bulk_send_id=self.bulk_send_id, phone_number_id=self.phone_number_id
        )
        logger.info(
            "Send %(bulk_send_id)s, number %(phone_number_id)s: %(sent)d sent, %(failed)d "
            "failed, %(retried)d retried, %(uncertain)d uncertain, %(not_tried)d not tried; "
            "%(rate).1f requests/s, %(forfeited)d permits forfeited, %(paid_late)d paid late",
            fields,
            extra=fields,
        )

    def _settle_later(self, sent: SentBatch) -> None:
        """Settle `sent` in the settling thread, after the batch before it; raise what settling
        the batch before it raised (this one is settled all the same)."""
        before, self.settling = self.settling, self.settler.submit(self._settle, sent)
        if before is not None:
            before.result()

    def _settled(self) -> None:
        """Wait until every batch handed to the settling thread is settled; raise what failed."""
        settling, self.settling = self.settling, None
        if settling is not None:
            settling.result()

    def _settle_interrupted(self, sent: SentBatch) -> None:
        """Settle, and wait for it, a batch whose sending was cut short or never started.

        A failure here is logged, not raised over what cut the batch short: the leases and the
        reaper still hold.
        """
        self._settle_interrupted_wait()
        try:
            self._settle_later(sent)
            self._settled()
        except Exception:
            logger.exception(
                "Cannot settle the interrupted batch (%s); its leases will", sent.error
            )
            return
        if sent.error is not None:
            logger.warning("Batch interrupted (%s)", sent.error)

    def close(self) -> None:
        """Stop sending; settle what is in flight or claimed (after an error); close the threads
        (the settling thread's database connection with it)."""
        self.sender.stop.set()
        try:
            finishing, self.finishing = self.finishing, None
            self._settle_cut(finishing)
            self._settle_interrupted_next()
            self._release_upcoming()
            self._settle_interrupted_wait()
        finally:
            try:
                self.loop.close()
            finally:
                self.settler.submit(connections.close_all).result()
                self.settler.shutdown()

    def _settle_interrupted_wait(self) -> None:
        """After an error: wait for the settling thread; a failure there is logged, not raised."""
        try:
            self._settled()
        except Exception:
            logger.exception("Cannot settle a batch; its leases will")


def bulk_send_drain(bulk_send_id: uuid.UUID, *, budget_seconds: float | None = None) -> DrainReport:
    """Send what is due of one send for up to `budget_seconds`; see the module docstring."""
    report = DrainReport()
    if not bulk_send_start(bulk_send_id):
        bulk_send_cancel_leftovers(bulk_send_id)
        return report
    bulk_send = BulkSend.objects.select_related(
        "template", "phone_number", "phone_number__business_account", "organization"
    ).get(pk=bulk_send_id)
    deadline = time.monotonic() + (budget_seconds or settings.DELIVERY_DRAIN_SECONDS)
    heartbeat = DrainHeartbeat(bulk_send_id, until=deadline + settings.DELIVERY_LEASE_SECONDS)
    heartbeat.start()
    try:
        drain = _Drain(bulk_send, report, deadline)
        try:
            drain.run()
        finally:
            drain.close()
    finally:
        heartbeat.stop()
    if report.halted:
        return report
    bulk_send_finish_if_done(bulk_send_id)
    report.next_wake_at = _next_wake_at(bulk_send_id)
    return report


def _next_wake_at(bulk_send_id: uuid.UUID) -> datetime | None:
    """When this send next has something to do: its earliest retry, None if nothing waits (or
    it was paused: its resume wakes it)."""
    waiting = Message.objects.filter(
        bulk_send_id=bulk_send_id,
        phase=MessagePhase.OPEN,
        status=MessageStatus.PENDING,
        bulk_send__paused_at__isnull=True,
    )
    if not waiting.exists():
        return None
    earliest = waiting.aggregate(first=Min("next_attempt_at"))["first"]
    return earliest or timezone.now()
