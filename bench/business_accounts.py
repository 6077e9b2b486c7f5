"""How fast `GET /api/v1/business-accounts/` answers: a company of 50 numbers, 500 templates.

    .venv/bin/python bench/business_accounts.py [--numbers 50] [--templates 500]
        [--window 10000] [--requests 200] [--keep]

Target (issue 9): under 50 ms.

1. Create and migrate its own database (`mindo_bench_accounts`), provision an organization with
   `manage.py demo --json --org BenchAccounts`.
2. Fill its business account up to `--numbers` numbers and `--templates` APPROVED templates
   (a header, three body variables of which one CURRENCY and one DATE_TIME, a URL button), 50
   templates in other statuses (not listed), and `--window` recipients sent to within the last
   24 h, so the quota count has a window to read; then ANALYZE.
3. Start gunicorn (sync workers), warm up, then time `--requests` sequential GETs with one
   keep-alive session.
4. Baseline, in the same run and with the same client: gunicorn serving a bare WSGI app that
   reads the same numbers and approved templates with psycopg (two queries) and answers them as
   JSON: the floor of reading those rows over HTTP. One GET of it follows each timed GET.
5. Always: stop gunicorn; drop the database unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.reads_support import p99, time_reads, wait_ok  # noqa: E402
from bench.support import (  # noqa: E402
    Demo,
    add_service_arguments,
    baseline_connection,
    bench_database_from_args,
    bench_env,
    database_drop,
    django_setup,
    gunicorn,
    print_table,
    provision,
    sig3,
)

URL = "/api/v1/business-accounts/"
TARGET_MS = 50.0
TEMPLATE_COMPONENTS: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "IMAGE"},
    {
        "type": "BODY",
        "text": "Hola {{name}}, tu pedido {{order_id}} de {{total}} llega el {{day}}.",
    },
    {
        "type": "BUTTONS",
        "buttons": [{"type": "URL", "text": "Ver", "url": "https://mindo.example/p/{{1}}"}],
    },
]
TEMPLATE_TYPES = {"total": "CURRENCY", "day": "DATE_TIME"}


def fill(demo: Demo, numbers: int, templates: int, window: int) -> None:
    """Numbers, templates and a window of sent recipients for the demo's business account."""
    from django.db import connection
    from django.utils import timezone

    from bulksend.models import BulkSend, BulkSendStatus
    from messaging.models import Message
    from templates_app.models import MessageTemplate, PhoneNumber, TemplateStatus

    first = PhoneNumber.objects.select_related("business_account").get(
        phone_number_id=demo.phone_number_id
    )
    account = first.business_account
    PhoneNumber.objects.bulk_create(
        PhoneNumber(
            business_account=account,
            phone_number_id=f"{first.phone_number_id[:-4]}{9000 + n}",
            display_phone_number=f"+54 9 11 5000-{n:04d}",
            verified_name=f"Linea {n}",
        )
        for n in range(1, numbers - account.phone_numbers.count() + 1)
    )
    rows = []
    approved = templates - account.templates.filter(status=TemplateStatus.APPROVED).count()
    for n in range(approved + 50):
        template = MessageTemplate(
            business_account=account,
            name=f"bench_template_{n:04d}",
            status=TemplateStatus.APPROVED if n < approved else TemplateStatus.PAUSED,
            variable_types=TEMPLATE_TYPES,
            currency_code="ARS",
        )
        template.set_components(TEMPLATE_COMPONENTS)
        rows.append(template)
    MessageTemplate.objects.bulk_create(rows)
    send = BulkSend.objects.create(
        organization=account.organization,
        phone_number=first,
        template=account.templates.first(),
        status=BulkSendStatus.COMPLETED,
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"""INSERT INTO {Message._meta.db_table}
                   (bulk_send_id, business_account_id, recipient_phone, variables,
                    button_variables, status, attempts, sent_at, created_at)
                SELECT %s, %s, '+5491160' || lpad(n::text, 6, '0'), '{{}}', '{{}}', 'delivered',
                       1, %s, %s
                  FROM generate_series(1, %s) AS n""",
            [send.pk, account.pk, timezone.now(), timezone.now(), window],
        )
        cursor.execute("ANALYZE")
    print(
        f"filled: {account.phone_numbers.count()} numbers, "
        f"{account.templates.filter(status=TemplateStatus.APPROVED).count()} approved templates "
        f"of {account.templates.count()}, {window:,} recipients in the window",
        flush=True,
    )


