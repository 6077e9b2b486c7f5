"""How long cancelling a send with many pending messages takes through the API, and how long
its pending rows then take to be turned `cancelled` in the background.

    .venv/bin/python bench/cancel.py [--pending 100000] [--rounds 3] [--keep]

Target (issue 11): a send of 100,000 pending messages cancelled in under 1 s.

1. Create and migrate its own database (`mindo_bench_cancel`), provision an organization with
   `manage.py demo --json --org BenchCancel`.
2. Each round: fill two sends of `--pending` pending messages each with COPY (a send accepted and
   not started yet; exact counters), then ANALYZE.
3. Time `POST .../bulk-sends/{id}/cancel/` of the first through Django's test client in this
   process (the whole endpoint: key, lock, the send CANCELLED with its counters moved, the
   callback event, the stop mark in Redis, the wait for workers, which finds none, and the
   status body). The rows are not turned by it: checked, the answer's counters exact.
4. Then time the conversion its task runs (bulksend.conversion, in this process: batches of
   5,000 per transaction, then the recount under the send's lock) until no pending row is left.
   Printed, no target: the rows read as cancelled all along.
5. Baseline, in the same run: a bare `UPDATE messaging_message SET status = 'cancelled'` of the
   second send's pending messages plus the UPDATE of its counters, in one transaction through
   psycopg. That is what PostgreSQL alone costs; both are printed as a ratio to it.
6. Always: drop the database unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import (  # noqa: E402
    TEMPLATE,
    Demo,
    add_service_arguments,
    baseline_connection,
    bench_database_from_args,
    bench_env,
    database_drop,
    django_setup,
    print_table,
    provision,
    rows_copy,
    sig3,
)

API = "/api/v1/meta-templates"
TARGET_SECONDS = 1.0
MESSAGE_COLUMNS = "bulk_send_id, business_account_id, recipient_phone, variables, status"


def pending_rows(send_id: str, account_id: int, count: int, offset: int) -> Iterator[tuple]:
    for i in range(count):
        yield (
            send_id,
            account_id,
            f"+54911{30_000_000 + offset + i:08d}",
            orjson.dumps({"name": f"Cliente {i}", "code": f"C{i:06d}"}).decode(),
            "pending",
        )


def fill_pending(demo: Demo, count: int, offset: int) -> str:
    """One QUEUED send of `count` pending messages, filled with COPY; returns its id."""
    from django.db import transaction

    from bulksend.models import BulkSend, BulkSendStatus
    from messaging.models import Message
    from templates_app.models import MessageTemplate, PhoneNumber

    number = PhoneNumber.objects.select_related("business_account__organization").get(
        phone_number_id=demo.phone_number_id
    )
    template = MessageTemplate.objects.get(
        name=TEMPLATE, language=demo.language, business_account=number.business_account
    )
    with transaction.atomic():
        bulk_send = BulkSend.objects.create(
            organization=number.business_account.organization,
            phone_number=number,
            template=template,
            status=BulkSendStatus.QUEUED,
            submitted_recipients=count,
            unique_recipients=count,
            pending_count=count,
        )
        rows = pending_rows(str(bulk_send.pk), number.business_account_id, count, offset)
        rows_copy(Message._meta.db_table, MESSAGE_COLUMNS, rows)
    return str(bulk_send.pk)


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE messaging_message, bulksend_bulksend")


def cancel_through_the_api(demo: Demo, send_id: str) -> float:
    from django.test import Client

    client = Client(HTTP_HOST="127.0.0.1", HTTP_X_API_KEY=demo.api_key)
    started = time.perf_counter()
    response = client.post(f"{API}/bulk-sends/{send_id}/cancel/")
    seconds = time.perf_counter() - started
    body = response.json()
    if response.status_code != 200 or body["status"] != "CANCELLED" or body["pending_count"]:
        sys.exit(f"the cancel answered {response.status_code}: {response.content[:500]!r}")
    return seconds


def stored_counts(send_id: str) -> tuple[int, int, int]:
    """The send's cancelled counter, its rows still `pending` and its rows `cancelled`."""
    from django.db.models import Count, Q

    from bulksend.models import BulkSend
    from messaging.models import Message

    rows = Message.objects.filter(bulk_send_id=send_id).aggregate(
        pending=Count("id", filter=Q(status="pending")),
        cancelled=Count("id", filter=Q(status="cancelled")),
    )
    counter = BulkSend.objects.values_list("cancelled_count", flat=True).get(pk=send_id)
    return counter, rows["pending"], rows["cancelled"]


