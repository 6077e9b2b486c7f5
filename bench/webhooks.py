"""How fast Meta's status webhooks are applied, through gunicorn on this machine.

    .venv/bin/python bench/webhooks.py [--posts 10000] [--clients 8] [--configurations sync-4]

Target (issue 8): at least 1,000 single-status webhook POSTs/s applied, counters exact. One POST
of 1,000 statuses is `bench/webhooks_big_post.py`; where one webhook's time goes,
`bench/webhooks_phases.py`.

1. Prepare a dedicated database (`DATABASE_URL`, default `mindo_bench_webhooks`): create and
   migrate it. The bench empties its sends, messages, kept webhooks and deferred statuses, so it
   refuses a database whose name lacks "bench".
2. For each gunicorn configuration, start gunicorn on 127.0.0.1 and a free port with a known
   app secret, and provision a COMPLETED send whose messages are all `sent` with wamids (COPY,
   counters set to match).
3. Build and sign every body before any clock starts: each POST is one `delivered` status for
   a distinct wamid, shaped as Meta sends it (tests/meta_payloads.py).
4. Warm every worker up, then fire the POSTs from several client processes, one connection
   each (kept alive when the server allows it), all released at once when every one is ready;
   stop at the count or at the time limit. Wait until every stored body is applied, then check
   in the database how many messages became `delivered` and that the send's counters equal a
   GROUP BY recount. The CPU used meanwhile by gunicorn and by PostgreSQL is read from /proc.
5. The best configuration again with the statuses spread over several sends (what serializing
   on one send's counter row costs), and with prepared, generically planned statements.
6. Baseline, in the same run: the same bodies, clients and number of sync workers against a
   bare WSGI app that parses each body and marks its message delivered with one UPDATE through
   psycopg (no signature, no kept body, no counters): the floor of applying a status here.
7. With `--callbacks`: the best configuration twice more, first with no customer endpoint, then
   with one endpoint of the send's organization that wants `message.status` (each applied
   status writes its event in the outbox; nothing delivers them here): both figures and their
   ratio. The issue asks the second within 10% of the first.
8. Always stop gunicorn.

Smoke run: `--posts 500 --clients 2 --configurations sync-4 --no-variants --callbacks`.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import baseline_connection, print_table, sig3  # noqa: E402
from bench.webhooks_support import (  # noqa: E402
    CONFIGURATIONS,
    DEFAULT_DATABASE_URL,
    WARMUP_POSTS,
    WHAT_IF_SETTINGS,
    ClientResult,
    Provisioner,
    all_applied,
    database_prepare,
    delivered_bodies,
    failures_of,
    fire,
    gunicorn,
    sends_check,
    server_environment,
)

TARGET_POSTS_PER_SECOND = 1_000
SPREAD_SENDS = 8
DEFAULT_CONFIGURATIONS = "sync-4,sync-8"
BASELINE_APP = "bench.webhooks:baseline_app"


@dataclass
class LoadRun:
    configuration: str
    sends: int
    posts: int
    answered: int
    ok: int
    failures: dict[str, int]
    seconds: float
    delivered: int
    counters_exact: bool
    client_cpu: float
    server_cpu: dict[str, float]

    @property
    def posts_per_second(self) -> float:
        return self.answered / self.seconds

    @property
    def applied_per_second(self) -> float:
        return self.delivered / self.seconds

    @property
    def passed(self) -> bool:
        return (
            self.applied_per_second >= TARGET_POSTS_PER_SECOND
            and self.counters_exact
            and self.delivered == self.posts == self.ok
        )

    def cpu_ms_per_post(self, side: str) -> float:
        return self.server_cpu[side] / max(self.answered, 1) * 1000

    @property
    def cpu_ceiling(self) -> float:
        """POSTs/s this machine's cores could serve at this CPU cost per POST, clients included."""
        clients = self.client_cpu / max(self.answered, 1) * 1000
        per_post = self.cpu_ms_per_post("gunicorn") + self.cpu_ms_per_post("postgres") + clients
        return (os.cpu_count() or 1) * 1000 / per_post if per_post > 0 else math.inf


