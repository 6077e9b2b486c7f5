"""Customer callbacks delivered per second by one worker, against a bare HTTP client.

    DATABASE_URL=postgres://.../mindo_bench_callbacks .venv/bin/python bench/callbacks.py \
        [--events 5000] [--concurrency 16] [--batch]

Migrates the database it is given, registers an endpoint for a bench organization, records
`--events` events in one statement, and times `callbacks_deliver` (one process: claim, signed
POSTs over kept-alive connections, settle) until all are delivered to a local receiver (an
aiohttp server in a process of its own that verifies nothing, so it is not the limit). The
baseline is a bare aiohttp client posting the same bodies to the same receiver with the same
concurrency, in the same run. Prints both rates and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("CALLBACKS_ALLOW_PRIVATE_HOSTS", "true")


def receiver_serve(port: int) -> None:
    from aiohttp import web

    async def take(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/hook", take)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def bare_client(url: str, bodies: list[bytes], concurrency: int) -> float:
    import aiohttp

    semaphore = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(body: bytes) -> None:
            async with semaphore, session.post(url, data=body) as response:
                await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(one(body) for body in bodies))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--batch", action="store_true", help="the endpoint opts into batches")
    options = parser.parse_args()
    os.environ["CALLBACKS_ENDPOINT_CONCURRENCY"] = str(options.concurrency)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from callbacks.delivery import callbacks_deliver
    from callbacks.models import CallbackEvent, WebhookEndpoint
    from callbacks.signing import secret_generate
    from mindo.models import Organization

    call_command("migrate", verbosity=0)
    port = free_port()
    server = multiprocessing.Process(target=receiver_serve, args=(port,), daemon=True)
    server.start()
    url = f"http://127.0.0.1:{port}/hook"
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)

    organization, _ = Organization.objects.get_or_create(name="Callbacks bench")
    WebhookEndpoint.objects.filter(organization=organization).delete()
    endpoint = WebhookEndpoint.objects.create(
        organization=organization,
        url=url,
        events=["message.status"],
        batch_events=options.batch,
        secret=secret_generate(),
    )
    body = {"message_id": 1, "wamid": "wamid.bench", "phone": "+5491112345678", "status": "read"}
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {CallbackEvent._meta.db_table} (id, organization_id, endpoint_id, type,"
            " body, created_at, next_attempt_at, attempts, last_error)"
            " SELECT gen_random_uuid(), %s, %s, 'message.status', %s::jsonb, now(), now(), 0, ''"
            " FROM generate_series(1, %s)",
            [organization.pk, endpoint.pk, json.dumps(body), options.events],
        )
    started = time.perf_counter()
    report = callbacks_deliver(budget_seconds=600)
    ours = time.perf_counter() - started
    delivered = CallbackEvent.objects.filter(endpoint=endpoint, delivered_at__isnull=False).count()
    sample = (
        b'{"id":"00000000-0000-0000-0000-000000000000","type":"message.status",'
        b'"created_at":"2026-01-01T00:00:00+00:00","data":' + json.dumps(body).encode() + b"}"
    )
    bodies = [sample] * options.events
    baseline = asyncio.run(bare_client(url, bodies, options.concurrency))
    server.terminate()
    WebhookEndpoint.objects.filter(organization=organization).delete()

    ours_rate = delivered / ours
    base_rate = options.events / baseline
    print(f"load average: {os.getloadavg()[0]:.2f}")
    print(f"events: {options.events}, concurrency {options.concurrency}, batch {options.batch}")
    print(
        f"callbacks_deliver: {delivered} delivered in {ours:.2f} s = {ours_rate:,.0f} events/s "
        f"({report.rounds} rounds, {report.posts} POSTs)"
    )
    print(f"bare aiohttp client: {options.events} POSTs in {baseline:.2f} s = {base_rate:,.0f}/s")
    print(f"ratio (callbacks / bare client): {ours_rate / base_rate:.2f}")


if __name__ == "__main__":
    main()
