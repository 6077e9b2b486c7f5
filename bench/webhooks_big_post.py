"""How long one webhook POST carrying 1,000 statuses takes until applied, through gunicorn.

    .venv/bin/python bench/webhooks_big_post.py [--runs 5] [--configuration sync-4]

Target (issue 8): under 1 s. On the webhook benches' database (bench/webhooks_support.py): a
send of `sent` messages, every gunicorn worker warmed up, then each POST of 1,000 `delivered`
statuses on fresh wamids timed from the request until every stored body is applied; the median.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import print_table, sig3  # noqa: E402
from bench.webhooks_support import (  # noqa: E402
    CONFIGURATIONS,
    DEFAULT_DATABASE_URL,
    WARMUP_POSTS,
    WEBHOOK_PATH,
    Provisioner,
    all_applied,
    database_prepare,
    delivered_bodies,
    fire,
    gunicorn,
    sends_check,
    server_environment,
)

BIG_POST_STATUSES = 1_000
TARGET_BIG_POST_SECONDS = 1.0


def big_posts(
    name: str, env: dict[str, str], provisioner: Provisioner, args: Any
) -> list[tuple[float, int, int]]:
    """(seconds, HTTP status, statuses applied) of each POST of BIG_POST_STATUSES statuses."""
    send = provisioner.send(WARMUP_POSTS + BIG_POST_STATUSES * args.runs)
    warmup = delivered_bodies(send.wamids[:WARMUP_POSTS])
    bodies = delivered_bodies(send.wamids[WARMUP_POSTS:], per_body=BIG_POST_STATUSES)
    timings = []
    with gunicorn(env, CONFIGURATIONS[name]) as server:
        fire(server, warmup, args.clients)  # every worker has served before the clock
        all_applied(timeout=60)
        connection = http.client.HTTPConnection(server.host, server.port, timeout=60)
        try:
            for body, signature in bodies:
                delivered_before = sends_check([send])[0]
                headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature}
                began = time.monotonic()
                connection.request("POST", WEBHOOK_PATH, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                all_applied(timeout=30)  # applied after the answer: timed until it is
                seconds = time.monotonic() - began
                applied = sends_check([send])[0] - delivered_before
                timings.append((seconds, response.status, applied))
        finally:
            connection.close()
    return timings


def main() -> None:
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed 1,000-status POSTs")
    parser.add_argument("--clients", type=int, default=8, help="client processes warming up")
    parser.add_argument("--configuration", default="sync-4", choices=list(CONFIGURATIONS))
    args = parser.parse_args()
    database_url = os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL)
    if "bench" not in urlsplit(database_url).path:
        sys.exit(f"DATABASE_URL must name a *bench* database, got {database_url}")
    env = server_environment(database_url)
    database_prepare(env)
    provisioner = Provisioner()
    provisioner.reset()
    try:
        timings = big_posts(args.configuration, env, provisioner, args)
    finally:
        provisioner.reset()
    seconds = [t for t, _, _ in timings]
    applied = all(status == 200 and n == BIG_POST_STATUSES for _, status, n in timings)
    median = statistics.median(seconds)
    print(
        f"One POST of {BIG_POST_STATUSES:,} statuses ({args.configuration}); "
        f"target < {TARGET_BIG_POST_SECONDS:g} s; load average {os.getloadavg()}"
    )
    print_table(
        ["runs", "median s", "min s", "max s", "all applied", "verdict"],
        [
            [
                str(len(seconds)),
                sig3(median),
                sig3(min(seconds)),
                sig3(max(seconds)),
                "yes" if applied else "NO",
                "PASS" if median < TARGET_BIG_POST_SECONDS and applied else "MISS",
            ]
        ],
    )


if __name__ == "__main__":
    main()
