"""What one limiter call costs on each Redis the service can use: calls a second from one client,
against a plain Redis with only the tagged key (the baseline), a plain Redis keeping the legacy
keys in step (what a plain deployment runs: messaging.ratelimit) and a three-master Redis
Cluster, all started by this script on free ports (the shared Redis is not touched).

    .venv/bin/python bench/limiter_redis.py [--seconds S] [--numbers N] [--rounds R]

Each call is `acquire(number, rate, 1, stop_keys=<the send's marks>)` at a rate no call reaches
(every permit granted: the script's whole path), round-robin over N numbers (spread over the
cluster's slots). One client, one thread: the figure is a round trip plus the script, the cost a
drain pays per batch of permits. R rounds of S seconds (5 of 5), each Redis in turn; the median of
each, and its ratio to the baseline's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis
from redis.cluster import RedisCluster

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")

import django  # noqa: E402

django.setup()

from bench.support import free_port, print_table, sig3  # noqa: E402
from messaging.ratelimit import RateLimiter  # noqa: E402

RATE = 1_000_000


def server(directory: Path, port: int, *options: str) -> subprocess.Popen[bytes]:
    executable = shutil.which("redis-server") or sys.exit("redis-server is not installed")
    process = subprocess.Popen(
        [
            executable,
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
            *("--save", "", "--appendonly", "no", "--daemonize", "no", *options),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(port=port)
    deadline = time.monotonic() + 30
    while True:
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextmanager
def servers() -> Iterator[tuple[str, str]]:
    """A plain Redis and a three-master cluster; their URLs."""
    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as scratch:
        try:
            plain = free_port()
            processes.append(server(Path(scratch), plain))
            ports = []
            for _ in range(3):
                port = free_port()
                directory = Path(scratch) / str(port)
                directory.mkdir()
                cluster_options = ("--cluster-enabled", "yes", "--cluster-port", str(free_port()))
                processes.append(server(directory, port, *cluster_options))
                ports.append(port)
            subprocess.run(
                [
                    "redis-cli",
                    "--cluster",
                    "create",
                    *(f"127.0.0.1:{p}" for p in ports),
                    "--cluster-yes",
                ],
                check=True,
                capture_output=True,
            )
            while b"cluster_state:ok" not in redis.Redis(port=ports[0]).execute_command(
                "CLUSTER", "INFO"
            ):
                time.sleep(0.1)
            yield f"redis://127.0.0.1:{plain}", f"redis://127.0.0.1:{ports[0]}"
        finally:
            for process in processes:
                process.kill()
                process.wait()


def calls_per_second(limiter: RateLimiter, numbers: list[str], seconds: float) -> float:
    marks = {n: (f"bulksend:stopped:{{{n}}}:send", "bulksend:stopped:send") for n in numbers}
    if not limiter.legacy_keys:
        marks = {n: keys[:1] for n, keys in marks.items()}
    for number in numbers:  # the script loaded, the cluster's layout learned
        limiter.acquire(number, RATE, 1, stop_keys=marks[number])
    calls = 0
    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        for number in numbers:
            limiter.acquire(number, RATE, 1, stop_keys=marks[number])
        calls += len(numbers)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--numbers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    numbers = [f"1{index:08d}" for index in range(args.numbers)]
    with servers() as (plain_url, cluster_url):
        plain = redis.Redis.from_url(plain_url)
        limiters = {
            "plain, tagged key only (baseline)": RateLimiter(plain),
            "plain, legacy keys in step": RateLimiter(plain, legacy_keys=True),
            "cluster, 3 masters": RateLimiter(RedisCluster.from_url(cluster_url)),
        }
        # Rounds in turn, the median of each: a load that comes and goes touches all alike.
        rounds: dict[str, list[float]] = {name: [] for name in limiters}
        for _ in range(args.rounds):
            for name, limiter in limiters.items():
                rounds[name].append(calls_per_second(limiter, numbers, args.seconds))
    figures = [(name, statistics.median(rates)) for name, rates in rounds.items()]
    baseline = figures[0][1]
    print_table(
        ["Redis", "limiter calls/s", "ratio to baseline"],
        [[name, sig3(rate), f"{rate / baseline:.2f}"] for name, rate in figures],
    )


if __name__ == "__main__":
    main()
