"""How long a retry of a send's failed recipients takes, against a bare INSERT ... SELECT.

    .venv/bin/python bench/retry.py [--failed 50000] [--rounds 3] [--keep]

Target (issue 11): a retry of 50,000 failed recipients answered in under 2 s.

1. Create and migrate its own database (`mindo_bench_retry`) and provision an organization with
   `manage.py demo --json --org BenchRetry`.
2. Each round (untimed): a finished send of `--failed` failed messages (one SQL fill), then POST
   `.../bulk-sends/{id}/retry/` `{"scope": "failed"}` through Django's test client in this
   process (the whole view: key check, the chain's lock and checks, the copy, the quota figures
   and estimate, the commit), timed from request to answer. The retry is then cancelled (untimed)
   so that it waits in nobody's quota.
3. Baseline, in the same round: the bare statement alone, an INSERT ... SELECT of the same rows
   into a new send, committed; the retry's time is printed as a ratio to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import (  # noqa: E402
    baseline_connection,
    in_process_arguments,
    in_process_service,
    print_table,
    sig3,
)

API = "/api/v1/meta-templates"
TARGET_SECONDS = 2.0

# A finished send of `count` failed messages, each with its own variables, in one statement.
_FILL_SQL = """
INSERT INTO messaging_message (bulk_send_id, business_account_id, recipient_phone, variables,
                               button_variables, status, attempts, failed_at, error_code,
                               error_message)
SELECT %(send)s, %(account)s, '+54911' || (20000000 + i)::text,
       jsonb_build_object('name', 'Cliente ' || i, 'code', 'C' || i),
       jsonb_build_object('button_0', 'B-' || i), 'failed', 1, now(), '131026',
       'Message undeliverable'
  FROM generate_series(1, %(count)s) AS i
"""

_BARE_SQL = """
INSERT INTO messaging_message (bulk_send_id, business_account_id, recipient_phone, variables,
                               button_variables)
SELECT %s, business_account_id, recipient_phone, variables, button_variables
  FROM messaging_message WHERE bulk_send_id = %s AND status = 'failed' ORDER BY id
"""


def failed_send(phone_number_id: str, count: int) -> uuid.UUID:
    """A finished (FAILED) send of `count` failed messages; its counters add up."""
    from django.db import connection, transaction
    from django.utils import timezone

    from bulksend.models import BulkSend, BulkSendStatus
    from templates_app.models import PhoneNumber

    number = PhoneNumber.objects.select_related("business_account").get(
        phone_number_id=phone_number_id
    )
    template = number.business_account.templates.get(name="welcome_message")
    with transaction.atomic():
        send = BulkSend.objects.create(
            organization=number.business_account.organization,
            phone_number=number,
            template=template,
            status=BulkSendStatus.FAILED,
            submitted_recipients=count,
            unique_recipients=count,
            failed_count=count,
            started_at=timezone.now(),
            completed_at=timezone.now(),
        )
        with connection.cursor() as cursor:
            cursor.execute(
                _FILL_SQL,
                {"send": send.pk, "account": number.business_account_id, "count": count},
            )
    return send.pk


def bare_copy(source: uuid.UUID) -> float:
    """Seconds of the bare INSERT ... SELECT of `source`'s failed rows into a new send."""
    from bulksend.models import BulkSend

    model = BulkSend.objects.get(pk=source)
    target = BulkSend.objects.create(
        organization_id=model.organization_id,
        phone_number_id=model.phone_number_id,
        template_id=model.template_id,
    )
    connection = baseline_connection()
    started = time.perf_counter()
    with connection.transaction():
        connection.execute(_BARE_SQL, [target.pk, source])
    return time.perf_counter() - started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--failed", type=int, default=50_000, help="failed messages to retry")
    in_process_arguments(
        parser,
        org="BenchRetry",
        database="mindo_bench_retry",
        database_variable="BENCH_RETRY_DATABASE_URL",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"{args.failed:,} failed recipients")
    timed: list[float] = []
    bare: list[float] = []
    with in_process_service(args) as (demo, client):
        from bulksend.lifecycle import bulk_send_cancel
        from bulksend.models import BulkSend

        for round_index in range(args.rounds + 1):  # the first round warms up, untimed
            source = failed_send(demo.phone_number_id, args.failed)
            started = time.perf_counter()
            response = client.post(
                f"{API}/bulk-sends/{source}/retry/",
                {"scope": "failed"},
                content_type="application/json",
            )
            seconds = time.perf_counter() - started
            if response.status_code != 202:
                sys.exit(f"retry answered {response.status_code}: {response.content[:500]!r}")
            answer = response.json()
            if answer["unique_recipients"] != args.failed:
                sys.exit(f"the retry holds {answer['unique_recipients']}, not {args.failed}")
            bulk_send_cancel(bulk_send=BulkSend.objects.get(pk=answer["bulk_send_id"]))
            bare_seconds = bare_copy(source)
            if round_index == 0:
                continue
            timed.append(seconds)
            bare.append(bare_seconds)
            print(
                f"  round {round_index}: retry {seconds:.3f} s, bare INSERT ... SELECT "
                f"{bare_seconds:.3f} s; load {os.getloadavg()}",
                flush=True,
            )
    median, bare_median = statistics.median(timed), statistics.median(bare)
    print()
    print_table(
        ["retry of", "median", "min", "max", "bare INSERT ... SELECT", "ratio", "target"],
        [
            [
                f"{args.failed:,} failed",
                f"{sig3(median)} s",
                f"{sig3(min(timed))} s",
                f"{sig3(max(timed))} s",
                f"{sig3(bare_median)} s",
                f"{sig3(median / bare_median)}x",
                f"< {TARGET_SECONDS:g} s: {'pass' if median < TARGET_SECONDS else 'FAIL'}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
