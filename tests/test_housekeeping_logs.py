"""Beat's housekeeping logs at DEBUG when it found nothing to do, at INFO with what it did."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from bulksend.models import BulkSend, BulkSendStatus
from bulksend.reaper import bulk_sends_reap
from messaging.models import MessageStatus
from mindo.logging import RoutineTaskRunsFilter
from tests import factories
from tests.conftest import Tenant
from tests.delivery_support import delivery_redis_fixture  # noqa: F401  (fixtures)
from webhooks.models import WebhookEvent
from webhooks.tasks import apply_pending_webhooks, purge_webhook_events

EMPTY_BODY = '{"object": "whatsapp_business_account", "entry": []}'


def lines(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def stored(days_ago: float = 0) -> WebhookEvent:
    event = WebhookEvent.objects.create(body=EMPTY_BODY, object_type="whatsapp_business_account")
    WebhookEvent.objects.filter(pk=event.pk).update(
        received_at=timezone.now() - timedelta(days=days_ago)
    )
    return event


@pytest.mark.usefixtures("delivery_redis")
def test_a_reaper_run_with_nothing_to_do_logs_at_debug(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bulksend.reaper")

    assert bulk_sends_reap(now=timezone.now()) == []

    assert lines(caplog, "bulksend.reaper") == [
        (
            logging.DEBUG,
            "Reaper: 0 sends with messages back, 0 messages cancelled, 0 sends finished, "
            "0 sends to wake",
        )
    ]


@pytest.mark.usefixtures("delivery_redis")
def test_a_reaper_run_that_finishes_and_wakes_sends_logs_what_it_did_at_info(
    tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    finished = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    factories.make_message(finished, status=MessageStatus.SENT)
    waiting = factories.make_bulk_send(
        tenant.number, tenant.template, status=BulkSendStatus.PROCESSING
    )
    factories.make_message(waiting)
    caplog.set_level(logging.DEBUG, logger="bulksend.reaper")

    assert bulk_sends_reap(now=timezone.now()) == [str(waiting.pk)]

    assert lines(caplog, "bulksend.reaper") == [
        (
            logging.INFO,
            "Reaper: 0 sends with messages back, 0 messages cancelled, 1 sends finished, "
            "1 sends to wake",
        )
    ]
    assert BulkSend.objects.get(pk=finished.pk).status == BulkSendStatus.COMPLETED


def test_a_purge_with_nothing_old_logs_at_debug(db: None, caplog: pytest.LogCaptureFixture) -> None:
    stored(days_ago=0)
    caplog.set_level(logging.DEBUG, logger="webhooks.tasks")

    assert purge_webhook_events() == 0

    assert [level for level, _ in lines(caplog, "webhooks.tasks")] == [logging.DEBUG]


def test_a_purge_that_deleted_bodies_says_how_many_at_info(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    stored(days_ago=settings.WEBHOOK_EVENT_RETENTION_DAYS + 1)
    stored(days_ago=settings.WEBHOOK_EVENT_RETENTION_DAYS + 2)
    caplog.set_level(logging.DEBUG, logger="webhooks.tasks")

    assert purge_webhook_events() == 2

    [(level, message)] = lines(caplog, "webhooks.tasks")
    assert level == logging.INFO
    assert message.startswith("Purged 2 webhook bodies")
    assert WebhookEvent.objects.count() == 0


def test_the_backstop_logs_at_debug_when_every_body_was_applied(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="webhooks.tasks")

    assert apply_pending_webhooks() == 0

    assert lines(caplog, "webhooks.tasks") == [
        (logging.DEBUG, "Applied 0 webhook bodies left unapplied")
    ]


def test_the_backstop_says_how_many_bodies_it_applied_at_info(
    db: None, caplog: pytest.LogCaptureFixture
) -> None:
    event = stored()
    caplog.set_level(logging.DEBUG, logger="webhooks.tasks")

    assert apply_pending_webhooks() == 1

    assert lines(caplog, "webhooks.tasks") == [
        (logging.INFO, "Applied 1 webhook bodies left unapplied")
    ]
    event.refresh_from_db()
    assert event.processed_at is not None


# --- Celery's own line for each run --------------------------------------------------------------

ROUTINE = "webhooks.apply_pending"
SUCCEEDED = "Task %(name)s[%(id)s] succeeded in %(runtime)ss: %(return_value)s"


def celery_record(logger: str, message: str, args: object) -> logging.LogRecord:
    record = logging.LogRecord(logger, logging.INFO, __file__, 1, message, None, None)
    record.args = args  # type: ignore[assignment]  # a dict, as Celery passes it
    return record


@pytest.fixture
def celery_loggers_at_info() -> object:
    loggers = [logging.getLogger(name) for name in ("celery.app.trace", "celery.beat")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.INFO)
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)


@pytest.mark.usefixtures("celery_loggers_at_info")
def test_celerys_lines_for_each_routine_run_are_debug_lines() -> None:
    routine = RoutineTaskRunsFilter([ROUTINE])
    success = {"name": ROUTINE, "id": "1", "runtime": 0.01, "return_value": 0}
    due = ("apply-webhook-events", ROUTINE)

    assert not routine.filter(celery_record("celery.app.trace", SUCCEEDED, success))
    assert not routine.filter(
        celery_record("celery.beat", "Scheduler: Sending due task %s (%s)", due)
    )
    drain = {**success, "name": "bulksend.drain"}
    assert routine.filter(celery_record("celery.app.trace", SUCCEEDED, drain))


def test_celerys_lines_for_routine_runs_show_when_celery_logs_at_debug(
    celery_loggers_at_info: None,
) -> None:
    logging.getLogger("celery.app.trace").setLevel(logging.DEBUG)
    record = celery_record(
        "celery.app.trace",
        SUCCEEDED,
        {"name": ROUTINE, "id": "1", "runtime": 0.01, "return_value": 0},
    )

    assert RoutineTaskRunsFilter([ROUTINE]).filter(record)
    assert record.levelname == "DEBUG"


def test_the_routine_tasks_are_the_ones_beat_runs() -> None:
    [routine] = [
        spec
        for spec in settings.LOGGING["filters"].values()
        if "RoutineTaskRunsFilter" in spec["()"]
    ]
    assert set(routine["tasks"]) == {
        "bulksend.reap",
        "callbacks.deliver",
        "webhooks.apply_pending",
        "webhooks.purge_events",
        "webhooks.ensure_partitions",
        "mindo.purge_idempotency_keys",
    }
