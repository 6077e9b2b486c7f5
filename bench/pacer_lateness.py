"""What late workers cost the pacer's schedule, on a virtual clock: the same seeded lateness
for both ways of paying, so the figures do not depend on the machine's load.

    .venv/bin/python bench/pacer_lateness.py [--rate 1000] [--hosts 2] [--workers 64]
        [--seconds 3] [--seeds 1,2,3]

Each host's `AsyncPacer` (64 workers, a 3 ms round trip) shares one number's limiter in Redis
(REDIS_URL; keys of the bench's own, deleted afterwards) on tests/test_ratelimit's ManualClock;
every sleep wakes late by a seeded draw from one of two models of a machine's lateness. The
pacer pays for a late permit the cheaper way, moving every later slot back or skipping one slot
a second later (messaging.ratelimit); the baseline, in the same run on the same draws, always
moves the slots back (the pacer before skips). Printed: the mean rate (target within 2% of the
rate), the largest count in a 1-s window (never above the rate) and the permits used late.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

# (share, low, high) in seconds: a sleep wakes late by uniform(low, high) with that share.
MODELS = {
    "quiet": [(0.90, 0.0, 0.002), (0.09, 0.002, 0.010), (0.01, 0.010, 0.030)],
    "loaded": [(0.70, 0.0, 0.003), (0.25, 0.003, 0.012), (0.05, 0.012, 0.040)],
}


def lateness(model: str, seed: int) -> Iterator[float]:
    rng = random.Random(seed)
    while True:
        draw = rng.random()
        for share, low, high in MODELS[model]:
            if draw < share:
                yield rng.uniform(low, high)
                break
            draw -= share
        else:
            yield 0.0


def run(args: argparse.Namespace, model: str, seed: int, baseline: bool) -> tuple[float, int, int]:
    import pytest

    from messaging.ratelimit import AsyncPacer, RateLimiter
    from tests import test_ratelimit_slots
    from tests.delivery_support import redis_client
    from tests.test_ratelimit import MICROS, ManualClock, max_in_any_window

    class SlotsMovedBack(AsyncPacer):
        def payment(self, debt: float, late: list[int]) -> tuple[float, list[int]]:
            return debt, []

    clock = ManualClock()
    client = redis_client()
    limiter = RateLimiter(client, prefix=f"bench:rate:{uuid.uuid4().hex}:", clock=clock)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(
            test_ratelimit_slots, "AsyncPacer", SlotsMovedBack if baseline else AsyncPacer
        )
        try:
            stamps, pacers = test_ratelimit_slots.leave_times(
                limiter,
                clock,
                patch,
                rate=args.rate,
                hosts=args.hosts,
                workers=args.workers,
                seconds=args.seconds,
                lateness=lateness(model, seed),
            )
        finally:
            client.delete(*limiter.rate_keys("number"), limiter.skips_key("number"))
            client.close()
    stamps.sort()
    mean = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / MICROS)
    return mean, max_in_any_window(stamps), sum(p.paid_late for p in pacers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--workers", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--seeds", default="1,2,3")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")
    import django

    django.setup()
    from bench.support import print_table

    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = []
    for model in MODELS:
        for baseline in (True, False):
            runs = [run(args, model, seed, baseline) for seed in seeds]
            mean = statistics.median(r[0] for r in runs)
            window = max(r[1] for r in runs)
            rows.append(
                [
                    model,
                    "slots moved back (baseline)" if baseline else "the cheaper: skips or moved",
                    f"{mean:.1f} ({mean / args.rate:.3f})",
                    ", ".join(f"{r[0]:.1f}" for r in runs),
                    str(window),
                    ", ".join(str(r[2]) for r in runs),
                ]
            )
    print(
        f"{args.hosts} hosts x {args.workers} workers at {args.rate}/s for {args.seconds:g} s "
        f"(virtual), seeds {args.seeds}"
    )
    print_table(
        ["lateness", "payment", "mean/s, median (ratio)", "per seed", "max 1-s window", "late"],
        rows,
    )


if __name__ == "__main__":
    main()