def baseline_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The organization's numbers and approved templates with psycopg, as JSON."""
    account = int(environ.get("QUERY_STRING", "account=0").partition("=")[2] or 0)
    connection = baseline_connection()
    numbers = connection.execute(
        "SELECT id, phone_number_id, display_phone_number, verified_name, messaging_limit_tier "
        "FROM templates_app_phonenumber WHERE business_account_id = %s ORDER BY id",
        [account],
    ).fetchall()
    templates = connection.execute(
        "SELECT name, language, category, components, variable_types "
        "FROM templates_app_messagetemplate WHERE business_account_id = %s "
        "AND status = 'APPROVED' ORDER BY name, language",
        [account],
    ).fetchall()
    body = orjson.dumps({"numbers": numbers, "templates": templates})
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--numbers", type=int, default=50)
    parser.add_argument("--templates", type=int, default=500, help="approved templates")
    parser.add_argument("--window", type=int, default=10_000, help="recipients sent in 24 h")
    parser.add_argument("--requests", type=int, default=200, help="timed GETs")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--org", default="BenchAccounts")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    add_service_arguments(parser, database="mindo_bench_accounts")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    env = {
        **bench_env(args.database_url, args.redis_url),
        "API_THROTTLE_READ_RATE": "1000000/min",
        "PYTHONWARNINGS": "ignore",
    }
    print(f"database {database}, {args.workers} gunicorn sync workers, load {os.getloadavg()}")
    try:
        demo = provision(env, args.org)
        django_setup(env)
        fill(demo, args.numbers, args.templates, args.window)
        from templates_app.models import PhoneNumber

        account_id = PhoneNumber.objects.get(
            phone_number_id=demo.phone_number_id
        ).business_account_id
        with (
            tempfile.TemporaryDirectory(prefix="bench-accounts-") as log_dir,
            gunicorn("mindo.wsgi", env, args.workers, Path(log_dir)) as base,
            gunicorn(
                "bench.business_accounts:baseline_app", env, args.workers, Path(log_dir)
            ) as baseline,
            requests.Session() as session,
            requests.Session() as baseline_session,
        ):
            session.headers["X-API-Key"] = demo.api_key
            baseline_url = f"{baseline}/?account={account_id}"
            wait_ok(session, base + URL)
            wait_ok(baseline_session, baseline_url)
            body = session.get(base + URL, timeout=30).json()
            [listed] = body["businessAccounts"]
            print(
                f"answer: {len(listed['phoneNumbers'])} numbers, {len(listed['templates'])} "
                f"templates, {len(orjson.dumps(body)):,} bytes",
                flush=True,
            )
            timed = time_reads(
                (session, base),
                (baseline_session, baseline_url),
                [("accounts", URL)],
                args.requests,
            )["accounts"]
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
    median, high = statistics.median(timed.read), p99(timed.read)
    base_median, base_high = statistics.median(timed.baseline), p99(timed.baseline)
    print()
    print(
        f"GET {URL} through gunicorn, {args.numbers} numbers, {args.templates} templates, "
        f"{args.requests} sequential GETs, milliseconds; load {os.getloadavg()}"
    )
    print("baseline: a bare WSGI app reading the same numbers and templates with psycopg")
    print_table(
        ["median", "p99", "target", "result", "base median", "base p99", "median/base"],
        [
            [
                sig3(median),
                sig3(high),
                f"< {TARGET_MS:g}",
                "PASS" if median < TARGET_MS else "MISS",
                sig3(base_median),
                sig3(base_high),
                sig3(median / base_median),
            ]
        ],
    )


if __name__ == "__main__":
    main()
