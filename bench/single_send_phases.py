"""Where one single send's time goes (POST send/), in this process, one at a time: the round trips
to PostgreSQL and Redis it makes, each SQL statement and commit timed, and the CPU the process
spent per send (the machine's load moves wall-clock figures; CPU time and counts move less).

    .venv/bin/python bench/single_send_phases.py [--sends 300] [--profile N]

The sandbox runs as its own process (no rate limit, no webhooks), the request goes through
Django's WSGI handler (middleware, DRF, the view) as gunicorn would hand it over, on the same
database and number set-up as bench/single_send.py. `--profile N` prints cProfile's top N
functions by cumulative and by own time over the measured sends. Two round trips are not in the
table: psycopg's BEGIN and Django's connection health check (CONN_HEALTH_CHECKS) do not pass
through the execute wrapper.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import os
import pstats
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.single_send import SEND, bench_set_up, send_body  # noqa: E402
from bench.support import add_service_arguments, print_table, sig3  # noqa: E402


class RoundTrips:
    """Counts and times every SQL statement (Django's execute wrapper), every commit, and every
    command (or pipeline) sent to Redis."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.seconds: dict[str, float] = defaultdict(float)

    def add(self, label: str, began: float) -> None:
        self.count[label] += 1
        self.seconds[label] += time.perf_counter() - began

    def __call__(self, execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, *args)
        finally:
            self.add("SQL: " + " ".join(sql.split()[:3])[:60], began)

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        import redis.connection
        from django.db import connection

        connection.ensure_connection()
        raw = connection.connection
        commit = raw.commit
        send = redis.connection.AbstractConnection.send_packed_command
        connect = redis.connection.AbstractConnection.connect

        def timed_commit() -> None:
            began = time.perf_counter()
            try:
                commit()
            finally:
                self.add("PostgreSQL COMMIT", began)

        def counted_send(conn: Any, command: Any, check_health: bool = True) -> None:
            began = time.perf_counter()
            try:
                send(conn, command, check_health)
            finally:
                self.add("Redis: command or pipeline sent", began)

        def counted_connect(conn: Any) -> None:
            # redis-py calls it each time it hands a connection out: count the ones it opens.
            opening, began = conn._sock is None, time.perf_counter()
            try:
                connect(conn)
            finally:
                if opening:
                    self.add("Redis: new connection", began)

        raw.commit = timed_commit
        redis.connection.AbstractConnection.send_packed_command = counted_send  # type: ignore[method-assign]
        redis.connection.AbstractConnection.connect = counted_connect  # type: ignore[method-assign]
        try:
            with connection.execute_wrapper(self):
                yield
        finally:
            del raw.commit
            redis.connection.AbstractConnection.send_packed_command = send  # type: ignore[method-assign]
            redis.connection.AbstractConnection.connect = connect  # type: ignore[method-assign]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=300)
    parser.add_argument("--profile", type=int, default=0, help="cProfile's top N functions")
    parser.add_argument("--org", default="BenchSinglePhases")
    add_service_arguments(parser, database="mindo_bench_single")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"load {os.getloadavg()}")
    with bench_set_up(args.database_url, args.redis_url, args.org) as (_, _, demo, _, _):
        measure(args, demo)
    print(f"load {os.getloadavg()}")


def measure(args: argparse.Namespace, demo: Any) -> None:
    from django.core.handlers.wsgi import WSGIHandler

    handler = WSGIHandler()

    def post(n: int) -> None:
        body = send_body(demo, n)
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": SEND,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "HTTP_HOST": "127.0.0.1",
            "HTTP_X_API_KEY": demo.api_key,
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(body)),
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
        }
        answered: list[str] = []
        response = handler(environ, lambda status, headers: answered.append(status))
        content = b"".join(response)
        response.close()
        if not answered[0].startswith("200"):
            sys.exit(f"send {n} answered {answered[0]}: {content[:500]!r}")

    base = int(time.time()) % 900 * 1_000  # fresh recipients on every run (six digits)
    for n in range(20):  # Django, the key cache, the connections to Meta, PostgreSQL, Redis
        post(base + 900 + n)
    trips = RoundTrips()
    walls, cpus = [], []
    profiler = cProfile.Profile() if args.profile else None
    with trips.watching():
        for n in range(args.sends):
            wall, cpu = time.perf_counter(), time.process_time()
            if profiler is not None:
                profiler.enable()
            post(base + n)
            if profiler is not None:
                profiler.disable()
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    sends = args.sends
    print(f"\nOne single send through Django's WSGI handler, {sends} sends, per send:")
    rows = [
        [label, sig3(trips.count[label] / sends), sig3(trips.seconds[label] / sends * 1000)]
        for label in sorted(trips.count)
    ]
    sql = [label for label in trips.count if label.startswith(("SQL", "PostgreSQL"))]
    redis_trips = [label for label in trips.count if label.startswith("Redis")]
    for name, labels in (("PostgreSQL, all", sql), ("Redis, all", redis_trips)):
        rows.append(
            [
                name,
                sig3(sum(trips.count[label] for label in labels) / sends),
                sig3(sum(trips.seconds[label] for label in labels) / sends * 1000),
            ]
        )
    print_table(["round trip", "per send", "ms per send"], rows)
    print(
        f"wall: median {sig3(statistics.median(walls) * 1000)} ms; process CPU: median "
        f"{sig3(statistics.median(cpus) * 1000)} ms, mean {sig3(statistics.mean(cpus) * 1000)} ms"
    )
    if profiler is not None:
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(args.profile)
        stats.sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue())


if __name__ == "__main__":
    main()
