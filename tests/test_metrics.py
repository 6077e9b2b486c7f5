"""GET /metrics: Prometheus' text exposition of what the service did and what waits."""

from __future__ import annotations

import json
import re
import socket
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client, override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from bulksend.metrics import quota_window_use
from messaging.models import Message, MessageStatus
from tests import meta_payloads as meta
from tests.conftest import Tenant, make_tenant
from tests.delivery_support import (
    UNDELIVERABLE,
    ScriptedMeta,
    delivery_redis_fixture,  # noqa: F401  (fixtures)
    drain_to_completion,
    process_env,
    scripted_meta_fixture,  # noqa: F401
    send_bulk,
    welcome_recipients,
)
from tests.process_support import run_python
from webhooks.models import WebhookEvent

METRIC_NAMES = [
    "mindo_bulk_sends_accepted_total",
    "mindo_bulk_send_recipients_accepted_total",
    "mindo_messages_settled_total",
    "mindo_graph_request_seconds",
    "mindo_limiter_wait_seconds",
    "mindo_limiter_permits_forfeited_total",
    "mindo_limiter_permits_paid_late_total",
    "mindo_webhook_events_stored_total",
    "mindo_webhook_events_applied_total",
    "mindo_webhook_apply_lag_seconds",
    "mindo_pending_messages",
    "mindo_quota_limit",
    "mindo_quota_used",
    "mindo_quota_room",
    "mindo_metrics_database_up",
]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: Client, **headers: str) -> Samples:
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def parse(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_it_exposes_every_metric_by_name(client: Client, db: None) -> None:
    text = client.get("/metrics").content.decode()

    for name in METRIC_NAMES:
        assert f"# TYPE {name} " in text, name


def test_it_answers_a_scrape_by_ip_address(db: None) -> None:
    # Prometheus reaches a process by its IP address, which DJANGO_ALLOWED_HOSTS does not list.
    response = Client(HTTP_HOST="10.11.12.13:8000").get("/metrics")

    assert response.status_code == 200
    assert b"mindo_bulk_sends_accepted_total" in response.content


def test_accepting_a_send_counts_the_send_and_its_unique_recipients(
    client: Client, tenant: Tenant
) -> None:
    before = scrape(client)

    recipients = welcome_recipients(3)
    send_bulk(tenant, [*recipients, recipients[0]])  # a duplicate goes out once

    after = scrape(client)
    for name, delta in [
        ("mindo_bulk_sends_accepted_total", 1),
        ("mindo_bulk_send_recipients_accepted_total", 3),
    ]:
        assert value(after, name) - value(before, name) == delta, name


def test_pending_messages_per_number_are_the_active_sends_pending_counts(
    client: Client, tenant: Tenant
) -> None:
    idle = make_tenant("Idle")
    send_bulk(tenant, welcome_recipients(3))
    send_bulk(tenant, welcome_recipients(2, start=10))

    samples = scrape(client)

    pending = {
        dict(labels)["phone_number_id"]: count
        for (name, labels), count in samples.items()
        if name == "mindo_pending_messages"
    }
    assert pending == {tenant.number.phone_number_id: 5, idle.number.phone_number_id: 0}


def test_quota_gauges_show_each_portfolios_window(client: Client, tenant: Tenant) -> None:
    quota_window_use.cache_clear()  # figures another test's scrape computed this minute
    accepted = send_bulk(tenant, welcome_recipients(3))
    sent = Message.objects.filter(bulk_send_id=accepted["bulk_send_id"]).order_by("id")[:2]
    Message.objects.filter(pk__in=[m.pk for m in sent]).update(
        status=MessageStatus.SENT, sent_at=timezone.now()
    )

    samples = scrape(client)

    waba = tenant.account.waba_id
    assert value(samples, "mindo_quota_limit", waba_id=waba) == 1000
    assert value(samples, "mindo_quota_used", waba_id=waba) == 2
    assert value(samples, "mindo_quota_room", waba_id=waba) == 998


def test_the_webhook_lag_is_the_age_of_the_oldest_body_not_applied(
    client: Client, db: None
) -> None:
    assert value(scrape(client), "mindo_webhook_apply_lag_seconds") == 0
    WebhookEvent.objects.create(body="{}", received_at=timezone.now() - timedelta(minutes=5))
    WebhookEvent.objects.create(body="{}", received_at=timezone.now() - timedelta(minutes=1))

    assert value(scrape(client), "mindo_webhook_apply_lag_seconds") >= 300


def test_a_webhook_body_counts_as_stored_then_applied(client: Client, tenant: Tenant) -> None:
    before = scrape(client)

    response = meta.post(client, meta.statuses_notification())

    assert response.status_code == 200
    after = scrape(client)
    for name in ["mindo_webhook_events_stored_total", "mindo_webhook_events_applied_total"]:
        assert value(after, name) - value(before, name) == 1, name


@override_settings(METRICS_TOKEN="s3cret")
def test_with_a_token_only_its_bearer_may_scrape(client: Client, db: None) -> None:
    for header in [None, "Bearer wrong", "s3cret"]:
        headers = {} if header is None else {"Authorization": header}
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, header
        assert response.json() == {"error": "Bearer token required (METRICS_TOKEN)"}

    assert "mindo_bulk_sends_accepted_total" in {
        name for name, _ in scrape(client, Authorization="Bearer s3cret")
    }


@pytest.mark.django_db(transaction=True)
def test_a_drain_counts_outcomes_by_metas_error_code_and_times_its_requests(
    client: Client, tenant: Tenant, scripted_meta: ScriptedMeta
) -> None:
    before = scrape(client)
    scripted_meta.answer = lambda index, body: UNDELIVERABLE if index == 0 else None
    accepted = send_bulk(tenant, welcome_recipients(4))

    drain_to_completion(accepted["bulk_send_id"])

    after = scrape(client)
    for name, labels, delta in [
        ("mindo_messages_settled_total", {"outcome": "sent", "error_code": ""}, 3),
        ("mindo_messages_settled_total", {"outcome": "failed", "error_code": "131026"}, 1),
        ("mindo_graph_request_seconds_count", {}, 4),
        ("mindo_limiter_wait_seconds_count", {}, 4),
    ]:
        assert value(after, name, **labels) - value(before, name, **labels) == delta, name


# Run with `python -c` in processes of their own, as gunicorn's workers and Celery's children are.
ACCEPT_IN_A_PROCESS = """
import sys, django
django.setup()
from mindo import metrics
metrics.send_accepted(recipients=int(sys.argv[1]))
"""
SCRAPE_IN_A_PROCESS = """
import sys, django
django.setup()
from mindo.metrics import metrics_exposition
sys.stdout.write(metrics_exposition().decode())
"""


def test_in_multiprocess_mode_a_scrape_adds_up_every_processs_counts(
    db: None, tmp_path: Path
) -> None:
    env = {**process_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    run_python(ACCEPT_IN_A_PROCESS, "3", env=env)
    run_python(ACCEPT_IN_A_PROCESS, "4", env=env)
    exposition = run_python(SCRAPE_IN_A_PROCESS, env=env).stdout

    assert list(tmp_path.glob("counter_*.db")), "no process wrote its samples to the directory"
    samples = parse(exposition)
    assert value(samples, "mindo_bulk_sends_accepted_total") == 2
    assert value(samples, "mindo_bulk_send_recipients_accepted_total") == 7
    assert value(samples, "mindo_metrics_database_up") == 1


def test_in_multiprocess_mode_the_files_are_named_by_host_and_process(
    db: None, tmp_path: Path
) -> None:
    # Containers sharing the directory (web and worker) each have their own process 7.
    env = {**process_env(), "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}

    run_python(ACCEPT_IN_A_PROCESS, "3", env=env)

    host = socket.gethostname().replace("_", "-")
    names = [path.name for path in tmp_path.glob("*.db")]
    assert names
    assert [
        name for name in names if not re.fullmatch(rf"[a-z]+_{re.escape(host)}-\d+\.db", name)
    ] == []


def test_the_grafana_dashboard_charts_every_metric() -> None:
    path = Path(settings.BASE_DIR) / "ops" / "grafana" / "mindo-dashboard.json"
    dashboard = json.loads(path.read_text())

    queries = " ".join(
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    )
    assert dashboard["schemaVersion"] >= 39
    assert [name for name in METRIC_NAMES if name not in queries] == []
