"""How fast the read endpoints answer with a million messages in the tables.

    .venv/bin/python bench/reads.py [--sends 10] [--per-send 100000] [--organizations 1]
        [--contacts 100000] [--requests 300] [--keep]

Targets (issues 8 and 13): the status endpoint, the sends list with each filter, the first pages
of a send's messages, the wamid lookup and contact-lookup under 10 ms at the 99th percentile;
deep pages (page 1,000, the last page, with and without `status`) under 100 ms. Ten million
messages over 1,000 sends and 10 organizations (issue 13):

    .venv/bin/python bench/reads.py --organizations 10 --sends 1000 --per-send 10000

1. Create and migrate its own database (`mindo_bench_reads`), provision `--organizations`
   organizations with `manage.py demo --json --org BenchReads[ N]` (the first one is measured).
2. Fill it with COPY, straight into the tables: `--sends` sends of `--per-send` messages each,
   dealt out to the organizations in turn and created over the last 30 days, in the mix of a
   send half way through (mostly sent, delivered and read; some pending and failed), with exact
   counters, then ANALYZE; and `--contacts` contacts of the measured organization (as
   bench/contact_lookup.py fills them). A database kept by `--keep` with the same fill is
   reused. Print the bytes per message on disk: the table, and each index.
3. Start gunicorn as production does (sync workers, `-c python:mindo.gunicorn_conf`; no Celery
   worker: nothing moves while it is measured), warm every endpoint up, then time `--requests`
   sequential GETs per endpoint with one keep-alive session.
4. Baseline, in the same run and with the same client: gunicorn serving a bare WSGI app that
   reads one message by primary key with psycopg and answers its JSON. That is the floor of a
   read (HTTP, gunicorn, one round trip to PostgreSQL). One GET of it follows each timed GET, so
   both see the same load; each endpoint is printed as a ratio to the baseline timed beside it.
5. Always: stop gunicorn; drop the database unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.contact_lookup import fill as contacts_fill  # noqa: E402
from bench.contact_lookup import phone_of  # noqa: E402
from bench.reads_support import (  # noqa: E402
    Timed,
    disk_bytes_per_message,
    fill,
    measured_reads,
    p99,
    time_reads,
    wait_ok,
)
from bench.support import (  # noqa: E402
    add_service_arguments,
    bench_database_from_args,
    bench_env,
    database_drop,
    django_setup,
    gunicorn,
    print_table,
    provision,
    provision_another,
    sig3,
)

# --- main --------------------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=10)
    parser.add_argument(
        "--organizations", type=int, default=1, help="sends dealt out to this many organizations"
    )
    parser.add_argument(
        "--contacts", type=int, default=100_000, help="contacts of the measured organization"
    )
    parser.add_argument("--per-send", type=int, default=100_000, help="messages per send")
    parser.add_argument("--requests", type=int, default=300, help="timed GETs per endpoint")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2-3)")
    parser.add_argument("--keep", action="store_true", help="keep the database (reused next run)")
    parser.add_argument(
        "--no-gunicorn-conf",
        action="store_true",
        help="serve without mindo.gunicorn_conf (its hooks: garbage collected between requests)",
    )
    parser.add_argument("--org", default="BenchReads", help="organization provisioned by `demo`")
    add_service_arguments(
        parser, database="mindo_bench_reads", database_variable="BENCH_READS_DATABASE_URL"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    env = {
        **bench_env(args.database_url, args.redis_url),
        # 300 GETs of seven reads in about a minute exceed a key's default budget; the throttle
        # still counts every request in Redis, as in production.
        "API_THROTTLE_READ_RATE": "1000000/min",
        "PYTHONWARNINGS": "ignore",  # no collected static files: no news for this bench
    }
    conf = "without" if args.no_gunicorn_conf else "with"
    print(
        f"database {database}, {args.workers} gunicorn sync workers {conf} mindo.gunicorn_conf, "
        f"load {os.getloadavg()}"
    )
    try:
        demo = provision(env, args.org)
        demos = [(args.org, demo)] + [
            (name, provision_another(env, name))
            for name in (f"{args.org} {n}" for n in range(2, args.organizations + 1))
        ]
        django_setup(env)
        send_ids = fill(demos, args.sends, args.per_send)
        _, replier = contacts_fill(args.org, args.contacts)
        disk = disk_bytes_per_message()
        reads, baseline_path = measured_reads(send_ids, args.per_send, phone_of(replier)[1:])
        paths = [(name, path) for name, path, _ in reads]
        with (
            tempfile.TemporaryDirectory(prefix="bench-reads-") as log_dir,
            gunicorn(
                "mindo.wsgi",
                env,
                args.workers,
                Path(log_dir),
                options=() if args.no_gunicorn_conf else ("-c", "python:mindo.gunicorn_conf"),
            ) as base,
            gunicorn(
                "bench.reads_support:baseline_app", env, args.workers, Path(log_dir)
            ) as baseline,
            requests.Session() as session,
            requests.Session() as baseline_session,
        ):
            session.headers["X-API-Key"] = demo.api_key
            wait_ok(session, base + paths[0][1])
            wait_ok(baseline_session, baseline + baseline_path)
            results = time_reads(
                (session, base), (baseline_session, baseline + baseline_path), paths, args.requests
            )
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
    report(reads, results, args)
    disk_report(disk)


def report(
    reads: list[tuple[str, str, float]], results: dict[str, Timed], args: argparse.Namespace
) -> None:
    print()
    print(
        f"Reads through gunicorn, {args.sends} sends of {args.per_send:,} messages "
        f"({args.sends * args.per_send:,}) in {args.organizations} organization(s), "
        f"{args.requests} sequential GETs each, milliseconds; load {os.getloadavg()}"
    )
    print("baseline: a bare WSGI app reading one message by id, GETs between the read's own")
    rows = []
    for name, _, target in reads:
        timed = results[name]
        median, high = statistics.median(timed.read), p99(timed.read)
        base_median, base_high = statistics.median(timed.baseline), p99(timed.baseline)
        rows.append(
            [
                name,
                sig3(median),
                sig3(high),
                f"< {target:g}",
                "PASS" if high < target else "MISS",
                sig3(base_median),
                sig3(base_high),
                sig3(median / base_median),
                sig3(high / base_high),
            ]
        )
    headers = ["read", "median", "p99", "p99 target", "result", "base median", "base p99"]
    print_table([*headers, "median/base", "p99/base"], rows)


def disk_report(disk: list[tuple[str, float]]) -> None:
    print()
    print("Bytes per message on disk")
    print_table(["relation", "bytes/message"], [[name, f"{size:.1f}"] for name, size in disk])


if __name__ == "__main__":
    main()
