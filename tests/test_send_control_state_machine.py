"""Issue 11's invariants under all of it: a hypothesis state machine over random sequences of
sends, drains cut between batches, cancels, pauses, resumes and retries through the API, worker
deaths, Meta's webhooks (shuffled, duplicated, late) and the reaper, against the real drain and
the Meta sandbox. After every step:
- each send's counters equal a recount of its messages;
- no recipient (phone or user id) of a send and its retries received the message twice (the
  sandbox's record, which also counts a message sent twice);
- a cancelled send has nothing `pending` and stays CANCELLED;
- nothing arrived at Meta for a send after its cancel or pause returned (until its resume), by
  the sandbox's arrival order;
- a message named by a `sent` webhook is settled (not `sending`), its send cancelled or not.

Deterministic: a drain is cut after a drawn number of batches (its claim answers "nothing due"),
a dead worker's batch is claimed with `messages_claim` and dropped without a liveness mark (so a
cancel or a pause does not wait for its leases), and the reaper's `now` is moved on instead of
waiting. Meta's `sent` status of a message it took is applied before the reaper looks an hour
ahead (Meta does not take an hour to say it; the service then ends the others as
`unknown_outcome`). Meta may refuse some recipients for a while (131026), so a recipient can
fail in one send of a chain and be reached by a retry.

Breaking the retry's "never a message that reached Meta" clause (bulksend.retry) or a cancel's
counter delta (bulksend.lifecycle) makes it fail within its examples; the chain-wide clause (a
recipient reached by another send of the chain) needs a longer program than it usually draws,
and tests/test_retry.py covers it on its own.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import requests
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from hypothesis import HealthCheck, event
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from bulksend import drain as drain_module
from bulksend.conversion import cancelled_messages_convert
from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import bulk_send_start
from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from bulksend.sending import message_request
from messaging.delivery import messages_claim
from messaging.models import (
    Message,
    MessageStatus,
    message_id_from_callback_data,
    public_status_of,
)
from meta_sandbox import SandboxThread
from templates_app.shapes import template_shape
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    phone,
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
)

pytestmark = pytest.mark.django_db(transaction=True)

CONTROL_URL = "/api/v1/meta-templates/bulk-sends/{}/{}/"

# The recipients sends draw from: shared between sends, so retries and deduplication matter.
PHONES = [phone(n, "+54911700") for n in range(8)]
USER_IDS = ["AR.7001502576394655843", "AR.7001502576394655844"]
RECIPIENTS = PHONES + USER_IDS

# Few first sends, so that steps meet on the same sends and chains grow.
MAX_FIRST_SENDS = 2
MAX_SENDS = 8
RETRY_CODES = st.sampled_from([None, ["131026"], ["unknown_outcome", "no_answer"], ["131047"]])
# What Meta says of a message it took, after its `sent`.
FATES = st.sampled_from([(), ("delivered",), ("delivered", "read"), ("failed",)])
OFFSETS = {"sent": 0, "delivered": 1, "read": 2, "failed": 1}


def recipient_body(recipient: str, n: int) -> dict[str, Any]:
    key = "phone" if recipient.startswith("+") else "user_id"
    return {
        key: recipient,
        "variables": {"name": f"Cliente {n}", "code": f"C-{n}"},
        "button_variables": {"button_0": f"ref-{n}"},
    }


@dataclass(slots=True)
class DrainCut:
    """How many more batches the drains of this process may claim (None: no cut)."""

    batches_left: int | None = None


@pytest.fixture(name="drain_cut")
def drain_cut_fixture(monkeypatch: pytest.MonkeyPatch) -> DrainCut:
    """The drain, ending (as when nothing is due) once it claimed the batches it was allowed: a
    drain cut between batches, as a drain whose budget ran out."""
    cut = DrainCut()
    claim = drain_module._Drain._claim

    def cut_claim(self: Any) -> Any:
        if cut.batches_left is not None:
            if cut.batches_left <= 0:
                return None
            cut.batches_left -= 1
        return claim(self)

    monkeypatch.setattr(drain_module._Drain, "_claim", cut_claim)
    return cut


@override_settings(DELIVERY_BATCH_SIZE=2)
def test_counters_never_twice_and_stops_hold_over_any_interleaving(
    tenant: Tenant, sandbox: SandboxThread, drain_cut: DrainCut
) -> None:
    webhook_client = Client()

    class SendControl(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            sandbox.control("reset", {})
            sandbox.control("config", {"recipient_errors": {}})
            self.sends: list[str] = []
            self.root: dict[str, str] = {}  # each send's chain: the first send of its retries
            self.cancelled_at: dict[str, int] = {}  # Meta's arrivals when the cancel returned
            self.paused_at: dict[str, int] = {}  # the same for a pause not resumed yet
            self.pauses: list[tuple[str, int, int]] = []  # resumed pauses: (send, from, to)
            self.fates: dict[str, tuple[str, ...]] = {}  # by wamid
            self.sent_told: set[str] = set()  # wamids whose `sent` webhook was applied
            self.arrivals: list[dict[str, Any]] = []

        # --- helpers ------------------------------------------------------------------------

        def arrived(self) -> int:
            self.arrivals = received(sandbox).messages
            return len(self.arrivals)

        def pick(self, data: st.DataObject) -> str:
            return data.draw(st.sampled_from(self.sends), label="send")

        def pick_unfinished(self, data: st.DataObject) -> str:
            """A send not over yet, when there is one (paused ones too): what drains work on."""
            unfinished = BulkSend.objects.filter(pk__in=self.sends, completed_at__isnull=True)
            open_ids = {str(pk) for pk in unfinished.values_list("pk", flat=True)}
            # In the order they were made: the same draw picks the same send when replayed.
            ids = [send_id for send_id in self.sends if send_id in open_ids]
            return data.draw(st.sampled_from(ids or self.sends), label="send")

        def pick_finished(self, data: st.DataObject) -> str:
            """Mostly a send that is over (what a retry takes from), sometimes any."""
            over = BulkSend.objects.filter(pk__in=self.sends, completed_at__isnull=False)
            over_ids = {str(pk) for pk in over.values_list("pk", flat=True)}
            ids = [send_id for send_id in self.sends if send_id in over_ids]
            if not ids or data.draw(st.integers(0, 4), label="any send") == 0:
                ids = self.sends
            return data.draw(st.sampled_from(ids), label="send")

        def control(self, send_id: str, action: str, body: Any = None) -> Any:
            return tenant.client.post(CONTROL_URL.format(send_id, action), body, format="json")

        def post_statuses(self, statuses: list[tuple[dict[str, Any], str]]) -> None:
            """Post Meta's webhook with these (accepted message, status) pairs, in this order;
            every message a `sent` names is settled afterwards."""
            items = [self.status_item(accepted, kind) for accepted, kind in statuses]
            document = meta.statuses_notification(
                *items,
                waba_id=tenant.account.waba_id,
                phone_number_id=tenant.number.phone_number_id,
            )
            response = meta.post(webhook_client, document)
            assert response.status_code == 200, response.content
            for accepted, kind in statuses:
                if kind == "sent":
                    self.sent_told.add(accepted["wamid"])
            told = [
                message_id_from_callback_data(a["biz_opaque_callback_data"])
                for a, kind in statuses
                if kind == "sent"
            ]
            # Cancelled while in flight or not, what Meta took is sent (or later) now.
            unsettled = Message.objects.filter(pk__in=told).exclude(wamid__isnull=False)
            assert not unsettled.exists(), list(unsettled.values("pk", "status"))
            assert not Message.objects.filter(pk__in=told, status=MessageStatus.SENDING).exists()

        def status_item(self, accepted: dict[str, Any], kind: str) -> dict[str, Any]:
            timestamp = int(accepted["received_at"]) + OFFSETS[kind]
            to = accepted["to"]
            item = meta.status(
                accepted["wamid"],
                kind,
                timestamp,
                recipient_id=(to or "").lstrip("+"),
                callback_data=accepted["biz_opaque_callback_data"],
            )
            if not to:
                del item["recipient_id"]
                body = accepted["request_body"]
                item["recipient_user_id"] = body.get("recipient")
            return item

        # --- steps --------------------------------------------------------------------------

        @initialize(data=st.data())
        def first_send(self, data: st.DataObject) -> None:
            self.start(data)

        @precondition(lambda self: len(set(self.root.values())) < MAX_FIRST_SENDS)
        @rule(data=st.data())
        def start(self, data: st.DataObject) -> None:
            picks = data.draw(st.lists(st.integers(0, len(RECIPIENTS) - 1), min_size=3, max_size=8))
            body = send_bulk(tenant, [recipient_body(RECIPIENTS[i], i) for i in picks])
            send_id = body["bulk_send_id"]
            self.sends.append(send_id)
            self.root[send_id] = send_id

        @rule(refusing=st.sets(st.sampled_from(PHONES), max_size=3))
        def meta_refuses(self, refusing: set[str]) -> None:
            """From now on Meta refuses these recipients (131026), and takes the others: a
            recipient may fail in one send of a chain and be reached by its retry."""
            errors = {number.lstrip("+"): 131026 for number in refusing}
            sandbox.control("config", {"recipient_errors": errors})

        @rule(data=st.data(), batches=st.integers(1, 5))
        def drain(self, data: st.DataObject, batches: int) -> None:
            drain_cut.batches_left = batches
            try:
                report = bulk_send_drain(uuid.UUID(self.pick_unfinished(data)))
            finally:
                drain_cut.batches_left = None
            event(f"drain: {report.batches} batches")

        @rule(data=st.data())
        def drain_until_idle(self, data: st.DataObject) -> None:
            """The workers catch up with a send: drains until one finds nothing due."""
            self.drain_idle(self.pick_unfinished(data))

        def drain_idle(self, send_id: str) -> None:
            for _ in range(10):
                if not bulk_send_drain(uuid.UUID(send_id)).batches:
                    return

        @rule(data=st.data())
        def cancel(self, data: st.DataObject) -> None:
            self.control_step(self.pick_unfinished(data), "cancel")

        @rule(data=st.data(), action=st.sampled_from(["pause", "resume"]))
        def pause_or_resume(self, data: st.DataObject, action: str) -> None:
            self.control_step(self.pick(data), action)

        def control_step(self, send_id: str, action: str) -> None:
            response = self.control(send_id, action)
            assert response.status_code in (200, 409), response.content
            event(f"{action}: {response.status_code}")
            if response.status_code == 409:
                assert "error" in response.json()
                return
            arrived = self.arrived()
            send = BulkSend.objects.get(pk=send_id)
            if action == "cancel":
                assert send.status == BulkSendStatus.CANCELLED
                self.cancelled_at.setdefault(send_id, arrived)
            elif action == "pause":
                assert send.paused_at is not None
                self.paused_at.setdefault(send_id, arrived)
            elif send_id in self.paused_at:
                self.pauses.append((send_id, self.paused_at.pop(send_id), arrived))

        @rule(
            data=st.data(),
            scope=st.sampled_from(["failed", "pending", "all_unsent"]),
            error_codes=RETRY_CODES,
        )
        def retry(self, data: st.DataObject, scope: str, error_codes: list[str] | None) -> None:
            source = self.pick_finished(data)
            body: dict[str, Any] = {"scope": scope}
            if error_codes is not None:
                body["error_codes"] = error_codes
            if len(self.sends) >= MAX_SENDS:
                return
            response = self.control(source, "retry", body)
            if scope == "pending" and error_codes is not None:
                assert response.status_code == 400, response.content
                return
            # 202: a new retry; 200: its unfinished retry, answered again; 409: nothing to take.
            assert response.status_code in (200, 202, 409), response.content
            event(f"retry {scope}: {response.status_code}")
            if response.status_code == 409:
                return
            retry_id = response.json()["bulk_send_id"]
            assert str(BulkSend.objects.get(pk=retry_id).retry_of_id) == source
            assert (retry_id in self.root) == (response.status_code == 200)
            if response.status_code == 202:
                self.sends.append(retry_id)
                self.root[retry_id] = self.root[source]
                # Its wake-up may find a worker at once.
                if data.draw(st.booleans(), label="drained at once"):
                    self.drain_idle(retry_id)

        @rule(data=st.data(), size=st.integers(1, 3))
        def worker_dies(self, data: st.DataObject, size: int) -> None:
            """A drain claims a batch, hands part of it to Meta, and dies: its messages stay
            `sending` under their leases, with no liveness mark left."""
            send_id = uuid.UUID(self.pick_unfinished(data))
            if not bulk_send_start(send_id):
                return
            claimed = messages_claim(
                bulk_send_id=send_id, limit=size, lease_seconds=120, now=timezone.now()
            )
            handed = data.draw(st.integers(0, len(claimed)), label="handed over")
            event(f"worker dies: {len(claimed)} claimed, {handed} handed over")
            if not handed:
                return
            send = BulkSend.objects.select_related(
                "template", "phone_number__business_account"
            ).get(pk=send_id)
            shape = template_shape(send.template)
            number = send.phone_number
            url = (
                f"{settings.META_GRAPH_URL}/{settings.META_GRAPH_VERSION}/"
                f"{number.phone_number_id}/messages"
            )
            for message in claimed[:handed]:
                request = message_request(
                    message, shape, number.phone_number_id, number.business_account.access_token
                )
                response = requests.post(
                    url,
                    data=request.body,  # type: ignore[union-attr]
                    headers={
                        "Authorization": f"Bearer {number.business_account.access_token}",
                        "Content-Type": "application/json",
                    },
                    timeout=30,
                )
                # Taken (Meta's webhooks will say so) or refused (it was not taken).
                assert response.status_code in (200, 400), response.text

        @precondition(lambda self: bool(self.arrivals))
        @rule(data=st.data())
        def webhooks(self, data: st.DataObject) -> None:
            """Meta's statuses of messages it took, in any order, some twice, some never."""
            self.arrived()
            choices: list[tuple[dict[str, Any], str]] = []
            for accepted in self.arrivals:
                wamid = accepted["wamid"]
                if wamid not in self.fates:
                    self.fates[wamid] = data.draw(FATES, label="fate")
                choices += [(accepted, kind) for kind in ("sent", *self.fates[wamid])]
            picked = data.draw(st.lists(st.sampled_from(choices), min_size=1, max_size=6))
            self.post_statuses(picked)

        @rule(hour_later=st.booleans())
        def reaper(self, hour_later: bool) -> None:
            now = timezone.now()
            if hour_later:
                # Meta's `sent` of what it took came within the hour.
                self.arrived()
                late = [(a, "sent") for a in self.arrivals if a["wamid"] not in self.sent_told]
                if late:
                    self.post_statuses(late)
                now += timedelta(seconds=settings.DELIVERY_UNKNOWN_AFTER_SECONDS * 2)
            bulk_sends_reap(now=now)

        # --- invariants ---------------------------------------------------------------------

        @invariant()
        def counters_equal_a_recount(self) -> None:
            for send_id in self.sends:
                assert_counters_exact(BulkSend.objects.get(pk=send_id))

        @rule(data=st.data())
        def convert(self, data: st.DataObject) -> None:
            """The cancel's conversion task, one small batch of a cancelled send (cut short)."""
            if self.cancelled_at:
                send_id = data.draw(st.sampled_from(sorted(self.cancelled_at)))
                cancelled_messages_convert(uuid.UUID(send_id), batch=3, max_batches=1)

        @invariant()
        def cancelled_sends_stay_cancelled_with_nothing_pending(self) -> None:
            # Pending to a client: only what a worker holds (a `pending` row is cancelled in a
            # cancelled send until its conversion turns it).
            for send_id in self.cancelled_at:
                send = BulkSend.objects.get(pk=send_id)
                assert send.status == BulkSendStatus.CANCELLED
                statuses = Message.objects.filter(bulk_send_id=uuid.UUID(send_id)).values_list(
                    "status", flat=True
                )
                shown = [public_status_of(status, send_cancelled=True) for status in statuses]
                assert shown.count("pending") == list(statuses).count(MessageStatus.SENDING)

        @invariant()
        def meta_got_each_recipient_of_a_chain_once_and_nothing_after_a_stop(self) -> None:
            record = received(sandbox)
            assert not record.duplicates, record.duplicates
            self.arrivals = record.messages
            ids = [
                int(message_id_from_callback_data(item["biz_opaque_callback_data"]) or 0)
                for item in self.arrivals
            ]
            rows = {
                row["pk"]: row
                for row in Message.objects.filter(pk__in=ids).values(
                    "pk", "bulk_send_id", "recipient_phone", "recipient_user_id"
                )
            }
            reached: dict[tuple[str, str | None], int] = {}
            for index, message_id in enumerate(ids):
                row = rows[message_id]
                send_id = str(row["bulk_send_id"])
                recipient = row["recipient_phone"] or row["recipient_user_id"]
                key = (self.root[send_id], recipient)
                assert key not in reached, (
                    f"{recipient} got the message twice in the chain of {key[0]}: "
                    f"arrivals {reached[key]} and {index}"
                )
                reached[key] = index
                if send_id in self.cancelled_at:
                    assert index < self.cancelled_at[send_id], (send_id, index, "cancelled")
                if send_id in self.paused_at:
                    assert index < self.paused_at[send_id], (send_id, index, "paused")
                for paused_id, start, end in self.pauses:
                    assert not (paused_id == send_id and start <= index < end), (send_id, index)

    run_state_machine_as_test(
        SendControl,
        settings=hypothesis_settings(
            max_examples=30,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )
