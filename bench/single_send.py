"""Single sends (POST send/) per second through gunicorn against the sandbox, and the latency the
service adds over the sandbox's own answer.

    .venv/bin/python bench/single_send.py [--requests 300] [--clients 4] [--workers 2]

1. Start the Meta sandbox as its own process (no rate limit, no webhooks, no failures), provision
   the demo organization in the bench database and register it with the sandbox; the demo's
   number gets a rate no client here can reach and its portfolio an unlimited tier, so that the
   limiter and the quota gate are asked on every send but never hold one back.
2. Latency: `--requests` sequential sends, each followed by the baseline: a bare `requests`
   session posting the very Graph request the service sent (read back from the sandbox) to the
   same sandbox. The added latency is the send's median minus the baseline's.
3. Throughput: `--clients` threads send `--requests` sends in all, then post as many baseline
   requests the same way; sends per second beside the baseline's requests per second.
Nothing is asserted: the target is an added latency under 15 ms at the median.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.accept_support import service_env, wait_ready  # noqa: E402
from bench.support import (  # noqa: E402
    TEMPLATE,
    Demo,
    django_setup,
    free_port,
    gunicorn,
    print_table,
    provision,
    sandbox_register,
    sig3,
    stop_process_group,
)
from meta.graph_version import GRAPH_VERSION  # noqa: E402

SEND = "/api/v1/meta-templates/send/"
TARGET_ADDED_MS = 15.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="sends per phase")
    parser.add_argument("--clients", type=int, default=4, help="threads of the throughput phase")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--org", default="BenchSingle", help="organization provisioned by `demo`")
    parser.add_argument("--port", type=int, default=0, help="gunicorn's port (0: any free one)")
    parser.add_argument("--sandbox-port", type=int, default=0, help="0: any free one")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/mindo_bench_single"
        ),
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    return parser.parse_args()


def sandbox_start(port: int, env: dict[str, str], log_dir: Path) -> subprocess.Popen[bytes]:
    args = [
        *(sys.executable, "-m", "meta_sandbox", "--host", "127.0.0.1", "--port", str(port)),
        *("--webhook-url", "", "--rate-per-number", "0", "--fail-suffix", ""),
        *("--state-file", "", "--app-secret", env["META_APP_SECRET"]),
    ]
    log = (log_dir / "sandbox.log").open("wb")
    return subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def sandbox_wait(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/_sandbox/stats", timeout=5).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    sys.exit(f"the sandbox at {url} did not start in {timeout:.0f} s")


def number_unbounded(demo: Demo) -> str:
    """Let the demo's number and portfolio never hold a send back; its access token."""
    from templates_app.models import PhoneNumber

    number = PhoneNumber.objects.select_related("business_account").get(
        phone_number_id=demo.phone_number_id
    )
    number.throughput_per_second = 1000  # the most a number may have
    number.save(update_fields=["throughput_per_second"])
    account = number.business_account
    account.messaging_limit_tier = "TIER_UNLIMITED"
    account.save(update_fields=["messaging_limit_tier"])
    return str(account.access_token)


def phone(n: int) -> str:
    return f"+5491170{n:06d}"


def send_body(demo: Demo, n: int) -> bytes:
    return orjson.dumps(
        {
            "phone_number_id": demo.phone_number_id,
            "template_name": TEMPLATE,
            "language": demo.language,
            "recipient_phone": phone(n),
            "variables": {"name": f"Cliente {n}", "code": f"S{n}"},
            "button_variables": {"button_0": f"S-{n}"},
        }
    )


class Clients:
    """One keep-alive session per thread, for the service and for the baseline."""

    def __init__(self, base: str, meta: str, demo: Demo, token: str, graph_body: Any) -> None:
        self.base, self.meta, self.demo = base, meta, demo
        self.graph_url = f"{meta}/{GRAPH_VERSION}/{demo.phone_number_id}/messages"
        self.graph_headers = {"Authorization": f"Bearer {token}"}
        self.graph_body = graph_body
        self.local = threading.local()

    def _session(self, name: str) -> requests.Session:
        session = getattr(self.local, name, None)
        if session is None:
            session = requests.Session()
            setattr(self.local, name, session)
        return session

    def send(self, n: int) -> float:
        started = time.perf_counter()
        response = self._session("service").post(
            self.base + SEND,
            data=send_body(self.demo, n),
            headers={"X-API-Key": self.demo.api_key, "Content-Type": "application/json"},
            timeout=30,
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            sys.exit(f"send {n} answered {response.status_code}: {response.text[:500]}")
        return elapsed

    def baseline(self, n: int) -> float:
        body = {**self.graph_body, "to": phone(n).lstrip("+")}
        started = time.perf_counter()
        response = self._session("baseline").post(
            self.graph_url, json=body, headers=self.graph_headers, timeout=30
        )
        elapsed = time.perf_counter() - started
        if response.status_code != 200:
            sys.exit(f"baseline {n} answered {response.status_code}: {response.text[:500]}")
        return elapsed


def throughput(work: Callable[[int], float], start: int, count: int, clients: int) -> float:
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(work, range(start, start + count)))
    return count / (time.perf_counter() - started)


