"""Where accepting a bulk send spends its time: each step of the send-bulk view, in-process.

    .venv/bin/python bench/accept_send_phases.py [--sizes 10000,100000]

On the accepting bench's database (`--database-url`, default `mindo_bench`), provisioned the
same way: authentication, parsing, validation, creation (template check, deduplication, COPY,
quota, commit) and the response, each timed apart on one send per size. The sends it creates
are cancelled before each size and the queue of the bench's Redis database is emptied after.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.accept_support import (  # noqa: E402
    body_for,
    queue_clear,
    sends_cancel_active,
    sends_reset,
    service_env,
)
from bench.support import (  # noqa: E402
    Demo,
    add_service_arguments,
    django_setup,
    print_table,
    provision,
    sig3,
)


def timed(phases: dict[str, float], name: str, step: Callable[[], Any]) -> Any:
    started = time.perf_counter()
    result = step()
    phases[name] = time.perf_counter() - started
    return result


def phases_for(demo: Demo, body: bytes) -> dict[str, float]:
    """Each step the send-bulk view takes, timed apart (on one send; the view's own path)."""
    from django.conf import settings
    from rest_framework.renderers import JSONRenderer

    from bulksend.creation import bulk_send_create
    from bulksend.serializers import SendBulkAcceptedSerializer, SendBulkRequestSerializer
    from mindo.api_keys import api_key_authenticate

    phases: dict[str, float] = {}
    # Checked against the database as a fresh process would, not from the key cache.
    settings.API_KEY_CACHE_SECONDS = 0
    api_key = timed(phases, "authenticate", lambda: api_key_authenticate(demo.api_key))
    data = timed(phases, "parse JSON", lambda: orjson.loads(body))
    serializer = SendBulkRequestSerializer(data=data)
    if not timed(phases, "validate shape and phones", serializer.is_valid):
        sys.exit(f"phases: the body is invalid: {str(serializer.errors)[:2000]}")
    valid = serializer.validated_data
    accepted = timed(
        phases,
        "create (template, dedup, COPY, quota, commit)",
        lambda: bulk_send_create(
            organization=api_key.organization,
            created_by=api_key.user,
            phone_number_id=valid["phone_number_id"],
            template_name=valid["template_name"],
            language=valid["language"],
            recipients=valid["recipients"],
        ),
    )
    timed(
        phases,
        "serialize response",
        lambda: JSONRenderer().render(SendBulkAcceptedSerializer(accepted).data),
    )
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="recipients per send, by commas")
    parser.add_argument("--org", default="Bench", help="organization provisioned by `demo`")
    add_service_arguments(parser, database="mindo_bench")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    env = service_env(args.database_url, args.redis_url)
    demo = provision(env, args.org)
    django_setup(env)
    sends_reset()
    try:
        for size in sizes:
            body = body_for(demo, size)
            sends_cancel_active()
            steps = phases_for(demo, body)
            print()
            print(f"Phases of one {size:,} send, in-process (seconds, share of their sum)")
            total = sum(steps.values())
            print_table(
                ["phase", "seconds", "share"],
                [[name, sig3(s), f"{s / total:.0%}"] for name, s in steps.items()],
            )
    finally:
        print(f"emptied the queue of {args.redis_url} ({queue_clear(args.redis_url)} wake-ups)")


if __name__ == "__main__":
    main()
