"""A bulk send drained from two worker hosts, and one of them cut off mid-send: the driver of
bench/multihost.sh, which builds the hosts (network namespaces on a bridge) and runs this in the
root namespace.

    sudo bench/multihost.sh [--recipients 100000] [--rate 1000] [--scenario a|b|both]
        [--lease-seconds 20] [--grace-seconds 15] [--reaper-seconds 2] [--cut-at 0.3]
        [--keep-database]

The hosts: `web` runs gunicorn (mindo.wsgi) and beat's part (the reaper, `bulksend.tasks.reap`,
every --reaper-seconds, as a loop of this script: nothing periodic the bench did not start); `w1`
and `w2` a Celery worker each (prefork, one child, DELIVERY_PACING on). In the root namespace,
on the bridge address: PgBouncer (session mode) in front of the machine's PostgreSQL, a
redis-server of the bench's own (broker, limiter, drain marks), and the Meta sandbox, unlimited
so that it records whatever comes, posting its status webhooks to the web host.

Scenario A: one send of --recipients to one number whose rate is --rate (throughput_per_second),
accepted through the web host, drained by both worker hosts at once (the service's wake-up and a
second one, as drain_unpaced.py does). From the sandbox's record of arrivals: the most in any
sliding 1-s window (target <= the rate), the mean rate after the first 2 s (target within 2% of
the rate), messages sent twice (0), lost (0: every recipient reached the sandbox and the send is
COMPLETED), the stored counters against a recount (exact), and what each worker host sent (from
its log's batch lines; what a cut host had in flight is not in its log).

Scenario B: the same, and once --cut-at of the recipients have reached the sandbox, the second
worker host's link is set down on the bridge side (its packets vanish; it is not told). The
other host finishes the send; the cut host's leases run out (--lease-seconds) and the reaper
gives its messages back on Meta's evidence (statuses of the number --grace-seconds past the
lease, none naming them), or Meta's `sent` webhook settles those it had taken. As soon as the
send is COMPLETED the link comes back up; the figures are read --after-up-seconds later at the
earliest, and one more row counts what reached the sandbox after the link was up (all of it
sent twice: a request the cut host's kernel still held, see meta.graph's TCP_USER_TIMEOUT).

Leases, grace and the reaper's interval are shorter than production's (120 s, 60 s, 10 s) so
that a cut host's messages come back while the other host still sends; the sandbox's `read`
statuses come --lease-seconds + --grace-seconds + 5 s after each message, so that the number's
webhooks go on past the last send, as real users' reads do. PgBouncer ends a transaction whose
client stopped talking after --idle-transaction-seconds: a host cut off inside a transaction
holds its row locks (the send's row among them) until its session ends.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.drain_support import (  # noqa: E402
    PACING_BASES,
    accept,
    max_in_one_second,
    number_configure,
    sandbox_reset,
    say,
    send_body,
    send_state,
    sends_cancel_active,
    sends_reset,
    wake_up,
)
from bench.multihost_cluster import (  # noqa: E402
    Cluster,
    Host,
    cluster_started,
    link_set,
    reaper_loop,
)
from bench.multihost_readings import (  # noqa: E402
    WARMUP_SECONDS,
    Outcome,
    counters_snapshot,
    sandbox_json,
    send_row,
    sent_by_host,
    steady_mean,
    wait_finished,
    webhooks_settle,
)
from bench.support import (  # noqa: E402
    bench_database_from_args,
    database_drop,
    print_table,
    sig3,
)

DEFAULT_DATABASE = "mindo_bench_multihost"
RATE_TOLERANCE = 0.02


# --- one scenario -------------------------------------------------------------------------------


def run_scenario(cluster: Cluster, args: argparse.Namespace, scenario: str) -> Outcome:
    demo, meta = cluster.demo, cluster.meta
    size, rate = args.recipients, args.rate
    say(
        f"scenario {scenario.upper()}: {size:,} recipients at {rate}/s from "
        f"{len(cluster.workers)} worker hosts"
    )
    sends_reset()
    sandbox_reset(meta)
    number_configure(demo.phone_number_id, throughput=rate)
    body = send_body(demo, size, PACING_BASES[0])
    started = time.monotonic()
    with requests.Session() as session:
        bulk_send_id = accept(session, cluster.web, demo, body, size)
    accept_seconds = time.monotonic() - started
    del body
    # The service's wake-up starts one drain; a second one puts the other host on the send too.
    for _ in cluster.workers[1:]:
        wake_up(bulk_send_id)
    say(f"  accepted {bulk_send_id} in {accept_seconds:.2f} s through the web host")

    notes: list[str] = []
    cut: Host | None = None
    if scenario == "b":
        cut = cluster.workers[-1][0]
        threshold = int(size * args.cut_at)
        deadline = time.monotonic() + args.timeout
        while sandbox_json(meta, "stats")["accepted"] < threshold:
            if time.monotonic() > deadline:
                sys.exit(
                    f"fewer than {threshold} messages reached the sandbox in {args.timeout:g} s"
                )
            time.sleep(0.05)
        link_set(cut.link, "down")
        cut_at = time.time()
        from messaging.models import Message, MessageStatus

        held = Message.objects.filter(
            bulk_send_id=uuid.UUID(bulk_send_id), status=MessageStatus.SENDING
        ).count()
        say(
            f"  cut {cut.name} off ({cut.link} down) at {threshold:,} arrivals; "
            f"{held} messages were claimed by a drain at that moment"
        )
        notes.append(
            f"{cut.name} cut off after {threshold:,} arrivals, {held} messages then held by drains"
        )

    timeout = args.timeout + size / rate * 2
    finished = wait_finished(bulk_send_id, timeout)
    if not finished:
        say(f"  not finished in {timeout:.0f} s: {send_state(bulk_send_id)}")
    status, _, _, completed_at = send_row(bulk_send_id)
    up_at: float | None = None
    if cut is not None:
        # Up as soon as the other host has finished: whatever the cut host's kernel still holds
        # for Meta would arrive now, while the connections it was written to are still open.
        link_set(cut.link, "up")
        up_at = time.time()
        say(f"  the send is {status} {up_at - cut_at:.1f} s after the cut; {cut.name}'s link is up")
    # Every status the sandbox owes (the reads come late) applied before the counters are read.
    if not webhooks_settle(meta, timeout=args.lease_seconds + args.grace_seconds + 120):
        notes.append("the sandbox still owed webhooks when the counters were read")
    if up_at is not None:
        time.sleep(max(0.0, up_at + args.after_up_seconds - time.time()))
    time.sleep(1.0)  # the web host applies a body right after answering it
    counters, retried = counters_snapshot(bulk_send_id)

    listing = sandbox_json(meta, f"messages?phone_number_id={demo.phone_number_id}")
    records = listing["messages"]
    recipients = Counter(m["to"] for m in records)
    duplicates = max(int(listing["duplicate_sends"]), sum(n - 1 for n in recipients.values()))
    sent_in_db = counters["sent_count"][1]
    lost = max(size - len(recipients), size - sent_in_db)
    arrivals = sorted(float(m["received_at"]) for m in records)
    # The paced stream: what came before the link was up again.
    times = [t for t in arrivals if up_at is None or t < up_at]
    mean, steady = steady_mean(times)
    stats = sandbox_json(meta, "stats")
    drain_seconds = (
        completed_at.timestamp() - times[0] if completed_at is not None and times else 0.0
    )
    outcome = Outcome(
        scenario=scenario,
        size=size,
        rate=rate,
        status=status,
        accept_seconds=accept_seconds,
        drain_seconds=drain_seconds,
        max_window=max_in_one_second(arrivals),
        sandbox_max=int(stats["max_sends_in_one_second"].get(demo.phone_number_id, 0)),
        mean=mean,
        steady=steady,
        duplicates=duplicates,
        lost=lost,
        counters=counters,
        per_host=sent_by_host(cluster.workers, bulk_send_id),
        retried=retried,
        notes=notes,
    )
    if up_at is not None:
        outcome.arrived_after_up = sum(1 for t in arrivals if t >= up_at)
        for to, count in recipients.items():
            if count > 1:
                moments = sorted(float(m["received_at"]) for m in records if m["to"] == to)
                offsets = ", ".join(f"{moment - cut_at:+.1f} s" for moment in moments)
                say(f"  {to} reached the sandbox {count} times: at {offsets} from the cut")
    return outcome


def report(outcome: Outcome) -> None:
    rate = outcome.rate
    floor, ceiling = rate * (1 - RATE_TOLERANCE), rate * (1 + RATE_TOLERANCE)
    exact = all(stored == recounted for stored, recounted in outcome.counters.values())
    per_host = ", ".join(f"{name} {count:,}" for name, count in outcome.per_host.items())
    unattributed = outcome.counters["sent_count"][1] - sum(outcome.per_host.values())

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    rows = [
        ["send's status", outcome.status, "COMPLETED", verdict(outcome.status == "COMPLETED")],
        [
            "largest count in a sliding 1-s window (the sandbox's record)",
            str(outcome.max_window),
            f"<= {rate}",
            verdict(outcome.max_window <= rate),
        ],
        [
            "same, the sandbox's own count",
            str(outcome.sandbox_max),
            f"<= {rate}",
            verdict(outcome.sandbox_max <= rate),
        ],
        [
            f"mean rate after the first {WARMUP_SECONDS:g} s ({outcome.steady:,} arrivals), msg/s",
            f"{outcome.mean:.1f}",
            f"{floor:g} to {ceiling:g}",
            verdict(floor <= outcome.mean <= ceiling),
        ],
        [
            "mean rate / the number's rate (baseline)",
            f"{outcome.mean / rate:.3f}",
            "0.98 to 1.02",
            "",
        ],
        ["messages sent twice", str(outcome.duplicates), "0", verdict(outcome.duplicates == 0)],
        ["messages lost", str(outcome.lost), "0", verdict(outcome.lost == 0)],
        [
            "counters stored = recounted",
            "exact" if exact else "differ",
            "exact",
            verdict(exact),
        ],
        [
            "sent per worker host (their batch lines)",
            per_host,
            "both > 0",
            verdict(all(outcome.per_host.values())),
        ],
        ["sent, in no batch line (a batch cut off in flight)", str(unattributed), "", ""],
        [
            "messages sent on a second attempt (given back by the reaper)",
            str(outcome.retried),
            "",
            "",
        ],
        [
            "accepting the send (POST send-bulk to the web host)",
            f"{sig3(outcome.accept_seconds)} s",
            "",
            "",
        ],
        ["first arrival to completed_at", f"{sig3(outcome.drain_seconds)} s", "", ""],
    ]
    if outcome.arrived_after_up is not None:
        rows.append(
            [
                "arrivals once the cut host's link was up again (all sent by then)",
                str(outcome.arrived_after_up),
                "0",
                verdict(outcome.arrived_after_up == 0),
            ]
        )
    print()
    title = {"a": "both worker hosts", "b": "one worker host cut off mid-send"}[outcome.scenario]
    print(
        f"Scenario {outcome.scenario.upper()}, {title}: {outcome.size:,} recipients to one "
        f"number at {rate}/s"
    )
    print_table(["measure", "value", "target", "result"], rows)
    if outcome.notes:
        print("; ".join(outcome.notes))
    differing = {k: v for k, v in outcome.counters.items() if v[0] != v[1]}
    if differing:
        print(f"counters (stored, recounted) that differ: {differing}")
    sys.stdout.flush()


# --- the command line ---------------------------------------------------------------------------


def parser_build() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--rate", type=int, default=1_000, help="the number's messages/s (<= 1000)")
    parser.add_argument("--scenario", choices=("a", "b", "both"), default="both")
    parser.add_argument(
        "--cut-at", type=float, default=0.3, help="B: share of arrivals before the cut"
    )
    parser.add_argument("--lease-seconds", type=int, default=20, help="DELIVERY_LEASE_SECONDS")
    parser.add_argument(
        "--grace-seconds",
        type=int,
        default=15,
        help="DELIVERY_CALLBACK_GRACE_SECONDS (at least META_HTTP_TIMEOUT_SECONDS, 10)",
    )
    parser.add_argument("--reaper-seconds", type=float, default=2.0, help="the reaper's interval")
    parser.add_argument("--idle-transaction-seconds", type=int, default=10, help="PgBouncer's")
    parser.add_argument("--after-up-seconds", type=float, default=15.0)
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn sync workers")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds, added to twice the send's"
    )
    parser.add_argument("--keep-database", action="store_true", help="do not drop it at the end")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "BENCH_DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{DEFAULT_DATABASE}"
        ),
        help="the bench's own database, on the machine's PostgreSQL (the driver's connection)",
    )
    parser.add_argument("--bridge-address", required=True, help="(given by multihost.sh)")
    parser.add_argument("--web", type=Host.parse, required=True, help="(given by multihost.sh)")
    parser.add_argument(
        "--worker", type=Host.parse, action="append", required=True, help="(given by multihost.sh)"
    )
    return parser


def main() -> None:
    if sys.argv[1:2] == ["reaper"]:
        reaper_parser = argparse.ArgumentParser(prog="multihost.py reaper")
        reaper_parser.add_argument("--interval", type=float, default=2.0)
        reaper_loop(reaper_parser.parse_args(sys.argv[2:]).interval)
        return
    args = parser_build().parse_args()
    if not 1 <= args.rate <= 1_000:
        sys.exit("--rate: 1 to 1000 (a number's throughput_per_second)")
    if len(args.worker) < 2 or any(not host.link for host in args.worker):
        sys.exit("two --worker hosts, each with its link, are needed")
    if os.geteuid() != 0:
        sys.exit("run through bench/multihost.sh, as root")
    database = bench_database_from_args(args)
    scenarios = ["a", "b"] if args.scenario == "both" else [args.scenario]
    logs = Path(tempfile.mkdtemp(prefix="mindo-multihost-"))
    logs.chmod(0o755)
    say(f"database {database}, {os.cpu_count()} CPUs, logs in {logs}")
    try:
        with cluster_started(args, database, logs) as cluster:
            outcomes = [run_scenario(cluster, args, scenario) for scenario in scenarios]
            sends_cancel_active()
    finally:
        for host in args.worker:  # a link left down by an interrupted scenario B
            with contextlib.suppress(subprocess.CalledProcessError):
                link_set(host.link, "up")
        if not args.keep_database:
            with contextlib.suppress(Exception):
                database_drop(args.database_url)
    for outcome in outcomes:
        report(outcome)
    say(f"logs: {logs}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # everything was stopped on the way out
        sys.exit("multihost.py: interrupted")
