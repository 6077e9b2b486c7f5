"""Where a drain's time goes: a send drained in this process (no Celery, no pacing) with the
drain's steps wrapped in timers.

    .venv/bin/python bench/drain_phases.py [--rounds N] [--recipients N]

The steps: claim (one UPDATE ... SKIP LOCKED per batch), quota admission, building the bodies
(in the drain's thread, after the claim), the HTTP sends, settling (bulksend.lifecycle), and how
long the drain's thread waited for the sending loop. Sending runs in a thread of its own
(bulksend.sending) while the drain's thread claims and settles, so the steps add up to more than
the total: what is not hidden behind the sending shows as the wait. The liveness mark is a
heartbeat in a thread of its own, off the path.
The ratio: the in-process rate over the bare aiohttp client's to the same sandbox in this run.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.drain_support import (  # noqa: E402
    ENGINE_BASE,
    UNLIMITED_THROUGHPUT,
    accept,
    add_arguments,
    number_configure,
    sandbox_reset,
    say,
    send_body,
    sends_reset,
    services,
    wait_finished,
    webhooks_settle,
)
from bench.drain_unpaced import bare_bodies, bare_send  # noqa: E402
from bench.support import Demo, print_table, sig3  # noqa: E402


class PhaseClock:
    """Accumulates the wall time of wrapped functions by phase name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds
        self.calls[name] = self.calls.get(name, 0) + 1

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed

    def wrap_async(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - started)

        return timed


def phases_round(*, web: str, meta: str, demo: Demo, body: bytes, size: int) -> dict[str, Any]:
    from django.conf import settings

    from bulksend import drain, sending

    sends_reset()
    sandbox_reset(meta)
    with requests.Session() as session:
        bulk_send_id = accept(session, web, demo, body, size)
    clock = PhaseClock()
    # (owner, attribute, phase): each wrapped in a timer for the round.
    timed: list[tuple[Any, str, str]] = [
        (drain, "messages_claim", "claim (UPDATE ... SKIP LOCKED)"),
        (drain, "batch_settle", "settle (bulksend.lifecycle)"),
        (drain, "bulk_send_start", "start the send"),
        (drain, "bulk_send_finish_if_done", "finish the send"),
        (drain.QuotaGate, "admit", "quota admission"),
        (sending.BatchSender, "prepare", "build bodies (drain's thread)"),
        (sending.SentBatch, "wait", "drain's thread waits for the sending"),
    ]
    originals: dict[tuple[Any, str], Any] = {}
    try:
        for owner, attribute, name in timed:
            originals[(owner, attribute)] = getattr(owner, attribute)
            setattr(owner, attribute, clock.wrap(name, getattr(owner, attribute)))
        originals[(sending.BatchSender, "_send")] = sending.BatchSender._send
        sending.BatchSender._send = clock.wrap_async(  # type: ignore[method-assign]
            "send (sending thread)", sending.BatchSender._send
        )
        # The drain in this process, as a worker runs it: unpaced, to the sandbox.
        settings.DELIVERY_PACING = False
        settings.META_GRAPH_URL = meta
        started = time.perf_counter()
        report = drain.bulk_send_drain(uuid.UUID(bulk_send_id), budget_seconds=300)
        total = time.perf_counter() - started
    finally:
        for (owner, attribute), original in originals.items():
            setattr(owner, attribute, original)
    # The bodies are built before a batch is handed over (BatchSender.prepare): all HTTP.
    clock.seconds["HTTP (send_many, sending thread)"] = clock.seconds.pop(
        "send (sending thread)", 0.0
    )
    finished = wait_finished(bulk_send_id, 30)
    webhooks_settle(meta)
    return {
        "total": total,
        "batches": report.batches,
        "status": finished.status if finished else "not finished",
        "seconds": dict(clock.seconds),
    }


def phases(args: argparse.Namespace, demo: Demo, web: str, meta: str) -> list[dict[str, Any]]:
    from django.conf import settings

    number_configure(demo.phone_number_id, throughput=UNLIMITED_THROUGHPUT)
    body = send_body(demo, args.recipients, ENGINE_BASE)
    bare = bare_bodies(demo, args.recipients)
    say(f"phases: {args.recipients:,} drained in this process, unpaced")
    rounds = []
    for _ in range(args.rounds):
        result = phases_round(web=web, meta=meta, demo=demo, body=body, size=args.recipients)
        sandbox_reset(meta)
        elapsed, _ok = asyncio.run(bare_send(meta, demo, bare, settings.DELIVERY_CONCURRENCY))
        result["bare"] = len(bare) / elapsed
        webhooks_settle(meta)
        say(
            f"  {args.recipients / result['total']:,.0f} messages/s in-process "
            f"({result['status']}), bare aiohttp {result['bare']:,.0f} requests/s"
        )
        rounds.append(result)
    return rounds


def phases_report(rounds: list[dict[str, Any]], size: int) -> None:
    if not rounds:
        return
    total = statistics.median(r["total"] for r in rounds)
    bare = statistics.median(r["bare"] for r in rounds)
    batches = rounds[0]["batches"] or 1
    print()
    print(
        f"Phases of an in-process drain of {size:,} ({batches} batches), median of "
        f"{len(rounds)} run(s): {size / total:,.0f} messages/s, {total:.2f} s; bare aiohttp "
        f"{bare:,.0f} requests/s, ratio {size / total / bare:.2f}"
    )
    rows = []
    for name in rounds[0]["seconds"]:
        seconds = statistics.median(r["seconds"].get(name, 0.0) for r in rounds)
        rows.append(
            [
                name,
                sig3(seconds),
                sig3(seconds / batches * 1000),
                sig3(seconds / size * 1e6),
                f"{seconds / total:.0%}",
            ]
        )
    print_table(["phase", "seconds", "ms per batch", "us per message", "of the total"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="runs (3)")
    parser.add_argument("--recipients", type=int, default=10_000, help="the send's size")
    add_arguments(parser)
    args = parser.parse_args()
    with services(args) as run:
        rounds = phases(args, run.demo, run.web, run.meta)
    phases_report(rounds, args.recipients)


if __name__ == "__main__":
    main()
