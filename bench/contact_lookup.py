"""How fast the contact lookup answers with a million contacts in the table.

    .venv/bin/python bench/contact_lookup.py [--contacts 1000000] [--requests 300] [--keep]

Target (issue 9): GET /api/v1/contact-lookup/ under 10 ms at the median; the 99th percentile is
reported.

1. Create and migrate its own database (`mindo_bench_contacts`), provision an organization with
   `manage.py demo --json --org BenchContacts`.
2. Fill it with COPY: `--contacts` contacts of that organization in its default list (Argentine
   mobiles, +549223 and seven digits), a tenth of them with three messages they sent to the
   demo's number over the last two days, then ANALYZE. A database kept by `--keep` is reused.
3. Start gunicorn (sync workers), warm up, then time `--requests` sequential GETs of each lookup
   with one keep-alive session: a contact who replied, asked in the page's `15` spelling with
   spaces and dashes; one who never replied, in E.164 without `+`; a number nobody has.
4. Baseline, in the same run and with the same client: gunicorn serving a bare WSGI app that
   reads the contact by (organization, phone) with psycopg, one GET of it after each timed GET.
5. Always: stop gunicorn; drop the database unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.reads_support import Timed, p99, time_reads, wait_ok  # noqa: E402
from bench.support import (  # noqa: E402
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

URL = "/api/v1/contact-lookup/"
TARGET_MEDIAN_MS = 10.0
# Every REPLIED_EVERY-th contact sent messages: enough rows for the reply index to matter.
REPLIED_EVERY = 10
MESSAGES_PER_REPLIER = 3


def phone_of(index: int) -> str:
    return f"+549223{index:07d}"


def page_spelling(index: int) -> str:
    """The contact's phone as the page's "with spaces/dashes" row writes it: +54 223 15-..."""
    local = f"{index:07d}"
    return f"+54 223 15-{local[:3]}-{local[3:]}"


def contact_rows(organization_id: int, list_id: int, count: int, now: datetime) -> Iterator[tuple]:
    for index in range(count):
        yield (organization_id, list_id, phone_of(index), f"Cliente {index}", None, "api", now)


def inbound_rows(
    organization_id: int, number_id: int, count: int, now: datetime
) -> Iterator[tuple]:
    for index in range(0, count, REPLIED_EVERY):
        for reply in range(MESSAGES_PER_REPLIER):
            sent_at = now - timedelta(hours=16 * (MESSAGES_PER_REPLIER - reply))
            yield (f"wamid.bench{index}.{reply}", organization_id, number_id, phone_of(index),
                   "text", "Hola", sent_at, sent_at)  # fmt: skip


def fill(org: str, count: int) -> tuple[int, int]:
    """COPY `count` contacts and their replies in; returns (organization id, a replier's index)."""
    from django.db import connection

    from messaging.contacts import contact_list_default
    from messaging.models import Contact, InboundMessage
    from mindo.models import Organization
    from templates_app.models import PhoneNumber

    organization = Organization.objects.get(name=org)
    replier = (count // 2) // REPLIED_EVERY * REPLIED_EVERY
    if Contact.objects.filter(organization=organization).count() >= count:
        print(f"reusing {count:,} contacts")
        return organization.pk, replier
    Contact.objects.filter(organization=organization).delete()
    InboundMessage.objects.filter(organization=organization).delete()
    contact_list = contact_list_default(organization.pk)
    number = PhoneNumber.objects.filter(business_account__organization=organization).first()
    assert number is not None
    now = datetime.now(UTC)
    columns = "organization_id, contact_list_id, phone, name, email, source, created_at"
    inbound_columns = (
        "wamid, organization_id, phone_number_id, from_phone, message_type, text, sent_at, "
        "received_at"
    )
    with connection.cursor() as cursor:
        raw = cursor.cursor
        with raw.copy(f"COPY {Contact._meta.db_table} ({columns}) FROM STDIN") as copy:
            for row in contact_rows(organization.pk, contact_list.pk, count, now):
                copy.write_row(row)
        with raw.copy(
            f"COPY {InboundMessage._meta.db_table} ({inbound_columns}) FROM STDIN"
        ) as copy:
            for row in inbound_rows(organization.pk, number.pk, count, now):
                copy.write_row(row)
        cursor.execute(f"ANALYZE {Contact._meta.db_table}")
        cursor.execute(f"ANALYZE {InboundMessage._meta.db_table}")
    print(f"filled {count:,} contacts, {count // REPLIED_EVERY:,} of them with replies")
    return organization.pk, replier


# --- the baseline app (gunicorn imports this module as bench.contact_lookup:baseline_app) ------


def baseline_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The contact by (organization, phone) with psycopg, as JSON: no framework, one round trip."""
    query = dict(part.partition("=")[::2] for part in environ.get("QUERY_STRING", "").split("&"))
    row = (
        baseline_connection()
        .execute(
            "SELECT id, name, phone, email, contact_list_id, source, created_at "
            "FROM messaging_contact WHERE organization_id = %s AND phone = %s",
            [int(query.get("org", "0")), "+" + query.get("phone", "")],
        )
        .fetchone()
    )
    body = orjson.dumps(
        {
            "found": row is not None,
            "contact": dict(zip(("id", "n", "p", "e", "l", "s", "c"), row, strict=False)),
        }
        if row
        else {"found": False}
    )
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=300, help="timed GETs per lookup")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2-3)")
    parser.add_argument("--keep", action="store_true", help="keep the database (reused next run)")
    parser.add_argument("--org", default="BenchContacts", help="organization provisioned by demo")
    add_service_arguments(
        parser, database="mindo_bench_contacts", database_variable="BENCH_CONTACTS_DATABASE_URL"
    )
    return parser.parse_args()


def lookups(replier: int, count: int) -> list[tuple[str, str]]:
    never_replied = replier + 1
    return [
        ("replied, page's 15 spelling", f"{URL}?phone={quote(page_spelling(replier))}"),
        ("never replied, E.164 without +", f"{URL}?phone={phone_of(never_replied)[1:]}"),
        ("unknown number", f"{URL}?phone={phone_of(count + 1)[1:]}"),
    ]


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
        organization_id, replier = fill(args.org, args.contacts)
        paths = lookups(replier, args.contacts)
        baseline_path = f"/?org={organization_id}&phone={phone_of(replier)[1:]}"
        with (
            tempfile.TemporaryDirectory(prefix="bench-contacts-") as log_dir,
            gunicorn("mindo.wsgi", env, args.workers, Path(log_dir)) as base,
            gunicorn("bench.contact_lookup:baseline_app", env, args.workers, Path(log_dir)) as bare,
            requests.Session() as session,
            requests.Session() as baseline_session,
        ):
            session.headers["X-API-Key"] = demo.api_key
            wait_ok(session, base + paths[0][1])
            found = session.get(base + paths[0][1]).json()
            shown = (found["found"], found["hasReplied"], found["sessionWindowActive"])
            if shown != (True, True, True):
                sys.exit(f"the replier's lookup answered {found}")
            wait_ok(baseline_session, bare + baseline_path)
            results = time_reads(
                (session, base), (baseline_session, bare + baseline_path), paths, args.requests
            )
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
    report(paths, results, args)


def report(
    paths: list[tuple[str, str]], results: dict[str, Timed], args: argparse.Namespace
) -> None:
    print()
    print(
        f"Contact lookup through gunicorn, {args.contacts:,} contacts, {args.requests} sequential "
        f"GETs each, milliseconds; load {os.getloadavg()}"
    )
    print("baseline: a bare WSGI app reading the contact by phone, GETs between the lookup's own")
    rows = []
    for name, _ in paths:
        timed = results[name]
        median, high = statistics.median(timed.read), p99(timed.read)
        base_median, base_high = statistics.median(timed.baseline), p99(timed.baseline)
        rows.append(
            [
                name,
                sig3(median),
                sig3(high),
                f"< {TARGET_MEDIAN_MS:g}",
                "PASS" if median < TARGET_MEDIAN_MS else "MISS",
                sig3(base_median),
                sig3(base_high),
                sig3(median / base_median),
            ]
        )
    headers = ["lookup", "median", "p99", "median target", "result", "base median", "base p99"]
    print_table([*headers, "median/base"], rows)


if __name__ == "__main__":
    main()
