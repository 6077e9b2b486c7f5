"""What quiet hours cost when a send is accepted: send-bulk of N recipients with and without a
`send_window`, in-process.

    .venv/bin/python bench/send_window.py [--sizes 10000,100000] [--rounds 3]

On the accepting benches' database (`--database-url`, default `mindo_bench`), provisioned the
same way (bench/accept_send.py). The recipients are a mix of countries and areas (Argentina,
Mexico, Brazil, Spain, four US area codes), so the window's due moments come from a dozen zones.
Each round times the view's own path, validation and creation (bulksend.creation: template
check, deduplication, each recipient's zone and opening, COPY, quota, commit), once without the
window (the baseline) and once with `{"start": "09:00", "end": "20:00"}`, one after the other so
both see the same load; the sends of the round before are cancelled first, off the clock. It
prints the median of each and their ratio per size, and empties the bench's Celery queue after.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.accept_support import (  # noqa: E402
    queue_clear,
    sends_cancel_active,
    sends_reset,
    service_env,
)
from bench.support import (  # noqa: E402
    TEMPLATE,
    Demo,
    add_service_arguments,
    django_setup,
    print_table,
    provision,
    sig3,
)

WINDOW = {"start": "09:00", "end": "20:00"}
# Each recipient's number: a prefix (country and area) and a tail making it unique.
PREFIXES = [
    ("+54911", 8),  # Buenos Aires
    ("+549351", 7),  # Córdoba
    ("+5255", 8),  # Mexico City
    ("+52664", 7),  # Tijuana
    ("+5511", 9),  # São Paulo (mobile: 9 digits)
    ("+5568", 8),  # Acre
    ("+346", 8),  # Spain's mobiles: Madrid or the Canaries, the organization's zone
    ("+1212", 7),  # New York
    ("+1310", 7),  # Los Angeles
    ("+1773", 7),  # Chicago
    ("+1305", 7),  # Miami
    ("+1602", 7),  # Phoenix
]


def recipients(size: int) -> list[dict[str, Any]]:
    """`size` unique numbers across PREFIXES, the welcome template's variables each."""
    chosen = []
    for i in range(size):
        prefix, digits = PREFIXES[i % len(PREFIXES)]
        tail = 2 * 10 ** (digits - 1) + i  # starts with 2: a possible subscriber number
        chosen.append(
            {
                "phone": f"{prefix}{tail}",
                "variables": {"name": f"Cliente {i}", "code": f"C{i:06d}"},
                "button_variables": {"button_0": f"B-{i}"},
            }
        )
    return chosen


def body_for(demo: Demo, size: int, *, window: bool) -> bytes:
    return orjson.dumps(
        {
            "phone_number_id": demo.phone_number_id,
            "template_name": TEMPLATE,
            "language": demo.language,
            "recipients": recipients(size),
            **({"send_window": WINDOW} if window else {}),
        }
    )


def accept_seconds(demo: Demo, body: bytes, size: int) -> float:
    """Validate and create one send, as the view does; the seconds it took."""
    from django.conf import settings

    from bulksend.creation import bulk_send_create
    from bulksend.serializers import SendBulkRequestSerializer
    from mindo.api_keys import api_key_authenticate

    settings.API_KEY_CACHE_SECONDS = 0
    api_key = api_key_authenticate(demo.api_key)
    sends_cancel_active()
    data = orjson.loads(body)
    started = time.perf_counter()
    serializer = SendBulkRequestSerializer(data=data)
    if not serializer.is_valid():
        sys.exit(f"the body is invalid: {str(serializer.errors)[:2000]}")
    valid = serializer.validated_data
    accepted = bulk_send_create(
        organization=api_key.organization,
        created_by=api_key.user,
        phone_number_id=valid["phone_number_id"],
        template_name=valid["template_name"],
        language=valid["language"],
        recipients=valid["recipients"],
        send_window=valid.get("send_window"),
    )
    elapsed = time.perf_counter() - started
    if accepted.bulk_send.unique_recipients != size:
        sys.exit(f"send-bulk of {size} kept {accepted.bulk_send.unique_recipients} recipients")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="recipients per send, by commas")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per size")
    parser.add_argument("--org", default="Bench", help="organization provisioned by `demo`")
    add_service_arguments(parser, database="mindo_bench")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    env = service_env(args.database_url, args.redis_url)
    demo = provision(env, args.org)
    django_setup(env)
    sends_reset()
    rows = []
    try:
        for size in sizes:
            plain, windowed = body_for(demo, size, window=False), body_for(demo, size, window=True)
            accept_seconds(demo, plain, size)  # warm-up: imports, caches, the first COPY
            without, with_window = [], []
            for _ in range(args.rounds):
                without.append(accept_seconds(demo, plain, size))
                with_window.append(accept_seconds(demo, windowed, size))
            base, windowed_median = statistics.median(without), statistics.median(with_window)
            rows.append(
                [
                    f"{size:,}",
                    sig3(base),
                    sig3(windowed_median),
                    f"{windowed_median / base:.2f}",
                ]
            )
        print()
        print(f"send-bulk validated and created in-process, median of {args.rounds} rounds")
        print_table(["recipients", "no window (s)", "with window (s)", "ratio"], rows)
    finally:
        print(f"emptied the queue of {args.redis_url} ({queue_clear(args.redis_url)} wake-ups)")


if __name__ == "__main__":
    main()