def load_run(
    name: str,
    env: dict[str, str],
    provisioner: Provisioner,
    args: Any,
    *,
    sends: int = 1,
    what_if: bool = False,
) -> LoadRun:
    per_send = (args.posts + WARMUP_POSTS) // sends + 1
    provisioned = [provisioner.send(per_send) for _ in range(sends)]
    # Interleaved across sends, so consecutive POSTs touch different counter rows.
    wamids = [w for row in zip(*(s.wamids for s in provisioned), strict=True) for w in row]
    warmup = delivered_bodies(wamids[:WARMUP_POSTS])
    bodies = delivered_bodies(wamids[WARMUP_POSTS : WARMUP_POSTS + args.posts])
    with gunicorn(env, CONFIGURATIONS[name], what_if=what_if) as server:
        fire(server, warmup, args.clients)
        all_applied(timeout=60)
        began = time.monotonic()
        posting_seconds, results, cpu = fire(server, bodies, args.clients)
        # Bodies are applied after the answers: the clock stops when the last one is applied.
        all_applied(timeout=120)
        seconds = max(time.monotonic() - began, posting_seconds)
    delivered, exact = sends_check(provisioned)
    label = name + (" (what-if)" if what_if else "")
    return run_of(label, sends, len(bodies), results, seconds, delivered - len(warmup), exact, cpu)


def run_of(
    label: str,
    sends: int,
    posts: int,
    results: list[ClientResult],
    seconds: float,
    delivered: int,
    exact: bool,
    cpu: dict[str, float],
) -> LoadRun:
    return LoadRun(
        configuration=label,
        sends=sends,
        posts=posts,
        answered=sum(r.answered for r in results),
        ok=sum(r.statuses.get(200, 0) for r in results),
        failures=failures_of(results),
        seconds=seconds,
        delivered=delivered,
        counters_exact=exact,
        client_cpu=sum(r.cpu_seconds for r in results),
        server_cpu=cpu,
    )


# --- the baseline app (gunicorn imports this module as bench.webhooks:baseline_app) -------------


def baseline_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """One status applied with the least work: parse the body, one UPDATE, answer 200."""
    if environ["REQUEST_METHOD"] == "GET":  # the readiness check: Meta's handshake
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    value = orjson.loads(body)["entry"][0]["changes"][0]["value"]
    for status in value.get("statuses", []):
        baseline_connection().execute(
            "UPDATE messaging_message SET status = 'delivered', delivered_at = now() "
            "WHERE wamid = %s AND status = 'sent'",
            [status["id"]],
        )
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
    return [b"ok"]


def baseline_run(env: dict[str, str], provisioner: Provisioner, args: Any, name: str) -> LoadRun:
    """The same load against baseline_app, with as many sync workers as configuration `name`."""
    from messaging.models import Message

    workers = CONFIGURATIONS[name][CONFIGURATIONS[name].index("--workers") + 1]
    send = provisioner.send(args.posts + WARMUP_POSTS)
    warmup = delivered_bodies(send.wamids[:WARMUP_POSTS])
    bodies = delivered_bodies(send.wamids[WARMUP_POSTS:])
    with gunicorn(env, ["--workers", workers], app=BASELINE_APP) as server:
        fire(server, warmup, args.clients)
        seconds, results, cpu = fire(server, bodies, args.clients)  # applied when answered
    delivered = Message.objects.filter(bulk_send_id=send.id, status="delivered").count()
    label = f"baseline, {workers} sync workers"
    return run_of(label, 1, len(bodies), results, seconds, delivered - len(warmup), True, cpu)


def callbacks_comparison(
    name: str, env: dict[str, str], provisioner: Provisioner, args: Any
) -> tuple[LoadRun, LoadRun]:
    """Configuration `name` with no customer endpoint, then with one that wants every status."""
    from callbacks.models import CallbackEvent, WebhookEndpoint

    def endpoints_reset() -> None:
        WebhookEndpoint.objects.filter(organization=provisioner.organization).delete()

    endpoints_reset()
    provisioner.reset()
    without = load_run(name, env, provisioner, args)
    without.configuration = f"{name}, no callback endpoint"
    provisioner.reset()
    endpoint = WebhookEndpoint.objects.create(
        organization=provisioner.organization,
        url="http://127.0.0.1:9/bench-callbacks",  # never called: no delivery worker runs here
        events=["message.status"],
        secret="bench-callbacks-secret",
    )
    try:
        with_endpoint = load_run(name, env, provisioner, args)
        with_endpoint.configuration = f"{name}, one callback endpoint"
        recorded = CallbackEvent.objects.filter(endpoint=endpoint).count()
    finally:
        endpoints_reset()  # its events go with it
    if recorded != with_endpoint.delivered + WARMUP_POSTS:
        print(
            f"  !! {recorded:,} events recorded for {with_endpoint.delivered:,} statuses + warm-up"
        )
    return without, with_endpoint


