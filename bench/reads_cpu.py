"""The CPU one read costs in this process, whatever the machine's load: each read endpoint called
through the WSGI application in-process, beside a bare WSGI read by key.

    .venv/bin/python bench/reads_cpu.py [--sends 2] [--per-send 50000] [--contacts 20000]
        [--requests 300] [--keep] [--profile NAME]

bench/reads.py times the reads through gunicorn, and on a busy machine its milliseconds are
mostly the other processes' turn on the cores. CPU time of this process (`time.process_time`)
counts only what our stack spends: middleware, DRF, the ORM compiling SQL, serializing,
rendering, psycopg's side of each query, the throttle's Redis call. PostgreSQL's own work is not
counted (another process): the SQL count per request is printed beside it instead.

1. Create and migrate its own database (`mindo_bench_reads_cpu`), provision one organization,
   fill it as bench/reads.py does (`--sends` sends of `--per-send` messages, `--contacts`
   contacts). A database kept by `--keep` with the same fill is reused.
2. For each endpoint of bench/reads.py: 20 untimed calls, one call counting its SQL statements,
   five counting the function calls it makes (cProfile's count: the same on a busy machine,
   where even CPU time swells with the other processes' share of the caches and cores), then
   `--requests` calls timed with `time.process_time`, the garbage collector run between calls
   as gunicorn's workers do (mindo.worker_gc) and outside the timing. The API key is trusted
   for the whole run (API_KEY_CACHE_SECONDS=3600): one client's steady reads.
3. Baseline: bench/reads.py's bare WSGI app (one message by primary key with psycopg, orjson),
   measured the same way right after each read.
`--profile NAME` prints the cProfile of the endpoint whose name starts with NAME instead.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import (  # noqa: E402
    in_process_arguments,
    in_process_service,
    print_table,
    sig3,
)

WARM_UP_CALLS = 20
CALLS_COUNTED = 5
# Steady reads by one client: its key is checked once, not again every API_KEY_CACHE_SECONDS in
# the middle of a count.
KEY_TRUSTED_SECONDS = "3600"
WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def environ_of(path: str, api_key: str) -> dict[str, Any]:
    """A GET of `path` as gunicorn hands it to the application."""
    path_info, _, query = path.partition("?")
    return {
        "REQUEST_METHOD": "GET",
        "SCRIPT_NAME": "",
        "PATH_INFO": path_info,
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_X_API_KEY": api_key,
        "HTTP_ACCEPT": "*/*",
        "HTTP_CONNECTION": "keep-alive",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def call(app: WsgiApp, path: str, api_key: str) -> bytes:
    """One GET through `app`, its body read and closed as a server does; exits unless 200."""
    answered: list[str] = []
    result = app(environ_of(path, api_key), lambda status, headers, *_: answered.append(status))
    try:
        body = b"".join(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if not answered[0].startswith("200"):
        sys.exit(f"GET {path} answered {answered[0]}: {body[:500]!r}")
    return body


def cpu_ms_per_call(app: WsgiApp, path: str, api_key: str, count: int) -> float:
    """Mean CPU milliseconds of `count` calls; the collector runs between them, untimed, as in
    gunicorn's workers (mindo.worker_gc)."""
    from mindo.worker_gc import worker_gc_after_request

    spent = 0.0
    for _ in range(count):
        worker_gc_after_request()
        started = time.process_time()
        call(app, path, api_key)
        spent += time.process_time() - started
    return spent / count * 1000


def python_calls_per_call(app: WsgiApp, path: str, api_key: str, count: int) -> int:
    """Function calls (Python's and builtins') per call, as cProfile counts them: unlike CPU
    time, the same whatever else the machine runs."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        call(app, path, api_key)
    profiler.disable()
    return round(pstats.Stats(profiler).total_calls / count)  # type: ignore[attr-defined]


def queries_of(app: WsgiApp, path: str, api_key: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        call(app, path, api_key)
    return len(queries)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=2)
    parser.add_argument("--per-send", type=int, default=50_000, help="messages per send")
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=300, help="timed calls per endpoint")
    parser.add_argument("--profile", metavar="NAME", help="cProfile the endpoint NAME starts")
    in_process_arguments(
        parser,
        org="BenchReadsCpu",
        database="mindo_bench_reads_cpu",
        database_variable="BENCH_READS_CPU_DATABASE_URL",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    os.environ["API_KEY_CACHE_SECONDS"] = KEY_TRUSTED_SECONDS
    # Thousands of reads in a minute by one key: the read budget would answer 429 part way.
    os.environ["API_THROTTLE_READ_RATE"] = "1000000/min"
    with in_process_service(args) as (demo, _):
        from bench.contact_lookup import fill as contacts_fill
        from bench.contact_lookup import phone_of
        from bench.reads_support import baseline_app, fill, measured_reads
        from mindo.worker_gc import worker_gc_start
        from mindo.wsgi import application

        send_ids = fill([(args.org, demo)], args.sends, args.per_send)
        _, replier = contacts_fill(args.org, args.contacts)
        reads, baseline_path = measured_reads(send_ids, args.per_send, phone_of(replier)[1:])
        if args.profile:
            profile(application, reads, args, demo.api_key)
            return
        worker_gc_start()
        rows = []
        for name, path, _ in reads:
            for _ in range(WARM_UP_CALLS):
                call(application, path, demo.api_key)
                call(baseline_app, baseline_path, demo.api_key)
            queries = queries_of(application, path, demo.api_key)
            calls = python_calls_per_call(application, path, demo.api_key, CALLS_COUNTED)
            base_calls = python_calls_per_call(baseline_app, baseline_path, "", CALLS_COUNTED)
            read_ms = cpu_ms_per_call(application, path, demo.api_key, args.requests)
            base_ms = cpu_ms_per_call(baseline_app, baseline_path, demo.api_key, args.requests)
            rows.append(
                [name, sig3(read_ms), f"{calls:,}", str(queries), sig3(base_ms), f"{base_calls:,}"]
            )
            print(f"  {name}: {read_ms:.2f} ms CPU, {calls:,} calls, {queries} SQL", flush=True)
    print()
    print(
        f"CPU per read in-process (time.process_time, mean of {args.requests}), "
        f"{args.sends} sends of {args.per_send:,} messages, milliseconds"
    )
    print("baseline: a bare WSGI app reading one message by id, timed right after each read")
    print_table(["read", "CPU ms", "calls", "SQL", "base CPU ms", "base calls"], rows)


def profile(
    app: WsgiApp, reads: list[tuple[str, str, float]], args: argparse.Namespace, api_key: str
) -> None:
    path = next(path for name, path, _ in reads if name.startswith(args.profile))
    for _ in range(WARM_UP_CALLS):
        call(app, path, api_key)
    profiler = cProfile.Profile(time.process_time)  # CPU, not the load
    profiler.enable()
    for _ in range(args.requests):
        call(app, path, api_key)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(70)


if __name__ == "__main__":
    main()
