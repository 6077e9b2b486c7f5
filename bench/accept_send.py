"""How long accepting a bulk send takes, through the real HTTP stack.

    .venv/bin/python bench/accept_send.py [--sizes 10000,100000] [--rounds N]

Targets (issue 8): 10,000 recipients answered in under 1 s, 100,000 in under 5 s. Where the
time goes is `bench/accept_send_phases.py`.

1. Prepare a dedicated database (`--database-url`, default `mindo_bench`): create, migrate, and
   provision an organization with `manage.py demo --json --org Bench`. The bench empties that
   database's sends and messages first, so it refuses a database whose name lacks "bench".
2. Start gunicorn (sync workers, 127.0.0.1, a free port) on that database, with Celery's broker
   on the bench's own Redis database so the wake-ups it publishes never reach a development
   worker. Wait for it as long as a busy machine needs (see bench/accept_support.py).
3. Build every request body once, with orjson, before any clock starts.
4. Warm every worker up, then time POST /send-bulk/ of N unique Argentine mobiles with the
   `welcome_message` variables and its URL button, several rounds per size. Each answer must be
   a 202 with `unique_recipients == N`. Between rounds (off the clock) the previous sends are
   cancelled, so each round meets the same quota state instead of a growing backlog.
5. Baseline, in the same run: after each timed POST, the same body posted with the same client
   to a stdlib server that only reads it and answers 202 (moving the bytes over HTTP). Both see
   the same load; each size is printed as a ratio to its baseline.
6. Always: stop gunicorn and the sink, and empty the Celery queue of the bench's Redis database.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.accept_support import (  # noqa: E402
    AccessLog,
    accept,
    body_for,
    queue_clear,
    sends_cancel_active,
    sends_reset,
    service_env,
    sink_post_seconds,
    sink_server,
    wait_ready,
    warm_workers,
)
from bench.support import (  # noqa: E402
    add_service_arguments,
    django_setup,
    gunicorn,
    print_table,
    provision,
    sig3,
)

TARGET_SECONDS = {10_000: 1.0, 100_000: 5.0}


@dataclass
class Timings:
    """Seconds of each timed POST: as the client saw it, inside gunicorn, and to the sink."""

    service: list[float] = field(default_factory=list)
    server: list[float] = field(default_factory=list)
    baseline: list[float] = field(default_factory=list)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="recipients per send, by commas")
    parser.add_argument(
        "--rounds", type=int, default=None, help="timed rounds per size (default 5 up to 10k, 3)"
    )
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers (2-3)")
    parser.add_argument("--org", default="Bench", help="organization provisioned by `demo`")
    parser.add_argument("--max-seconds", type=float, default=1200, help="stop starting rounds")
    add_service_arguments(parser, database="mindo_bench")
    return parser.parse_args()


def main() -> None:
    # A plain SIGTERM would end Python without its `finally` blocks, and leave gunicorn (in its
    # own session) running: turn it into an exit that unwinds.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    rounds = {size: args.rounds or (5 if size <= 10_000 else 3) for size in sizes}
    deadline = time.monotonic() + args.max_seconds
    env = service_env(args.database_url, args.redis_url)
    print(f"{args.database_url}, broker {args.redis_url}, {args.workers} gunicorn sync workers")
    demo = provision(env, args.org)
    django_setup(env)
    sends_reset()
    # Built once, before any clock starts: the client must not be what is measured.
    bodies = {size: body_for(demo, size) for size in sizes}
    timings = {size: Timings() for size in sizes}
    # %(D)s is the time gunicorn spent on the request (microseconds), body read included.
    options = ("--access-logformat", "%(s)s %(D)s")
    try:
        with (
            tempfile.TemporaryDirectory(prefix="bench-accept-") as log_dir,
            gunicorn(
                "mindo.wsgi",
                env,
                args.workers,
                Path(log_dir),
                options=(*options, "--access-logfile", f"{log_dir}/access.log"),
                timeout=300,
            ) as base,
            sink_server() as sink,
            requests.Session() as session,
            requests.Session() as sink_session,
        ):
            wait_ready(base, demo.api_key, Path(log_dir))
            warm_workers(base, demo, args.workers)
            access_log = AccessLog(Path(log_dir) / "access.log")
            for size in sizes:
                accept(session, base, demo.api_key, bodies[size], size)  # warm-up
                sink_post_seconds(sink_session, sink, demo.api_key, bodies[size])
                for _ in range(rounds[size]):
                    if time.monotonic() > deadline:
                        print(f"--max-seconds reached: {size} ran fewer rounds")
                        break
                    sends_cancel_active()
                    access_log.next_202(timeout=0)  # skip what came before
                    timed = timings[size]
                    timed.service.append(accept(session, base, demo.api_key, bodies[size], size))
                    timed.baseline.append(
                        sink_post_seconds(sink_session, sink, demo.api_key, bodies[size])
                    )
                    server = access_log.next_202()
                    if server is not None:
                        timed.server.append(server)
                print(f"  {size:,}: median {sig3(statistics.median(timed.service))} s", flush=True)
    finally:
        print(f"emptied the queue of {args.redis_url} ({queue_clear(args.redis_url)} wake-ups)")
    report(sizes, bodies, timings)


def report(sizes: list[int], bodies: dict[int, bytes], timings: dict[int, Timings]) -> None:
    print()
    print("Accepting a send: POST /send-bulk/ through gunicorn, seconds per request")
    print("baseline: the same body to a stdlib server that only reads it, posted after each one")
    rows = []
    for size in sizes:
        service, base = timings[size].service, timings[size].baseline
        if not service:
            continue
        median, base_median = statistics.median(service), statistics.median(base)
        target = TARGET_SECONDS.get(size)
        server = timings[size].server
        rows.append(
            [
                f"{size:,}",
                sig3(len(bodies[size]) / 1e6),
                str(len(service)),
                sig3(median),
                sig3(min(service)),
                sig3(max(service)),
                sig3(size / median),
                sig3(statistics.median(server)) if server else "-",
                f"< {target:g} s" if target else "-",
                ("PASS" if median < target else "MISS") if target else "-",
                sig3(base_median),
                sig3(median / base_median),
            ]
        )
    headers = ["size", "body MB", "runs", "median", "min", "max", "recipients/s", "in gunicorn"]
    print_table([*headers, "target", "result", "base median", "median/base"], rows)


if __name__ == "__main__":
    main()
