"""Every error code of Meta's table (meta.error_codes), answered by the sandbox through the
drain: the message and its send end in the state the code's class says."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bulksend.drain import bulk_send_drain
from bulksend.lifecycle import bulk_send_resume
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import MarketingCooldown, Message, MessageStatus
from meta.error_codes import ERROR_CODES, ErrorClass
from meta.graph_errors import error_class_for
from meta_sandbox import SandboxThread
from meta_sandbox.documented_errors import DOCUMENTED
from tests.conftest import Tenant, clock_frozen
from tests.delivery_support import (
    assert_counters_exact,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    received,
    sandbox_fixture,  # noqa: F401
    send_bulk,
    welcome_recipients,
)

pytestmark = pytest.mark.django_db(transaction=True)

RECIPIENT = "5491150000000"  # welcome_recipients(1)'s phone, as Meta's `to` carries it


def test_the_sandbox_answers_every_code_of_the_table() -> None:
    assert {str(code) for code in DOCUMENTED} == set(ERROR_CODES)


def test_the_class_sets_are_derived_from_the_one_table() -> None:
    from meta import error_codes

    for error_class in ErrorClass:
        derived = getattr(error_codes, f"{error_class.name}_CODES")
        assert derived == {c for c, e in ERROR_CODES.items() if e.error_class is error_class}
    assert {"131048", "132015", "132016"} == error_codes.PAUSE_CODES


def test_a_code_not_in_the_table_is_classed_by_its_http_status() -> None:
    assert error_class_for("999999", 400) == ErrorClass.FAIL
    assert error_class_for("999999", 503) == ErrorClass.RETRY
    assert error_class_for("250", 403) == ErrorClass.HALT  # the API Permission range


@pytest.mark.parametrize("code", sorted(ERROR_CODES, key=int))
def test_each_code_ends_the_message_and_its_send_as_its_class_says(
    tenant: Tenant, sandbox: SandboxThread, code: str
) -> None:
    sandbox.control("config", {"recipient_errors": {RECIPIENT: int(code)}})
    send_id = send_bulk(tenant, welcome_recipients(1))["bulk_send_id"]
    expected = ERROR_CODES[code].error_class
    if DOCUMENTED[int(code)][0] == 401:
        expected = ErrorClass.HALT  # a 401 is a token Meta does not take, whatever the code

    # No time passes on this clock during the drain: no backoff runs out, so nothing is retried
    # before the test looks.
    with clock_frozen() as clock:
        started = clock.current
        report = bulk_send_drain(send_id)

    message = Message.objects.get(bulk_send_id=send_id)
    bulk_send = BulkSend.objects.get(pk=send_id)
    assert sandbox.control("stats")["rejected_by_code"] == {code: 1}
    if expected == ErrorClass.FAIL:
        assert (message.status, message.error_code) == (MessageStatus.FAILED, code)
        assert bulk_send.status == BulkSendStatus.FAILED
        assert bulk_send.completed_at is not None
    elif expected == ErrorClass.RETRY:
        assert (message.status, message.attempts, message.error_code) == ("pending", 1, None)
        assert message.next_attempt_at is not None
        assert message.next_attempt_at <= started + timedelta(minutes=5)
        assert bulk_send.status == BulkSendStatus.PROCESSING
    elif expected == ErrorClass.DEFER:
        assert (message.status, message.error_code) == (MessageStatus.PENDING, None)
        cooldown = MarketingCooldown.objects.get(phone=f"+{RECIPIENT}")
        assert cooldown.strikes == 1
        assert message.next_attempt_at == cooldown.until
        assert cooldown.until >= started + timedelta(hours=4)
        assert bulk_send.status == BulkSendStatus.PROCESSING
    else:  # HALT and PAUSE: the send stops with the reason, the message is kept untried
        assert report.halted == code
        assert (message.status, message.attempts) == (MessageStatus.PENDING, 0)
        assert bulk_send.halted_at is not None
        assert bulk_send.status == BulkSendStatus.FAILED
        assert f"Meta error {code}" in bulk_send.status_reason
    assert_counters_exact(bulk_send)


@pytest.mark.parametrize("code", ["131048", "132015", "132016"])
def test_a_paused_send_resumes_once_an_operator_has_looked_and_sends_what_was_left(
    tenant: Tenant, sandbox: SandboxThread, code: str
) -> None:
    sandbox.control("config", {"recipient_errors": {RECIPIENT: int(code)}})
    send_id = send_bulk(tenant, welcome_recipients(3))["bulk_send_id"]

    report = bulk_send_drain(send_id)

    assert report.halted == code
    paused = BulkSend.objects.get(pk=send_id)
    assert paused.status_reason.startswith(f"Halted: Meta error {code}: (#{code})")
    sandbox.control("config", {"recipient_errors": {}})
    assert bulk_send_resume(bulk_send=paused)
    done = drain_to_completion(send_id)
    assert done.status == BulkSendStatus.COMPLETED
    assert {m.status for m in Message.objects.filter(bulk_send_id=send_id)} == {"sent"}
    assert received(sandbox).duplicates == []
    assert assert_counters_exact(done)["sent_count"] == 3