def convert_in_background(send_id: str, pending: int) -> float:
    """The conversion task's work, timed until no pending row is left; checks the counters."""
    from bulksend.conversion import cancelled_messages_convert
    from bulksend.lifecycle import bulk_send_cancel_leftovers

    if stored_counts(send_id) != (pending, pending, 0):
        sys.exit(f"the cancel turned rows or miscounted: {stored_counts(send_id)}")
    started = time.perf_counter()
    cancelled_messages_convert(uuid.UUID(send_id))
    bulk_send_cancel_leftovers(uuid.UUID(send_id))
    seconds = time.perf_counter() - started
    if stored_counts(send_id) != (pending, 0, pending):
        sys.exit(f"the conversion left rows or miscounted: {stored_counts(send_id)}")
    return seconds


def bare_update(send_id: str) -> float:
    started = time.perf_counter()
    connection = baseline_connection()
    with connection.transaction(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE messaging_message SET status = 'cancelled', next_attempt_at = NULL"
            " WHERE bulk_send_id = %s AND status = 'pending'",
            [send_id],
        )
        cancelled = cursor.rowcount
        cursor.execute(
            "UPDATE bulksend_bulksend SET status = 'CANCELLED', completed_at = now(),"
            " pending_count = pending_count - %s, cancelled_count = cancelled_count + %s"
            " WHERE id = %s",
            [cancelled, cancelled, send_id],
        )
    return time.perf_counter() - started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=100_000, help="pending messages per send")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--org", default="BenchCancel", help="organization provisioned by `demo`")
    add_service_arguments(
        parser, database="mindo_bench_cancel", database_variable="BENCH_CANCEL_DATABASE_URL"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    env = {**bench_env(args.database_url, args.redis_url), "PYTHONWARNINGS": "ignore"}
    print(f"database {database}, {args.pending:,} pending messages, load {os.getloadavg()}")
    endpoint: list[float] = []
    converted: list[float] = []
    bare: list[float] = []
    try:
        demo = provision(env, args.org)
        django_setup(env)
        for round_index in range(args.rounds):
            offset = round_index * 2 * args.pending
            cancelled = fill_pending(demo, args.pending, offset)
            baseline = fill_pending(demo, args.pending, offset + args.pending)
            analyze()
            endpoint.append(cancel_through_the_api(demo, cancelled))
            converted.append(convert_in_background(cancelled, args.pending))
            bare.append(bare_update(baseline))
            print(
                f"  round {round_index + 1}: cancel {endpoint[-1]:.3f} s, conversion "
                f"{converted[-1]:.3f} s, bare UPDATE {bare[-1]:.3f} s; load {os.getloadavg()}",
                flush=True,
            )
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
    median, bare_median = statistics.median(endpoint), statistics.median(bare)
    conversion = statistics.median(converted)
    print()
    print(f"Cancel through the API (Django's test client, in process); load {os.getloadavg()}")
    print_table(
        [
            "pending",
            "cancel s (median)",
            "target",
            "result",
            "conversion s (median)",
            "bare UPDATE s",
            "cancel/bare",
            "conversion/bare",
        ],
        [
            [
                f"{args.pending:,}",
                sig3(median),
                f"< {TARGET_SECONDS:g}",
                "PASS" if median < TARGET_SECONDS else "MISS",
                sig3(conversion),
                sig3(bare_median),
                sig3(median / bare_median),
                sig3(conversion / bare_median),
            ]
        ],
    )


if __name__ == "__main__":
    main()
