"""Over any order of Meta's template, number and account events and of an operator's resumes, a
send never runs while Meta refuses its template or restricts its account, every halt says why,
no message is lost, and the counters equal a recount."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bulksend.lifecycle import bulk_send_resume
from bulksend.models import ACTIVE_STATUSES, BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from templates_app.models import REFUSED_TEMPLATE_STATUSES
from tests import factories
from tests import meta_payloads as meta
from tests.conftest import Tenant
from tests.meta_payloads import fresh
from webhooks.processing import webhook_process

TEMPLATE_EVENTS = ("PAUSED", "DISABLED", "APPROVED", "REINSTATED")
ACCOUNT_EVENTS: dict[str, dict[str, Any]] = {
    "restrict": {
        "event": "ACCOUNT_RESTRICTION",
        "restriction_info": [{"restriction_type": "RESTRICTED_BIZ_INITIATED_MESSAGING"}],
    },
    "disable": {"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "DISABLE"}},
    "reinstate": {"event": "DISABLED_UPDATE", "ban_info": {"waba_ban_state": "REINSTATE"}},
    "reconnect": {"event": "ACCOUNT_RECONNECTED"},
}
# What Meta posts, or what the operator does.
STEPS = st.one_of(
    st.tuples(st.just("template"), st.sampled_from(TEMPLATE_EVENTS)),
    st.tuples(st.just("account"), st.sampled_from(sorted(ACCOUNT_EVENTS))),
    st.tuples(st.just("number"), st.sampled_from(("FLAGGED", "UNFLAGGED", "THROUGHPUT_UPGRADE"))),
    st.tuples(st.just("resume"), st.just("")),
)


@contextmanager
def rolled_back() -> Iterator[None]:
    """Each example runs in a transaction of its own and leaves nothing for the next."""
    with transaction.atomic():
        yield
        transaction.set_rollback(True)


def change_of(kind: str, what: str) -> dict[str, Any]:
    if kind == "template":
        return meta.template_status_change(what, name="welcome_message", language="es")
    if kind == "account":
        return {"field": "account_update", "value": ACCOUNT_EVENTS[what]}
    return meta.quality_change(what, current_limit=None, old_limit=None)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(STEPS, min_size=1, max_size=12), sent=st.integers(0, 2))
def test_no_order_of_events_lets_a_send_run_while_meta_refuses_it(
    tenant: Tenant, steps: list[tuple[str, str]], sent: int
) -> None:
    with rolled_back():
        bulk_send = factories.make_bulk_send(
            tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
        )
        for _ in range(sent):
            factories.make_message(bulk_send, status=MessageStatus.SENT, wamid=meta.new_wamid())
        for _ in range(3):
            factories.make_message(bulk_send)
        for moment, (kind, what) in enumerate(steps):
            if kind == "resume":
                bulk_send_resume(bulk_send=bulk_send)
            else:
                entry = meta.entry(change_of(kind, what), waba_id=tenant.account.waba_id)
                entry["time"] = meta.T0 + moment  # each a new event, not a retry
                webhook_process(meta.encode(meta.notification(entry)))

            send: BulkSend = fresh(bulk_send)
            template, account = fresh(tenant.template), fresh(tenant.account)
            running = send.status in ACTIVE_STATUSES and send.halted_at is None
            if running:
                assert template.status not in REFUSED_TEMPLATE_STATUSES
                assert not account.is_restricted
            else:
                assert send.halted_at is not None
                assert send.status_reason == send.halt_reason != ""
                assert send.status == (BulkSendStatus.PARTIAL if sent else BulkSendStatus.FAILED)
            # Halted or not, nothing untried is lost and the counters are exact.
            pending = Message.objects.filter(bulk_send=send, status=MessageStatus.PENDING)
            assert pending.count() == 3
            meta.assert_counters_exact(send)
