"""The bare client of bench/drain_unpaced.py: the same template messages the engine sends, built
and encoded before any clock, posted straight to the sandbox by one aiohttp session with as many
requests in flight as a drain has. The HTTP ceiling on this machine, against which the engine's
rate is given as a ratio."""

from __future__ import annotations

import asyncio
import time

import orjson

from bench.drain_support import BARE_BASE, GRAPH_VERSION, TEMPLATE
from bench.support import Demo


def bare_bodies(demo: Demo, size: int) -> list[bytes]:
    """The bodies the engine would build for this template, encoded once, before any clock."""
    from meta.template_message import template_message_body
    from templates_app.models import MessageTemplate
    from templates_app.shapes import template_shape

    template = MessageTemplate.objects.get(
        business_account__phone_numbers__phone_number_id=demo.phone_number_id,
        name=TEMPLATE,
        language=demo.language,
    )
    shape = template_shape(template)
    return [
        orjson.dumps(
            template_message_body(
                to_e164=f"+54911{BARE_BASE + i:08d}",
                template=shape,
                variables={"name": f"Cliente {i}", "code": f"C{i:06d}"},
                button_variables={"button_0": f"B-{i}"},
                # Names no message: the sandbox's webhooks for it are kept, never applied.
                callback_data=f"bench-bare:{i}",
            )
        )
        for i in range(size)
    ]


async def bare_send(
    meta: str, demo: Demo, bodies: list[bytes], concurrency: int
) -> tuple[float, int]:
    """Send every body with `concurrency` requests in flight; (seconds, 200 answers)."""
    import aiohttp

    from templates_app.models import PhoneNumber

    number = await PhoneNumber.objects.select_related("business_account").aget(
        phone_number_id=demo.phone_number_id
    )
    url = f"{meta}/{GRAPH_VERSION}/{demo.phone_number_id}/messages"
    headers = {
        "Authorization": f"Bearer {number.business_account.access_token}",
        "Content-Type": "application/json",
    }
    ok = 0
    connector = aiohttp.TCPConnector(limit=max(concurrency, 1))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        # Open the connections off the clock, as a drain's session has them after its first batch.
        async def warm() -> None:
            async with session.get(f"{meta}/_sandbox/stats") as response:
                await response.read()

        await asyncio.gather(*(warm() for _ in range(concurrency)))
        indexes = iter(range(len(bodies)))

        async def worker() -> None:
            nonlocal ok
            for index in indexes:
                async with session.post(url, data=bodies[index], headers=headers) as response:
                    await response.read()
                    ok += response.status == 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, ok
