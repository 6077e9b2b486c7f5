"""How fast a send's messages stream out as CSV, and whether the server's memory stays flat.

    .venv/bin/python bench/export_csv.py [--rows 1000000] [--rounds 3] [--keep]

Target (issue 11): 1,000,000 rows at over 50,000 rows/s, with memory that does not grow with the
row count.

1. Create and migrate its own database (`mindo_bench_export`), provision an organization with
   `manage.py demo --json --org BenchExport`, and fill one send of `--rows` messages with COPY
   (bench.reads_support's fill: a send half way through, every column set as in real traffic).
   Also a send of 10,000, to compare the memory of a small export with the big one.
2. Start gunicorn (one sync worker) and GET `.../messages/export/` with a streaming client that
   counts rows and bytes, `--rounds` times, while a thread samples the worker's resident memory.
3. Baseline, in the same run: a bare `COPY (SELECT every column ...) TO STDOUT WITH CSV` of the
   same rows through psycopg in this process, read to the end. That is what PostgreSQL alone
   costs; the export's rate is printed as a ratio to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.reads_support import fill, wait_ok  # noqa: E402
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

API = "/api/v1/meta-templates"
TARGET_ROWS_PER_SECOND = 50_000
SMALL_ROWS = 10_000
READ_BYTES = 256 * 1024


def rss_kib(port: int) -> int:
    """The largest resident memory (KiB) of the processes serving `port` (gunicorn's master and
    worker share its command line)."""
    largest = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if f"127.0.0.1:{port}".encode() not in (entry / "cmdline").read_bytes():
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    largest = max(largest, int(line.split()[1]))
        except OSError:
            continue  # the process ended meanwhile
    return largest


class PeakMemory:
    """Samples `rss_kib(port)` every 50 ms from a thread; `peak` is the largest seen."""

    def __init__(self, port: int) -> None:
        self.port, self.peak = port, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_kib(self.port))
            self._stop.wait(0.05)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_kib(self.port))


def export_once(session: requests.Session, url: str) -> tuple[int, int, float]:
    """(data rows, bytes, seconds) of one streamed GET, read to the end."""
    started = time.perf_counter()
    rows = size = 0
    with session.get(url, stream=True, timeout=(5, 600)) as response:
        if response.status_code != 200:
            sys.exit(f"GET {url} answered {response.status_code}: {response.text[:500]}")
        for chunk in response.iter_content(READ_BYTES):
            size += len(chunk)
            rows += chunk.count(b"\n")
    # No message of the fill has a line break inside a value: lines are rows, one is the header.
    return rows - 1, size, time.perf_counter() - started


def copy_once(send_id: str) -> tuple[int, float]:
    """(rows, seconds) of a bare COPY of the send's messages, every column, as CSV."""
    started = time.perf_counter()
    rows = 0
    with (
        baseline_connection()
        .cursor()
        .copy(
            "COPY (SELECT * FROM messaging_message WHERE bulk_send_id = %s"
            " ORDER BY bulk_send_id, id) TO STDOUT WITH (FORMAT csv, HEADER true)",
            [send_id],
        ) as copy
    ):
        for _ in copy:
            rows += 1
    return rows - 1, time.perf_counter() - started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages of the big send")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database (reused next run)")
    parser.add_argument("--org", default="BenchExport", help="organization provisioned by `demo`")
    add_service_arguments(
        parser, database="mindo_bench_export", database_variable="BENCH_EXPORT_DATABASE_URL"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    env = {**bench_env(args.database_url, args.redis_url), "PYTHONWARNINGS": "ignore"}
    print(f"database {database}, 1 gunicorn sync worker, load {os.getloadavg()}")
    small: list[tuple[int, int, float, int]] = []
    big: list[tuple[int, int, float, int]] = []
    bare: list[tuple[int, float]] = []
    try:
        demo = provision(env, args.org)
        django_setup(env)
        # fill() keeps `sends` sends of one size: the small send is the big one's first rows.
        (send_id,) = fill(demo, args.org, 1, args.rows)
        with (
            tempfile.TemporaryDirectory(prefix="bench-export-") as log_dir,
            gunicorn("mindo.wsgi", env, 1, Path(log_dir), timeout=600) as base,
            requests.Session() as session,
        ):
            session.headers["X-API-Key"] = demo.api_key
            port = int(urlsplit(base).port or 0)
            wait_ok(session, f"{base}{API}/bulk-sends/{send_id}/")
            export = f"{base}{API}/bulk-sends/{send_id}/messages/export/"
            export_once(session, export)  # untimed: the first answer fills caches
            for round_index in range(args.rounds):
                # The small export: `?status=failed` of the same send is 2% of its rows.
                with PeakMemory(port) as memory:
                    rows, size, seconds = export_once(session, f"{export}?status=failed")
                small.append((rows, size, seconds, memory.peak))
                with PeakMemory(port) as memory:
                    rows, size, seconds = export_once(session, export)
                big.append((rows, size, seconds, memory.peak))
                bare.append(copy_once(send_id))
                print(
                    f"  round {round_index + 1}: {rows:,} rows in {seconds:.2f} s "
                    f"({rows / seconds:,.0f}/s), bare COPY {bare[-1][1]:.2f} s, "
                    f"peak RSS {memory.peak / 1024:.0f} MiB; load {os.getloadavg()}",
                    flush=True,
                )
    finally:
        if args.keep:
            print(f"kept database {database}")
        else:
            database_drop(args.database_url)
    report(small, big, bare)


def report(
    small: list[tuple[int, int, float, int]],
    big: list[tuple[int, int, float, int]],
    bare: list[tuple[int, float]],
) -> None:
    rate = statistics.median(rows / seconds for rows, _, seconds, _ in big)
    bare_rate = statistics.median(rows / seconds for rows, seconds in bare)
    print()
    print(f"CSV export through gunicorn (1 sync worker); load {os.getloadavg()}")
    rows = [
        [
            f"{big[0][0]:,} rows",
            f"{rate:,.0f}",
            f"> {TARGET_ROWS_PER_SECOND:,}",
            "PASS" if rate > TARGET_ROWS_PER_SECOND else "MISS",
            f"{big[0][1] / 1e6:,.0f} MB",
            f"{max(peak for *_, peak in big) / 1024:.0f}",
            f"{bare_rate:,.0f}",
            sig3(rate / bare_rate),
        ],
        [
            f"{small[0][0]:,} rows (?status=failed)",
            f"{statistics.median(rows / seconds for rows, _, seconds, _ in small):,.0f}",
            "",
            "",
            f"{small[0][1] / 1e6:,.1f} MB",
            f"{max(peak for *_, peak in small) / 1024:.0f}",
            "",
            "",
        ],
    ]
    headers = ["export", "rows/s (median)", "target", "result", "size", "peak RSS MiB"]
    print_table([*headers, "bare COPY rows/s", "export/bare"], rows)


if __name__ == "__main__":
    main()
