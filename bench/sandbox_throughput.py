"""Template sends per second the Meta sandbox answers, with webhooks on.

    .venv/bin/python bench/sandbox_throughput.py [--seconds 10] [--connections 64]

Starts `python -m meta_sandbox` (catalog file, no rate limit, webhooks to a receiver in this
process), drives it with keep-alive connections over raw asyncio streams (the cheapest Python
client, so the client is not what is measured), and reports sends/s and webhook statuses/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "bench-token"
# A version the sandbox serves: the service's default (meta/graph_version.py).
GRAPH_VERSION = "v27.0"
NUMBER = "813497231850626"
CATALOG = {
    "accounts": [
        {
            "waba_id": "102290129340398",
            "access_token": TOKEN,
            "phone_numbers": [{"phone_number_id": NUMBER, "display_phone_number": "+54 9 223"}],
            "templates": [
                {
                    "name": "welcome_message",
                    "language": "es",
                    "status": "APPROVED",
                    "components": [
                        {"type": "BODY", "text": "Hola {{name}}, tu codigo es {{code}}."},
                        {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x/{{1}}"}]},
                    ],
                }
            ],
        }
    ]
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def request_bytes(port: int, n: int) -> bytes:
    body = orjson.dumps(
        {
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": f"54911{n:08d}",
            "type": "template",
            "template": {
                "name": "welcome_message",
                "language": {"code": "es"},
                "components": [
                    {
                        "type": "body",
                        "parameters": [
                            {"type": "text", "parameter_name": "name", "text": "Juan"},
                            {"type": "text", "parameter_name": "code", "text": f"C{n}"},
                        ],
                    },
                    {
                        "type": "button",
                        "sub_type": "url",
                        "index": "0",
                        "parameters": [{"type": "text", "text": f"x{n}"}],
                    },
                ],
            },
            "biz_opaque_callback_data": f"mindo-message:{n}",
        }
    )
    head = (
        f"POST /{GRAPH_VERSION}/{NUMBER}/messages HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def worker(port: int, requests: list[bytes], deadline: float, counts: dict[str, int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    while time.monotonic() < deadline:
        writer.write(requests[i % len(requests)])
        i += 1
        head = await reader.readuntil(b"\r\n\r\n")
        status = head[9:12].decode()
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        await reader.readexactly(length)
        counts[status] = counts.get(status, 0) + 1
    writer.close()


async def main(seconds: float, connections: int) -> None:
    statuses = {"n": 0, "posts": 0}

    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        document = orjson.loads(body)
        statuses["n"] += len(document["entry"][0]["changes"][0]["value"]["statuses"])
        statuses["posts"] += 1
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/meta/", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    hook_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", hook_port).start()

    port = free_port()
    catalog = Path(tempfile.mkdtemp()) / "catalog.json"
    catalog.write_text(json.dumps(CATALOG))
    sandbox = subprocess.Popen(
        [
            str(ROOT / ".venv/bin/python"),
            "-m",
            "meta_sandbox",
            "--port",
            str(port),
            "--catalog",
            str(catalog),
            "--rate-per-number",
            "0",
            "--delivered-after",
            "1",
            "--read-after",
            "3",
            "--webhook-url",
            f"http://127.0.0.1:{hook_port}/webhooks/meta/",
            "--state-file",
            "",
        ],
        cwd=ROOT,
    )
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats", timeout=1)
                break
            except OSError:
                await asyncio.sleep(0.1)
        requests = [request_bytes(port, n) for n in range(2000)]
        counts: dict[str, int] = {}
        cpu_before = cpu_seconds(sandbox.pid)
        started = time.monotonic()
        deadline = started + seconds
        await asyncio.gather(
            *(worker(port, requests, deadline, counts) for _ in range(connections))
        )
        elapsed = time.monotonic() - started
        total = sum(counts.values())
        cpu = cpu_seconds(sandbox.pid) - cpu_before
        print(f"answers {counts} in {elapsed:.2f}s: {total / elapsed:,.0f} sends/s")
        print(f"sandbox CPU {cpu:.2f}s: {total / cpu:,.0f} sends per CPU-second (one core)")
        posted_at_end = statuses["n"]
        await asyncio.sleep(3.5)
        print(
            f"webhook statuses received during the run: {posted_at_end:,} "
            f"({posted_at_end / elapsed:,.0f}/s), after drain: {statuses['n']:,} "
            f"in {statuses['posts']:,} POSTs"
        )
        stats = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/_sandbox/stats"))
        print(
            "sandbox stats:",
            {
                k: stats[k]
                for k in (
                    "accepted",
                    "webhook_statuses_posted",
                    "webhook_failures",
                    "pending_webhooks",
                )
            },
        )
    finally:
        sandbox.terminate()
        sandbox.wait(timeout=10)
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.connections))
