"""Unpaced, how fast the delivery engine drains a send to the Meta sandbox, against a bare
aiohttp client sending the same messages to the same sandbox in the same run.

    .venv/bin/python bench/drain_unpaced.py [--rounds N] [--recipients N] [--configs 1x1,2x1,2x2]
        [--no-webhooks] [--meta-latency SECONDS]

Targets: at least 1,000 messages/s end to end on a 2-core machine, and at
least 0.9 of the bare client's rate in the same run.

The number is made unlimited (portfolio tier TIER_UNLIMITED, 1,000/s, so the drain's batch is
DELIVERY_BATCH_SIZE), the sandbox has no rate and the workers run with DELIVERY_PACING=false. Each
round accepts a send of --recipients (10,000) through POST /send-bulk/ and times it from the 202
to COMPLETED with sent_count == recipients (the database is polled every 100 ms; the end is the
send's own `completed_at`). Worker configurations (--configs) are written CxW: C = `--concurrency`
of the worker, W = drains on the send. The service publishes one wake-up per send, so W > 1 adds
wake-ups from the bench, to show what a second process working on the same send would bring.

In the same round, after the webhooks of the engine's send are settled: a bare aiohttp client
(one keep-alive session, DELIVERY_CONCURRENCY requests in flight, bodies built and encoded before
the clock starts) sends the same number of template messages straight to the same sandbox
process: the HTTP ceiling on this machine, against which the engine's rate is given as a ratio.
Its messages carry no callback data of ours, so their webhooks are kept as deferred statuses and
never touch the engine's messages. A second table gives the CPU seconds per 1,000 messages of
each process group, read from /proc, and how many cores they kept busy on average, for the
engine's run and for the bare client's (its own process under "workers"): with every core busy
in both, their totals' ratio is the most the engine/bare ratio can be on this machine.

--meta-latency S has the sandbox answer each accepted send S seconds late, for both runs: with
Meta's answer time, not the CPU, bounding both, the ratio says how busy a drain keeps its
DELIVERY_CONCURRENCY connections.

The services are those of bench/drain_support.py; nothing is asserted: the tables print PASS or
MISS.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.drain_bare import bare_bodies, bare_send  # noqa: E402
from bench.drain_processes import celery_workers, cpu_between, cpu_used  # noqa: E402
from bench.drain_support import (  # noqa: E402
    ENGINE_BASE,
    UNLIMITED_THROUGHPUT,
    Services,
    accept,
    add_arguments,
    number_configure,
    sandbox_get,
    sandbox_reset,
    say,
    send_body,
    send_state,
    sends_cancel_active,
    sends_reset,
    services,
    wait_finished,
    wake_up,
    webhooks_settle,
)
from bench.support import Demo, print_table, sig3  # noqa: E402

TARGET_MESSAGES_PER_SECOND = 1_000
TARGET_BARE_RATIO = 0.9


@dataclass(frozen=True)
class Config:
    concurrency: int
    drains: int

    @property
    def label(self) -> str:
        return f"{self.concurrency}x{self.drains}"

    @classmethod
    def parse(cls, text: str) -> Config:
        concurrency, _, drains = text.strip().partition("x")
        config = cls(int(concurrency), int(drains or 1))
        if not 1 <= config.drains <= config.concurrency:
            sys.exit(f"--configs {text}: W drains need at least W worker processes")
        return config


@dataclass
class ThroughputRuns:
    engine: list[float] = field(default_factory=list)  # messages/s, 202 to COMPLETED
    drain: list[float] = field(default_factory=list)  # messages/s, started_at to completed_at
    pickup: list[float] = field(default_factory=list)  # seconds, 202 to started_at
    bare: list[float] = field(default_factory=list)  # requests/s, bare aiohttp
    # CPU seconds per 1,000 messages by process group, 202 to COMPLETED (the accept included).
    cpu: list[dict[str, float]] = field(default_factory=list)
    # The same for the bare client's run; its own process's CPU under "workers".
    bare_cpu: list[dict[str, float]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def throughput_round(
    config: Config,
    runs: ThroughputRuns,
    *,
    web: str,
    meta: str,
    demo: Demo,
    body: bytes,
    bare: list[bytes],
    size: int,
    timeout: float,
) -> None:
    from django.conf import settings

    sends_reset()
    sandbox_reset(meta)
    cpu_before = cpu_used()
    with requests.Session() as session:
        bulk_send_id = accept(session, web, demo, body, size)
    accepted_at = time.time()
    for _ in range(config.drains - 1):
        wake_up(bulk_send_id)
    finished = wait_finished(bulk_send_id, timeout)
    cpu_after = cpu_used()
    if finished is None:
        runs.problems.append(
            f"{config.label}: not finished in {timeout:.0f} s: {send_state(bulk_send_id)}; "
            f"sandbox {sandbox_get(meta, 'stats')}"
        )
        sends_cancel_active()
        return
    stats = sandbox_get(meta, "stats")
    if finished.status != "COMPLETED" or finished.sent != size:
        runs.problems.append(
            f"{config.label}: {finished.status} with {finished.sent} sent, {finished.failed} "
            f"failed; sandbox {stats['accepted']} accepted, {stats['rejected_by_code']} refused"
        )
        return
    if stats["accepted"] != size or stats["rejected_by_code"]:
        runs.problems.append(
            f"{config.label}: sandbox {stats['accepted']} accepted, {stats['rejected_by_code']}"
        )
    from messaging.models import Message

    retried = Message.objects.filter(bulk_send_id=uuid.UUID(bulk_send_id), attempts__gt=1).count()
    if retried:
        runs.problems.append(f"{config.label}: {retried} messages needed more than one attempt")
    seconds = finished.completed_at - accepted_at
    spent = cpu_between(cpu_before, cpu_after)
    runs.cpu.append({name: used * 1000 / size for name, used in spent.items()})
    runs.engine.append(size / seconds)
    runs.drain.append(size / (finished.completed_at - finished.started_at))
    runs.pickup.append(finished.started_at - accepted_at)
    say(
        f"  {config.label}: {size / seconds:,.0f} messages/s (202 to COMPLETED {seconds:.2f} s, "
        f"started {finished.started_at - accepted_at:+.2f} s after the 202, sandbox accepted "
        f"{stats['accepted']:,})"
    )

    # The bare client, once the engine's webhooks are settled, against the same sandbox.
    webhooks_settle(meta)
    sandbox_reset(meta)
    cpu_before, client_before = cpu_used(), time.process_time()
    elapsed, ok = asyncio.run(bare_send(meta, demo, bare, settings.DELIVERY_CONCURRENCY))
    spent = cpu_between(cpu_before, cpu_used())
    # The bare client runs in this process: its CPU stands where the engine's workers' does.
    spent["workers"] = time.process_time() - client_before
    runs.bare_cpu.append({name: used * 1000 / len(bare) for name, used in spent.items()})
    if ok != len(bare):
        runs.problems.append(f"{config.label}: bare client got {ok} of {len(bare)} answers 200")
    runs.bare.append(len(bare) / elapsed)
    say(f"  bare aiohttp: {len(bare) / elapsed:,.0f} requests/s")
    webhooks_settle(meta)


def throughput(args: argparse.Namespace, run: Services) -> dict[Config, ThroughputRuns]:
    env, demo, web, meta, logs = run.env, run.demo, run.web, run.meta, run.logs
    number_configure(demo.phone_number_id, throughput=UNLIMITED_THROUGHPUT)
    if args.meta_latency:
        # Every accepted send answered that much later, for the engine and the bare client alike.
        change = {"slow_share": 1.0, "slow_seconds": args.meta_latency}
        requests.post(f"{meta}/_sandbox/config", json=change, timeout=30).raise_for_status()
    body = send_body(demo, args.recipients, ENGINE_BASE)
    warm_body = send_body(demo, 200, ENGINE_BASE)
    bare = bare_bodies(demo, args.recipients)
    results: dict[Config, ThroughputRuns] = {}
    for config in args.configs:
        if time.monotonic() > run.deadline:
            say("--max-seconds reached: configurations skipped")
            break
        runs = results[config] = ThroughputRuns()
        say(f"(a) throughput, worker --concurrency {config.concurrency}, {config.drains} drain(s)")
        with celery_workers(env, logs, count=1, concurrency=config.concurrency, pacing=False):
            # Off the clock: small sends at once, one per pool process, so none starts cold.
            sends_reset()
            with requests.Session() as session:
                warm_ids = [
                    accept(session, web, demo, warm_body, 200) for _ in range(config.concurrency)
                ]
            for warm_id in warm_ids:
                wait_finished(warm_id, 60)
            webhooks_settle(meta)
            for _ in range(args.rounds):
                if time.monotonic() > run.deadline:
                    say("--max-seconds reached: fewer rounds")
                    break
                throughput_round(
                    config,
                    runs,
                    web=web,
                    meta=meta,
                    demo=demo,
                    body=body,
                    bare=bare,
                    size=args.recipients,
                    timeout=args.round_timeout,
                )
            sends_cancel_active()
    return results


def throughput_report(results: dict[Config, ThroughputRuns], size: int, latency: float) -> None:
    from django.conf import settings

    print()
    print(
        f"(a) Throughput, rate unlimited: a send of {size:,} from its 202 to COMPLETED "
        f"(batch {settings.DELIVERY_BATCH_SIZE}, {settings.DELIVERY_CONCURRENCY} in flight, "
        f"each answer {latency * 1000:.0f} ms late); median of the runs"
    )
    rows = []
    for config, runs in results.items():
        if not runs.engine:
            continue
        engine = statistics.median(runs.engine)
        bare = statistics.median(runs.bare) if runs.bare else math.nan
        # Each round's engine over the bare client timed right after it: the machine's load
        # changes between rounds, much less within one.
        ratio = statistics.median(e / b for e, b in zip(runs.engine, runs.bare, strict=False))
        rows.append(
            [
                config.label,
                str(len(runs.engine)),
                sig3(engine),
                f"{sig3(min(runs.engine))}-{sig3(max(runs.engine))}",
                sig3(statistics.median(runs.drain)),
                sig3(statistics.median(runs.pickup)),
                sig3(bare),
                f"{ratio:.2f}" if runs.bare else "-",
                f">= {TARGET_MESSAGES_PER_SECOND:,}, >= {TARGET_BARE_RATIO}",
                "PASS"
                if engine >= TARGET_MESSAGES_PER_SECOND and ratio >= TARGET_BARE_RATIO
                else "MISS",
            ]
        )
    if rows:
        print_table(
            [
                "CxW",
                "runs",
                "msg/s",
                "range",
                "msg/s in drain",
                "pickup s",
                "bare req/s",
                "engine/bare",
                "target",
                "result",
            ],
            rows,
        )
    print(
        "CxW: worker --concurrency C, W drains on the send (the service starts 1; more are extra "
        "wake-ups). msg/s: 202 to completed_at. in drain: started_at to completed_at. pickup: "
        "202 to started_at (negative: the drain started before the 202 reached the client). "
        "bare: aiohttp straight to the same sandbox, same concurrency. engine/bare: median of each "
        "round's ratio."
    )
    print()
    print(
        "CPU seconds per 1,000 messages, 202 to COMPLETED (median; workers: the bare client's own "
        "process in its rows; gunicorn: the accept and the webhooks; postgres: the bench "
        "database's backends)"
    )
    names = ["workers", "gunicorn", "sandbox", "postgres"]
    rows = []
    for config, runs in results.items():
        for label, cpus, rates in (
            ("engine", runs.cpu, runs.engine),
            ("bare", runs.bare_cpu, runs.bare),
        ):
            if not cpus:
                continue
            medians = [statistics.median(cpu.get(name, 0.0) for cpu in cpus) for name in names]
            total = sum(medians)
            # Cores busy on average: CPU per message times messages per second.
            cores = total / 1000 * statistics.median(rates)
            rows.append(
                [config.label, label, *(sig3(m) for m in medians), sig3(total), sig3(cores)]
            )
    if rows:
        print_table(["CxW", "run", *names, "total", "cores busy"], rows)
    print(
        "With every core busy in both runs, engine/bare can be at most the bare run's CPU per "
        "message over the engine run's (their totals): the machine's ceiling for the ratio."
    )
    for runs in results.values():
        for problem in runs.problems:
            print(f"problem: {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round")
    parser.add_argument("--rounds", type=int, default=None, help="runs per configuration (3)")
    parser.add_argument("--recipients", type=int, default=10_000, help="the send's size")
    parser.add_argument(
        "--configs", default="1x1,2x1,2x2", help="worker configurations, CxW by commas"
    )
    parser.add_argument(
        "--meta-latency",
        type=float,
        default=0.0,
        help="seconds the sandbox waits before each answer, as Meta's own latency (0)",
    )
    add_arguments(parser)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.configs = [Config.parse(text) for text in args.configs.split(",") if text.strip()]
    with services(args) as run:
        results = throughput(args, run)
    throughput_report(results, args.recipients, args.meta_latency)


if __name__ == "__main__":
    main()