def verdict(run: LoadRun) -> str:
    return "PASS" if run.passed else "MISS"


def load_row(run: LoadRun, baseline: LoadRun) -> list[str]:
    return [
        run.configuration,
        str(run.sends),
        f"{run.posts:,}",
        f"{run.ok:,}",
        ", ".join(f"{k}: {v:,}" for k, v in run.failures.items()) or "none",
        sig3(run.seconds),
        sig3(run.posts_per_second),
        sig3(run.applied_per_second),
        "exact" if run.counters_exact else "WRONG",
        sig3(run.cpu_ms_per_post("gunicorn")),
        sig3(run.cpu_ms_per_post("postgres")),
        f"{sig3(run.client_cpu / run.seconds * 100)}%",
        sig3(run.cpu_ceiling),
        sig3(run.applied_per_second / baseline.applied_per_second),
        "" if "what-if" in run.configuration or run is baseline else verdict(run),
    ]


def main() -> None:
    # A plain SIGTERM would end Python without its `finally` blocks and leave gunicorn running.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=10_000, help="single-status POSTs per run")
    parser.add_argument("--clients", type=int, default=8, help="client processes posting at once")
    parser.add_argument(
        "--configurations",
        default=DEFAULT_CONFIGURATIONS,
        help=f"gunicorn configurations to try, comma separated, of: {', '.join(CONFIGURATIONS)}",
    )
    parser.add_argument("--no-variants", action="store_true", help="skip spread and what-if")
    parser.add_argument(
        "--callbacks",
        action="store_true",
        help="the best configuration with no callback endpoint, then with one: figures and ratio",
    )
    args = parser.parse_args()

    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    if "bench" not in urlsplit(database_url).path:
        sys.exit(f"DATABASE_URL must name a *bench* database, got {database_url}")
    env = server_environment(database_url)
    print(
        f"database {urlsplit(database_url).path.lstrip('/')}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()} before the run"
    )
    database_prepare(env)
    provisioner = Provisioner()

    runs = []
    for name in args.configurations.split(","):
        provisioner.reset()
        runs.append(load_run(name, env, provisioner, args))
        print(f"  {name}: {sig3(runs[-1].applied_per_second)} applied/s", flush=True)
    best = max(runs, key=lambda run: run.applied_per_second).configuration
    if not args.no_variants:
        provisioner.reset()
        runs.append(load_run(best, env, provisioner, args, sends=SPREAD_SENDS))
        print(f"  {best} over {SPREAD_SENDS} sends: {sig3(runs[-1].applied_per_second)}/s")
        provisioner.reset()
        runs.append(load_run(best, env, provisioner, args, what_if=True))
        print(f"  {best}, what-if: {sig3(runs[-1].applied_per_second)}/s", flush=True)
    compared: tuple[LoadRun, LoadRun] | None = None
    if args.callbacks:
        compared = callbacks_comparison(best, env, provisioner, args)
        runs.extend(compared)
        print(f"  {best} with callbacks: {sig3(compared[1].applied_per_second)}/s", flush=True)
    provisioner.reset()
    baseline = baseline_run(env, provisioner, args, best)
    print(f"  baseline: {sig3(baseline.applied_per_second)}/s", flush=True)
    provisioner.reset()

    print()
    print(
        f"Single-status POSTs from {args.clients} client processes; "
        f"target >= {TARGET_POSTS_PER_SECOND:,}/s applied; load average {os.getloadavg()}"
    )
    print("baseline: a bare WSGI app parsing each body and applying it with one UPDATE")
    headers = ["gunicorn", "sends", "posts", "200s", "other answers", "seconds", "POSTs/s"]
    headers += ["applied/s", "counters", "gunicorn CPU ms/POST", "postgres CPU ms/POST"]
    headers += ["clients CPU", "CPU-bound max/s", "applied/base", "verdict"]
    print_table(headers, [load_row(run, baseline) for run in [*runs, baseline]])
    if not args.no_variants:
        print(f"what-if: {WHAT_IF_SETTINGS.strip()}")
    if compared is not None:
        without, with_endpoint = compared
        ratio = with_endpoint.applied_per_second / without.applied_per_second
        print(
            f"callbacks: {sig3(without.applied_per_second)}/s applied with no endpoint, "
            f"{sig3(with_endpoint.applied_per_second)}/s with one; ratio {ratio:.3f} "
            f"({'within' if ratio >= 0.9 else 'NOT within'} 10%)"
        )


if __name__ == "__main__":
    main()