@contextlib.contextmanager
def bench_set_up(
    database_url: str, redis_url: str, org: str, sandbox_port: int = 0
) -> Iterator[tuple[dict[str, str], str, Demo, str, Path]]:
    """The sandbox running, the demo organization `org` provisioned and registered with it,
    Django set up in this process: yields the servers' environment, the sandbox's URL, the demo,
    its number's access token and a directory for logs; stops the sandbox after."""
    sandbox_port = sandbox_port or free_port()
    meta = f"http://127.0.0.1:{sandbox_port}"
    env = {
        **service_env(database_url, redis_url),
        "META_GRAPH_URL": meta,
        "API_THROTTLE_SINGLE_RATE": "1000000/min",
        "API_THROTTLE_READ_RATE": "1000000/min",
        "PYTHONWARNINGS": "ignore",
    }
    with tempfile.TemporaryDirectory(prefix="bench-single-") as log_dir:
        sandbox = sandbox_start(sandbox_port, env, Path(log_dir))
        try:
            sandbox_wait(meta)
            demo = provision(env, org)
            django_setup(env)
            sandbox_register(meta, demo.phone_number_id)
            token = number_unbounded(demo)
            yield env, meta, demo, token, Path(log_dir)
        finally:
            stop_process_group(sandbox)


def main() -> None:
    # A plain SIGTERM would end Python without its `finally` blocks and leave servers running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    args = parse_args()
    print(f"{args.workers} gunicorn sync workers, load {os.getloadavg()}")
    with (
        bench_set_up(args.database_url, args.redis_url, args.org, args.sandbox_port) as (
            env,
            meta,
            demo,
            token,
            log_dir,
        ),
        gunicorn("mindo.wsgi", env, args.workers, log_dir, port=args.port) as base,
    ):
        wait_ready(base, demo.api_key, log_dir)
        results = measure(args, base, meta, demo, token)
    report(args, results)


def measure(
    args: argparse.Namespace, base: str, meta: str, demo: Demo, token: str
) -> dict[str, Any]:
    warm = Clients(base, meta, demo, token, graph_body={})
    for n in range(args.workers * 4):  # every worker's Django, key cache and Meta connection
        warm.send(900_000 + n)
    listing = requests.get(f"{meta}/_sandbox/messages", timeout=30).json()["messages"]
    clients = Clients(base, meta, demo, token, graph_body=listing[-1]["request_body"])
    sends, baselines = [], []
    for n in range(args.requests):
        sends.append(clients.send(n))
        baselines.append(clients.baseline(n))
    return {
        "sends": sends,
        "baselines": baselines,
        "rate": throughput(clients.send, 100_000, args.requests, args.clients),
        "baseline_rate": throughput(clients.baseline, 100_000, args.requests, args.clients),
    }


def p90(times: list[float]) -> float:
    return statistics.quantiles(times, n=10)[-1]


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    sends = [s * 1000 for s in results["sends"]]
    baselines = [s * 1000 for s in results["baselines"]]
    added = statistics.median(sends) - statistics.median(baselines)
    print()
    print(f"Sequential single sends, {args.requests} each, milliseconds; load {os.getloadavg()}")
    timed = (("POST send/", sends), ("baseline: Graph POST to the sandbox", baselines))
    print_table(
        ["request", "median", "p90", "max"],
        [[name, *(sig3(f(t)) for f in (statistics.median, p90, max))] for name, t in timed],
    )
    verdict = "pass" if added < TARGET_ADDED_MS else "miss"
    print(f"added at the median: {sig3(added)} ms (target < {TARGET_ADDED_MS:g} ms: {verdict})")
    print()
    print_table(
        ["clients", "single sends/s", "baseline requests/s", "ratio"],
        [
            [
                str(args.clients),
                sig3(results["rate"]),
                sig3(results["baseline_rate"]),
                sig3(results["rate"] / results["baseline_rate"]),
            ]
        ],
    )


if __name__ == "__main__":
    main()
