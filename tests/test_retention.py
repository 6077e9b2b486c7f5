"""Tables that grow for years: webhook bodies in daily partitions created ahead, and
`manage.py retention` dropping (or archiving first) what is past the cut: whole day partitions
of bodies, finished sends with their messages; a running send is never touched."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from bulksend import retention as sends_retention
from bulksend.models import BulkSend, BulkSendStatus
from messaging.models import Message, MessageStatus
from tests import meta_payloads as meta
from tests.conftest import Tenant
from webhooks.models import WebhookEvent
from webhooks.partitions import DEFAULT_PARTITION, day_partitions, partition_name, partitions_ensure
from webhooks.tasks import ensure_webhook_partitions

pytestmark = pytest.mark.django_db


def today() -> date:
    return timezone.now().astimezone(UTC).date()


def partition_names() -> set[str]:
    return {partition.name for partition in day_partitions()}


def body_on(day: date, text: str = "{}") -> WebhookEvent:
    """A body received at noon of `day` (UTC)."""
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    return WebhookEvent.objects.create(body=text, received_at=noon)


def partition_of(event: WebhookEvent) -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT tableoid::regclass::text FROM {WebhookEvent._meta.db_table} WHERE id = %s",
            [event.pk],
        )
        return str(cursor.fetchone()[0])


def retention(*args: str) -> str:
    out = StringIO()
    call_command("retention", *args, stdout=out)
    return out.getvalue()


def finished_send(tenant: Tenant, *, days_ago: int, messages: int = 3) -> BulkSend:
    bulk_send, _ = meta.send_with_messages(tenant.number, tenant.template, messages)
    BulkSend.objects.filter(pk=bulk_send.pk).update(
        status=BulkSendStatus.COMPLETED, completed_at=timezone.now() - timedelta(days=days_ago)
    )
    return bulk_send


def running_send(tenant: Tenant, *, days_ago: int) -> BulkSend:
    bulk_send, _ = meta.send_with_messages(
        tenant.number, tenant.template, 4, status=MessageStatus.PENDING
    )
    BulkSend.objects.filter(pk=bulk_send.pk).update(
        status=BulkSendStatus.PROCESSING, created_at=timezone.now() - timedelta(days=days_ago)
    )
    return bulk_send


def counters(bulk_send: BulkSend) -> dict[str, Any]:
    return BulkSend.objects.filter(pk=bulk_send.pk).values().get()


# --- partitions --------------------------------------------------------------------------------


def test_the_days_ahead_get_their_partitions_once() -> None:
    first = today() + timedelta(days=30)

    created = partitions_ensure(days_ahead=2, today=first)

    assert created == [partition_name(first + timedelta(days=n)) for n in range(3)]
    assert partitions_ensure(days_ahead=2, today=first) == []


def test_beat_creates_the_partitions_of_the_configured_days_ahead(
    settings: Any,
) -> None:
    settings.WEBHOOK_PARTITION_DAYS_AHEAD = 10
    days = {partition_name(today() + timedelta(days=n)) for n in range(11)}
    missing = days - partition_names()

    assert ensure_webhook_partitions() == len(missing) > 0
    assert days <= partition_names()


def test_a_body_lands_in_its_days_partition_or_else_the_default_one() -> None:
    partitions_ensure(days_ahead=0, today=today() - timedelta(days=3))

    assert partition_of(body_on(today() - timedelta(days=3))) == partition_name(
        today() - timedelta(days=3)
    )
    assert partition_of(body_on(today() - timedelta(days=40))) == DEFAULT_PARTITION


# --- webhook bodies ----------------------------------------------------------------------------


def test_retention_drops_only_the_partitions_wholly_older_than_the_cut() -> None:
    old_days = [today() - timedelta(days=n) for n in (120, 95, 91)]
    kept_days = [today() - timedelta(days=89), today()]
    for day in old_days + kept_days:
        partitions_ensure(days_ahead=0, today=day)
    old = [body_on(day) for day in old_days for _ in range(2)]
    kept = [body_on(day) for day in kept_days]
    stray_old, stray_kept = body_on(today() - timedelta(days=200)), body_on(today() - timedelta(30))

    out = retention("--older-than", "90d")

    assert not {partition_name(day) for day in old_days} & partition_names()
    assert {partition_name(day) for day in kept_days} <= partition_names()
    remaining = set(WebhookEvent.objects.values_list("pk", flat=True))
    assert remaining == {event.pk for event in kept} | {stray_kept.pk}
    assert not {event.pk for event in old} & remaining
    assert stray_old.pk not in remaining
    assert "Retired 7 webhook bodies (3 day partitions" in out


def test_the_archive_holds_every_row_of_a_dropped_partition(tmp_path: Path) -> None:
    day = today() - timedelta(days=100)
    partitions_ensure(days_ahead=0, today=day)
    text = '{{"n": {n}, "text": "a, \\"quoted\\"\\nline"}}'
    bodies = [body_on(day, text=text.format(n=n)) for n in range(3)]

    retention("--older-than", "90d", "--archive", str(tmp_path))

    with (tmp_path / f"{partition_name(day)}.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(int(row["id"]), row["body"]) for row in rows] == [(b.pk, b.body) for b in bodies]
    assert not WebhookEvent.objects.filter(pk__in=[b.pk for b in bodies]).exists()


def test_a_dry_run_changes_nothing(tenant: Tenant, tmp_path: Path) -> None:
    day = today() - timedelta(days=100)
    partitions_ensure(days_ahead=0, today=day)
    body = body_on(day)
    stray = body_on(today() - timedelta(days=300))
    old = finished_send(tenant, days_ago=120)
    partitions = partition_names()

    out = retention("--older-than", "90d", "--dry-run", "--archive", str(tmp_path))

    assert "Would retire 2 webhook bodies (1 day partitions" in out
    assert "1 finished sends with 3 messages" in out
    assert partition_names() == partitions
    assert WebhookEvent.objects.filter(pk__in=[body.pk, stray.pk]).count() == 2
    assert Message.objects.filter(bulk_send=old).count() == 3
    assert list(tmp_path.iterdir()) == []


def test_an_age_that_is_not_days_or_hours_is_refused() -> None:
    with pytest.raises(CommandError, match="90d or 36h"):
        retention("--older-than", "3 months")


# --- sends and their messages ------------------------------------------------------------------


def test_finished_sends_past_the_cut_go_with_their_messages_running_ones_never(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sends_retention, "MESSAGES_SLICE", 2)  # several slices per send
    old = finished_send(tenant, days_ago=120, messages=5)
    recent = finished_send(tenant, days_ago=10)
    running = running_send(tenant, days_ago=200)
    running_before = counters(running)

    out = retention("--older-than", "90d")

    assert not BulkSend.objects.filter(pk=old.pk).exists()
    assert not Message.objects.filter(bulk_send_id=old.pk).exists()
    assert Message.objects.filter(bulk_send=recent).count() == 3
    assert Message.objects.filter(bulk_send=running).count() == 4
    assert counters(running) == running_before
    assert "1 finished sends with 5 messages" in out


def test_a_send_archived_before_it_goes(tenant: Tenant, tmp_path: Path) -> None:
    old = finished_send(tenant, days_ago=100)
    messages = list(Message.objects.filter(bulk_send=old).order_by("id"))

    retention("--older-than", "90d", "--archive", str(tmp_path))

    with (tmp_path / f"bulk_send_{old.pk}.messages.csv").open(newline="") as file:
        rows = list(csv.DictReader(file))
    assert [(int(row["id"]), row["wamid"]) for row in rows] == [(m.pk, m.wamid) for m in messages]
    with (tmp_path / f"bulk_send_{old.pk}.csv").open(newline="") as file:
        [send_row] = list(csv.DictReader(file))
    assert send_row["id"] == str(old.pk)
    assert not BulkSend.objects.filter(pk=old.pk).exists()


def test_a_send_that_runs_again_between_listing_and_deleting_is_kept(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = finished_send(tenant, days_ago=100)
    listed = sends_retention.finished_sends_before

    def listed_then_resumed(cutoff: datetime) -> list[Any]:
        ids = listed(cutoff)
        BulkSend.objects.filter(pk=old.pk).update(
            status=BulkSendStatus.PROCESSING, completed_at=None
        )
        return ids

    monkeypatch.setattr(sends_retention, "finished_sends_before", listed_then_resumed)

    out = retention("--older-than", "90d")

    assert Message.objects.filter(bulk_send=old).count() == 3
    assert "0 finished sends with 0 messages" in out
