"""How many template sends a second AsyncGraphClient makes, and what it costs over bare aiohttp.

    .venv/bin/python bench/graph_client.py [--sends 20000] [--concurrency 64] [--rounds 3]

1. Start a minimal HTTP/1.1 keep-alive server in a child process (a raw asyncio protocol that
   answers every POST with Meta's canned success body), so that the server, not being aiohttp,
   costs as little as possible and the client is what is measured.
2. Build the request bodies with `template_message_body` (a NAMED template with a header, a body
   and a URL button), timed: the drainer pays this per message too.
3. Time `AsyncGraphClient.send_many` over all of them, and then a bare aiohttp loop doing the
   same requests with the same concurrency (one session, pre-encoded bodies, no parsing). The
   ratio is the client's overhead: classification, wamid parsing, body encoding.
Nothing is asserted: the target is 1,000 sends/s end to end on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")

if TYPE_CHECKING:
    from meta.graph import SendRequest

SUCCESS = (
    b'{"messaging_product":"whatsapp","contacts":[{"input":"5491112345678","wa_id":'
    b'"5491112345678"}],"messages":[{"id":"wamid.HBgNNTQ5MTExMjM0NTY3OBUCABEYEjQ4QTNFQjE5'
    b'QzQ3NTZCQ0MwAA==","message_status":"accepted"}]}'
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
    + str(len(SUCCESS)).encode()
    + b"\r\n\r\n"
    + SUCCESS
)


def content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            return int(line[15:])
    return 0


class CannedMeta(asyncio.Protocol):
    """Answers each complete request (headers plus Content-Length bytes) with RESPONSE."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answers = 0
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            length = content_length(self.buffer[:end])
            if len(self.buffer) < end + 4 + length:
                break
            self.buffer = self.buffer[end + 4 + length :]
            answers += 1
        if answers:
            self.transport.write(RESPONSE * answers)


def serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(CannedMeta, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


async def bare_aiohttp(url: str, bodies: list[bytes], concurrency: int) -> float:
    import aiohttp

    headers = {"Authorization": "Bearer bench-token", "Content-Type": "application/json"}
    indexes = iter(range(len(bodies)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200)) as session:

        async def worker() -> None:
            for index in indexes:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    await response.read()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


async def graph_client(
    base_url: str, requests: list[SendRequest], concurrency: int
) -> tuple[float, int]:
    from meta.graph import AsyncGraphClient

    async with AsyncGraphClient(base_url=base_url) as client:
        started = time.perf_counter()
        outcomes = await client.send_many(requests, concurrency)
        elapsed = time.perf_counter() - started
    return elapsed, sum(1 for outcome in outcomes if outcome.wamid)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sends", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()

    import django

    django.setup()
    import orjson

    from meta.graph import SendRequest
    from meta.template_message import template_message_body
    from templates_app.models import MessageTemplate
    from templates_app.shapes import template_shape

    template = MessageTemplate(name="order_update", language="es")
    template.set_components(
        [
            {"type": "HEADER", "format": "TEXT", "text": "Pedido {{order}}"},
            {"type": "BODY", "text": "Hola {{name}}, tu pedido {{order}} llega el {{date}}."},
            {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://x.io/{{1}}"}]},
        ]
    )
    shape = template_shape(template)
    started = time.perf_counter()
    bodies = [
        template_message_body(
            to_e164=f"+54911{index:08d}",
            template=shape,
            variables={"name": f"Cliente {index}", "order": f"A-{index}", "date": "lunes"},
            button_variables={"button_0": f"A-{index}"},
            callback_data=f"mindo-message:{index}",
        )
        for index in range(options.sends)
    ]
    built = time.perf_counter() - started
    encoded = [orjson.dumps(body) for body in bodies]

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    port = sock.getsockname()[1]
    server = multiprocessing.get_context("fork").Process(target=serve, args=(sock,), daemon=True)
    server.start()
    base_url = f"http://127.0.0.1:{port}/v21.0"
    url = f"{base_url}/813497231850626/messages"
    requests = [SendRequest("813497231850626", "bench-token", body) for body in bodies]
    try:
        each = built * 1e6 / options.sends
        print(f"bodies built: {options.sends / built:,.0f}/s ({each:.1f} us each)")
        asyncio.run(bare_aiohttp(url, encoded[:500], options.concurrency))  # warm up
        for round_number in range(1, options.rounds + 1):
            elapsed, accepted = asyncio.run(graph_client(base_url, requests, options.concurrency))
            bare = asyncio.run(bare_aiohttp(url, encoded, options.concurrency))
            print(
                f"round {round_number}: AsyncGraphClient {options.sends / elapsed:,.0f} sends/s "
                f"({accepted} wamids), bare aiohttp {options.sends / bare:,.0f} requests/s, "
                f"ratio {bare / elapsed:.2f}"
            )
    finally:
        server.terminate()
        server.join(timeout=5)


if __name__ == "__main__":
    main()
