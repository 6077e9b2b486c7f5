"""How fast a send-bulk request is answered again from its `Idempotency-Key` (a client retrying).

    .venv/bin/python bench/idempotent_replay.py [--recipients 100] [--requests 300]

Target (issue 11): an idempotent replay under 10 ms at the median.

1. Create and migrate its own database (`mindo_bench_replay`), provision an organization with
   `manage.py demo --json --org BenchReplay`.
2. Start gunicorn as production does (sync workers, `-c python:mindo.gunicorn_conf`; no Celery
   worker: the send waits in its queue, nothing moves) and POST one send-bulk of `--recipients`
   recipients with an `Idempotency-Key`: the first answer, a 202.
3. Time `--requests` sequential POSTs of the same body with the same key, each answered with the
   first answer again, nothing created (checked: one send in the database at the end). Each is
   followed by one GET of the baseline in the same run: gunicorn serving a bare WSGI app that
   reads one message by primary key with psycopg (bench/reads.py's), the floor of a request that
   makes one round trip to PostgreSQL.
4. Always: stop gunicorn; drop the database unless `--keep`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.reads_support import REQUEST_TIMEOUT, get_ms, p99, wait_ok  # noqa: E402
from bench.support import (  # noqa: E402
    TEMPLATE,
    Demo,
    add_service_arguments,
    bench_database_from_args,
    bench_env,
    database_drop,
    django_setup,
    gunicorn,
    print_table,
    provision,
    sig3,
)

SEND_BULK = "/api/v1/meta-templates/send-bulk/"
TARGET_MS = 10.0


def send_bulk_body(demo: Demo, recipients: int) -> bytes:
    return orjson.dumps(
        {
            "phone_number_id": demo.phone_number_id,
            "template_name": TEMPLATE,
            "language": demo.language,
            "recipients": [
                {
                    "phone": f"+54911{30_000_000 + n:08d}",
                    "variables": {"name": f"Cliente {n}", "code": f"C{n:06d}"},
                    "button_variables": {"button_0": f"B-{n}"},
                }
                for n in range(recipients)
            ],
        }
    )


def post_ms(session: requests.Session, url: str, body: bytes, expected: int) -> tuple[float, str]:
    started = time.perf_counter()
    response = session.post(url, data=body, timeout=REQUEST_TIMEOUT)
    elapsed = (time.perf_counter() - started) * 1000
    if response.status_code != expected:
        sys.exit(f"POST {url} answered {response.status_code}: {response.text[:500]}")
    return elapsed, response.text


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100, help="recipients of the send")
    parser.add_argument("--requests", type=int, default=300, help="timed replays")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--org", default="BenchReplay", help="organization provisioned by `demo`")
    add_service_arguments(
        parser, database="mindo_bench_replay", database_variable="BENCH_REPLAY_DATABASE_URL"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    env = {
        **bench_env(args.database_url, args.redis_url),
        # Hundreds of POSTs in a few seconds exceed a key's send budget; the throttle still
        # counts each in Redis, as in production.
        "API_THROTTLE_SEND_RATE": "1000000/min",
        "PYTHONWARNINGS": "ignore",
    }
    print(f"database {database}, {args.workers} gunicorn sync workers, load {os.getloadavg()}")
    replays: list[float] = []
    baselines: list[float] = []
    try:
        demo = provision(env, args.org)
        django_setup(env)
        body = send_bulk_body(demo, args.recipients)
        with (
            tempfile.TemporaryDirectory(prefix="bench-replay-") as log_dir,
            gunicorn(
                "mindo.wsgi",
                env,
                args.workers,
                Path(log_dir),
                options=("-c", "python:mindo.gunicorn_conf"),
            ) as base,
            gunicorn(
                "bench.reads_support:baseline_app", env, args.workers, Path(log_dir)
            ) as baseline,
            requests.Session() as session,
            requests.Session() as baseline_session,
        ):
            session.headers.update(
                {
                    "X-API-Key": demo.api_key,
                    "Content-Type": "application/json",
                    "Idempotency-Key": f"bench-{uuid.uuid4()}",
                }
            )
            wait_ok(session, base + "/healthz")
            first_ms, first = post_ms(session, base + SEND_BULK, body, 202)
            from messaging.models import Message

            message_id = Message.objects.values_list("pk", flat=True).first()
            baseline_url = f"{baseline}/?id={message_id}"
            wait_ok(baseline_session, baseline_url)
            for _ in range(5):  # untimed: the first answers fill caches
                post_ms(session, base + SEND_BULK, body, 202)
                get_ms(baseline_session, baseline_url)
            for _ in range(args.requests):
                elapsed, answer = post_ms(session, base + SEND_BULK, body, 202)
                if orjson.loads(answer) != orjson.loads(first):
                    sys.exit(f"a replay answered otherwise than the first time: {answer[:300]}")
                replays.append(elapsed)
                baselines.append(get_ms(baseline_session, baseline_url))
            from bulksend.models import BulkSend

            sends = BulkSend.objects.count()
            if sends != 1:
                sys.exit(f"the replays made sends: {sends} in the database")
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
    median, base_median = statistics.median(replays), statistics.median(baselines)
    print()
    print(
        f"send-bulk of {args.recipients} recipients, first answer {first_ms:.1f} ms; "
        f"{args.requests} sequential replays with its Idempotency-Key; load {os.getloadavg()}"
    )
    print("baseline: a bare WSGI app reading one message by id, GETs between the replays")
    print_table(
        ["request", "median ms", "p99 ms", "target", "result", "median/base"],
        [
            [
                "replay",
                sig3(median),
                sig3(p99(replays)),
                f"< {TARGET_MS:g} at the median",
                "PASS" if median < TARGET_MS else "MISS",
                sig3(median / base_median),
            ],
            ["baseline", sig3(base_median), sig3(p99(baselines)), "", "", "1"],
        ],
    )


if __name__ == "__main__":
    main()
