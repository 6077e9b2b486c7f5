"""How long the dry run of a 100,000-recipient send takes, against the send itself and against
the bare parse and phone check of the same body.

    .venv/bin/python bench/dry_run.py [--recipients 100000] [--rounds 3] [--keep]

Target (issue 11): the dry run of 100,000 recipients answered in under 3 s.

1. Create and migrate its own database (`mindo_bench_dry_run`) and provision an organization
   with `manage.py demo --json --org BenchDryRun`.
2. Each round: POST the body (`--recipients` unique recipients, 1% of them with a verdict: an
   invalid phone, a duplicate, a missing variable) to `send-bulk/?dry_run=true` through Django's
   test client in this process (the whole view: key check, parse, every check, the quota
   figures and the estimate), timed from request to answer.
3. Baselines, in the same round: the same body without the refused recipients to send-bulk
   itself (which stores the send: its 202), then cancelled, untimed; and the bare work no dry run
   can skip, `orjson.loads` of the body and `mindo.phones.is_e164` of each phone. Ratios of the
   dry run to both are printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.accept_support import recipients as clean_recipients  # noqa: E402
from bench.support import (  # noqa: E402
    TEMPLATE,
    Demo,
    in_process_arguments,
    in_process_service,
    print_table,
    sig3,
)

SEND_BULK = "/api/v1/meta-templates/send-bulk/"
TARGET_SECONDS = 3.0


def bodies(demo: Demo, size: int) -> tuple[bytes, bytes]:
    """The dry run's body (1 recipient in 100 with a verdict: every third of those an invalid
    phone, a duplicate of the first, or a missing variable) and send-bulk's (the clean ones)."""
    recipients: list[dict[str, Any]] = clean_recipients(size)
    clean = list(recipients)
    for index in range(50, size, 100):
        kind = (index // 100) % 3
        if kind == 0:
            recipients[index] = {**recipients[index], "phone": "12345"}
        elif kind == 1:
            recipients[index] = {**recipients[index], "phone": recipients[0]["phone"]}
        else:
            recipients[index] = {**recipients[index], "variables": {"name": "x"}}
    fields = {
        "phone_number_id": demo.phone_number_id,
        "template_name": TEMPLATE,
        "language": demo.language,
    }
    return (
        orjson.dumps({**fields, "recipients": recipients}),
        orjson.dumps({**fields, "recipients": clean}),
    )


def bare_parse(body: bytes) -> float:
    from mindo.phones import is_e164

    started = time.perf_counter()
    data = orjson.loads(body)
    for recipient in data["recipients"]:
        is_e164(recipient["phone"])
    return time.perf_counter() - started


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=100_000)
    in_process_arguments(
        parser,
        org="BenchDryRun",
        database="mindo_bench_dry_run",
        database_variable="BENCH_DRY_RUN_DATABASE_URL",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    print(f"{args.recipients:,} recipients")
    dry: list[float] = []
    sends: list[float] = []
    bare: list[float] = []
    with in_process_service(args) as (demo, client):
        from bulksend.lifecycle import bulk_send_cancel
        from bulksend.models import BulkSend

        dry_body, send_body = bodies(demo, args.recipients)
        for round_index in range(args.rounds + 1):  # the first round warms up, untimed
            started = time.perf_counter()
            response = client.post(
                f"{SEND_BULK}?dry_run=true", dry_body, content_type="application/json"
            )
            dry_seconds = time.perf_counter() - started
            if response.status_code != 200:
                sys.exit(f"dry run answered {response.status_code}: {response.content[:500]!r}")
            verdicts = len(orjson.loads(response.content)["verdicts"])
            started = time.perf_counter()
            response = client.post(SEND_BULK, send_body, content_type="application/json")
            send_seconds = time.perf_counter() - started
            if response.status_code != 202:
                sys.exit(f"send-bulk answered {response.status_code}: {response.content[:500]!r}")
            bulk_send_cancel(bulk_send=BulkSend.objects.get(pk=response.json()["bulk_send_id"]))
            bare_seconds = bare_parse(dry_body)
            if round_index == 0:
                continue
            dry.append(dry_seconds)
            sends.append(send_seconds)
            bare.append(bare_seconds)
            print(
                f"  round {round_index}: dry run {dry_seconds:.3f} s ({verdicts} verdicts), "
                f"send-bulk {send_seconds:.3f} s, bare parse + phones {bare_seconds:.3f} s; "
                f"load {os.getloadavg()}",
                flush=True,
            )
    median = statistics.median(dry)
    send_median, bare_median = statistics.median(sends), statistics.median(bare)
    print()
    print_table(
        ["dry run of", "median", "min", "max", "send-bulk", "ratio", "bare", "ratio", "target"],
        [
            [
                f"{args.recipients:,}",
                f"{sig3(median)} s",
                f"{sig3(min(dry))} s",
                f"{sig3(max(dry))} s",
                f"{sig3(send_median)} s",
                f"{sig3(median / send_median)}x",
                f"{sig3(bare_median)} s",
                f"{sig3(median / bare_median)}x",
                f"< {TARGET_SECONDS:g} s: {'pass' if median < TARGET_SECONDS else 'FAIL'}",
            ]
        ],
    )


if __name__ == "__main__":
    main()
