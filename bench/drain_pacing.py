"""How exactly the delivery engine paces a number: the paced rate against the number's rate, and
the most requests in any 1-second window, on a quiet machine and with busy loops on every core.

    .venv/bin/python bench/drain_pacing.py [--quick] [--rounds N] [--seconds S]
        [--busy-loops 0,2] [--save-records DIR]

Target: within 2% of the number's rate, and never above it in any 1-second
window, also while busy loops hold the cores.

The number at 80/s (pacing on), the sandbox with no rate so it records whatever comes, two Celery
workers (separate processes, --concurrency 1 each) draining two sends on that number at once, each
big enough to last the whole run. Each round runs once per --busy-loops count (default 0 and 2:
`yes > /dev/null` processes started for the round, as many as there are cores here). After
--seconds (60; --quick: 15) of sending, the sandbox's record (`received_at` of each request) gives
the largest count in any sliding 1-second window (target <= 80) and the mean rate over the steady
part, the first 2 s left out (target >= 78.4/s, 2% under 80). The ratio is the mean over the
number's rate, the baseline of the same run. The limiter's own design rate is
80 / (1 + GUARD + TOLERANCE) (messaging.ratelimit).
To say why a window went over: how late requests reached the sandbox against the limiter's grid
of permits (see `lateness`); the limiter's guard absorbs 8 ms of it, a process descheduled longer
on a busy machine makes requests arrive bunched.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.drain_processes import busy_loops, celery_workers  # noqa: E402
from bench.drain_support import (  # noqa: E402
    PACING_BASES,
    Services,
    accept,
    add_arguments,
    max_in_one_second,
    number_configure,
    received_times,
    sandbox_get,
    sandbox_reset,
    say,
    send_body,
    sends_cancel_active,
    sends_reset,
    services,
    webhooks_settle,
)
from bench.support import Demo, print_table  # noqa: E402

PACING_RATE = 80
PACING_TOLERANCE = 0.02  # the mean may be this far under the rate
PACING_WARMUP_SECONDS = 2.0  # left out of the mean: the drains start and claim their first batch


@dataclass(frozen=True)
class PacingRun:
    max_window: int
    over: int  # requests that closed a 1-s window holding more than the rate
    sandbox_max: int
    mean: float
    sent: int
    shares: tuple[int, int]
    late_p99: float  # seconds, see `lateness`
    late_max: float


def windows_over(times: list[float], rate: int) -> int:
    """How many requests closed a window (t - 1 s, t] holding more than `rate`."""
    over, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        over += end - start + 1 > rate
    return over


def lateness(times: list[float], interval: float) -> list[float]:
    """How late each request reached the sandbox, at least, against the limiter's grid.

    While the drains keep the limiter busy, permit i conforms at base + i * interval, and the
    base only moves later (when nobody asked for a while). So request i is late by at least
    (t_i - i * interval) - min over j >= i of (t_j - j * interval), give or take the limiter's
    tolerance. A spread above the limiter's guard is what lets a window exceed the rate: permits
    granted in time whose requests arrive bunched.
    """
    offsets = [moment - index * interval for index, moment in enumerate(times)]
    late: list[float] = [0.0] * len(offsets)
    floor = math.inf
    for index in range(len(offsets) - 1, -1, -1):
        floor = min(floor, offsets[index])
        late[index] = offsets[index] - floor
    return late


def pacing_round(
    *,
    web: str,
    meta: str,
    demo: Demo,
    bodies: list[bytes],
    size: int,
    seconds: float,
    save_to: Path | None,
) -> PacingRun | None:
    sends_reset()
    sandbox_reset(meta)
    with requests.Session() as session:
        for body in bodies:
            accept(session, web, demo, body, size)
    # The clock starts at the first message the sandbox accepts.
    deadline = time.monotonic() + 60
    while sandbox_get(meta, "stats")["accepted"] == 0:
        if time.monotonic() > deadline:
            say("  nothing reached the sandbox in 60 s")
            sends_cancel_active()
            return None
        time.sleep(0.05)
    time.sleep(seconds + 0.5)
    records = received_times(meta, demo.phone_number_id)
    stats = sandbox_get(meta, "stats")
    sends_cancel_active()
    if save_to is not None:
        save_to.write_bytes(orjson.dumps({"received": records, "stats": stats}))
        say(f"  the sandbox's record: {save_to}")
    times = [moment for moment, _ in records]
    first = times[0]
    end = first + seconds
    steady = [t for t in times if first + PACING_WARMUP_SECONDS <= t < end]
    mean = len(steady) / (seconds - PACING_WARMUP_SECONDS)
    # Which send each request belonged to, by its recipient's range: both drains must work.
    digit = {str(base)[0]: index for index, base in enumerate(PACING_BASES)}
    shares = [0, 0]
    for moment, to in records:
        if moment < end:
            shares[digit[to.lstrip("+")[5]]] += 1
    from messaging.ratelimit import GUARD_SECONDS, TOLERANCE_SECONDS

    late = sorted(lateness(steady, (1 + GUARD_SECONDS + TOLERANCE_SECONDS) / PACING_RATE))
    run = PacingRun(
        max_window=max_in_one_second(times),
        over=windows_over(times, PACING_RATE),
        sandbox_max=int(stats["max_sends_in_one_second"].get(demo.phone_number_id, 0)),
        mean=mean,
        sent=sum(1 for t in times if t < end),
        shares=(shares[0], shares[1]),
        late_p99=late[int(len(late) * 0.99)] if late else 0.0,
        late_max=late[-1] if late else 0.0,
    )
    say(
        f"  max in 1 s {run.max_window} ({run.over} requests closed a window above "
        f"{PACING_RATE}; sandbox's own count {run.sandbox_max}), mean {run.mean:.2f}/s, "
        f"{run.sent} sent in {seconds:g} s (send A {shares[0]}, B {shares[1]}), late by "
        f"p99 {run.late_p99 * 1000:.1f} ms, max {run.late_max * 1000:.1f} ms"
    )
    return run


def pacing(args: argparse.Namespace, run: Services) -> dict[int, list[PacingRun]]:
    """The runs by how many busy loops held the cores meanwhile."""
    demo = run.demo
    number_configure(demo.phone_number_id, throughput=PACING_RATE)
    # Each send could carry the whole rate alone, with a margin: neither runs out during the run.
    size = int(PACING_RATE * (args.seconds + 10))
    bodies = [send_body(demo, size, base) for base in PACING_BASES]
    runs: dict[int, list[PacingRun]] = {count: [] for count in args.busy_loops}
    say(f"pacing at {PACING_RATE}/s: 2 workers x --concurrency 1, 2 sends of {size:,}")
    with celery_workers(run.env, run.logs, count=2, concurrency=1, pacing=True):
        for number in range(1, args.rounds + 1):
            for count in args.busy_loops:
                if time.monotonic() > run.deadline:
                    say("--max-seconds reached: fewer rounds")
                    return runs
                say(f"  round {number}, {count} busy loop(s)")
                save_to = None
                if args.save_records:
                    save_to = args.save_records / f"pacing-{number}-busy{count}.json"
                with busy_loops(count):
                    result = pacing_round(
                        web=run.web,
                        meta=run.meta,
                        demo=demo,
                        bodies=bodies,
                        size=size,
                        seconds=args.seconds,
                        save_to=save_to,
                    )
                if result is not None:
                    runs[count].append(result)
                webhooks_settle(run.meta)
    return runs


def pacing_report(runs: list[PacingRun], seconds: float, busy: int) -> None:
    if not runs:
        return
    floor = PACING_RATE * (1 - PACING_TOLERANCE)
    worst = max(run.max_window for run in runs)
    sandbox_worst = max(run.sandbox_max for run in runs)
    mean = statistics.median(run.mean for run in runs)
    print()
    print(
        f"Pacing at {PACING_RATE}/s, 2 workers on one number for {seconds:g} s, {busy} busy "
        f"loop(s), {len(runs)} run(s): the sandbox's record of accepted requests"
    )
    print_table(
        ["measure", "runs", "value", "per run", "target", "result"],
        [
            [
                "largest count in a sliding 1-s window (worst run)",
                str(len(runs)),
                str(worst),
                ", ".join(str(run.max_window) for run in runs),
                f"<= {PACING_RATE}",
                "PASS" if worst <= PACING_RATE else "MISS",
            ],
            [
                "same, the sandbox's own count (worst run)",
                str(len(runs)),
                str(sandbox_worst),
                ", ".join(str(run.sandbox_max) for run in runs),
                f"<= {PACING_RATE}",
                "PASS" if sandbox_worst <= PACING_RATE else "MISS",
            ],
            [
                f"mean rate after the first {PACING_WARMUP_SECONDS:g} s (median), messages/s",
                str(len(runs)),
                f"{mean:.2f}",
                ", ".join(f"{run.mean:.2f}" for run in runs),
                f">= {floor:.1f}",
                "PASS" if mean >= floor else "MISS",
            ],
            [
                "mean rate / the number's rate (median)",
                str(len(runs)),
                f"{mean / PACING_RATE:.3f}",
                ", ".join(f"{run.mean / PACING_RATE:.3f}" for run in runs),
                f">= {1 - PACING_TOLERANCE:.2f}",
                "PASS" if mean >= floor else "MISS",
            ],
        ],
    )
    from messaging.ratelimit import GUARD_SECONDS

    print(
        "Shares of the two sends (A/B) per run: "
        + ", ".join(f"{run.shares[0]}/{run.shares[1]}" for run in runs)
    )
    print(
        "Requests that closed a window above the rate, per run: "
        + ", ".join(str(run.over) for run in runs)
    )
    print(
        "Lateness against the limiter's grid (at least; p99 / max per run, ms): "
        + ", ".join(f"{run.late_p99 * 1000:.1f} / {run.late_max * 1000:.1f}" for run in runs)
        + f". The limiter's guard absorbs {GUARD_SECONDS * 1000:g} ms."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one round of 15 s")
    parser.add_argument("--rounds", type=int, default=None, help="runs per busy-loop count (3)")
    parser.add_argument("--seconds", type=float, default=None, help="run length (60)")
    parser.add_argument(
        "--busy-loops", default="0,2", help="busy loops during a run, one count per run, by commas"
    )
    parser.add_argument(
        "--save-records",
        type=Path,
        help="a directory for each run's record of (received_at, to), as JSON",
    )
    add_arguments(parser)
    args = parser.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.seconds = args.seconds or (15.0 if args.quick else 60.0)
    if args.seconds <= PACING_WARMUP_SECONDS + 1:
        parser.error(f"--seconds must be above {PACING_WARMUP_SECONDS + 1:g}")
    args.busy_loops = [int(text) for text in args.busy_loops.split(",") if text.strip()]
    if args.save_records:
        args.save_records.mkdir(parents=True, exist_ok=True)
    with services(args) as run:
        runs = pacing(args, run)
    for count, results in runs.items():
        pacing_report(results, args.seconds, count)


if __name__ == "__main__":
    main()
