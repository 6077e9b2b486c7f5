"""Posting status webhooks without ever holding up a send.

A send only pushes its statuses onto a heap ordered by due time (no I/O, no await). One worker
task pops whatever is due, waits `webhook_linger` so that statuses due at about the same moment
travel together, groups them by phone number in POSTs of up to `webhook_batch_size` statuses,
and hands each POST to its own task, at most `webhook_concurrency` on the wire at once. A POST
that fails (no answer, or not 2xx) is retried with exponential backoff, `webhook_attempts` times
in all, as Meta retries; then it is abandoned and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from meta_sandbox.config import SandboxConfig
from meta_sandbox.signature import signature_header
from meta_sandbox.statuses import ScheduledStatus, webhook_document

logger = logging.getLogger(__name__)

POST_TIMEOUT = aiohttp.ClientTimeout(total=10.0)
FIRST_BACKOFF = 0.5


class WebhookDispatcher:
    def __init__(self, config: Callable[[], SandboxConfig]) -> None:
        self._config = config
        self._heap: list[tuple[float, int, ScheduledStatus]] = []
        self._sequence = itertools.count()
        self._wakeup = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._slots: asyncio.Semaphore | None = None
        # A reset starts a new generation: posts still in flight no longer touch the counters.
        self._generation = 0
        self.pending = 0
        self.posted = 0
        self.statuses_posted = 0
        self.failures = 0
        self.abandoned = 0

    async def start(self) -> None:
        config = self._config()
        self._slots = asyncio.Semaphore(config.webhook_concurrency)
        self._session = aiohttp.ClientSession(
            timeout=POST_TIMEOUT,
            connector=aiohttp.TCPConnector(limit=config.webhook_concurrency),
        )
        self._worker = asyncio.create_task(self._run(), name="sandbox-webhooks")

    async def stop(self) -> None:
        tasks = [task for task in (self._worker, *self._tasks) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._session is not None:
            await self._session.close()

    def schedule(self, due: float, status: ScheduledStatus) -> None:
        """Queue `status` to leave at loop time `due`; never blocks."""
        entry = (due, next(self._sequence), status)
        heapq.heappush(self._heap, entry)
        self.pending += 1
        if self._heap[0] is entry:
            self._wakeup.set()

    def reset(self) -> None:
        self._heap.clear()
        self._generation += 1
        self.pending = self.posted = self.statuses_posted = self.failures = self.abandoned = 0

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            if not self._heap:
                await self._wakeup.wait()
                continue
            delay = self._heap[0][0] - loop.time()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)
                continue
            await asyncio.sleep(self._config().webhook_linger)
            self._dispatch_due(loop.time())

    def _dispatch_due(self, now: float) -> None:
        by_number: defaultdict[str, list[ScheduledStatus]] = defaultdict(list)
        while self._heap and self._heap[0][0] <= now:
            status = heapq.heappop(self._heap)[2]
            by_number[status.phone_number_id].append(status)
        size = self._config().webhook_batch_size
        for statuses in by_number.values():
            for start in range(0, len(statuses), size):
                batch = statuses[start : start + size]
                self._start(orjson.dumps(webhook_document(batch)), len(batch))

    def post_document(self, document: Mapping[str, Any]) -> None:
        """Post a body of another field (a user's preferences) now, retried like statuses;
        counted as one pending item until it leaves."""
        self.pending += 1
        self._start(orjson.dumps(document), 0, items=1)

    def _start(self, body: bytes, statuses: int, *, items: int | None = None) -> None:
        task = asyncio.create_task(
            self._deliver(body, statuses, statuses if items is None else items)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, body: bytes, statuses: int, items: int) -> None:
        """POST `body` (carrying `statuses` statuses, `items` of the pending count)."""
        generation = self._generation
        delivered = False
        try:
            for attempt in range(self._config().webhook_attempts):
                if attempt:
                    await asyncio.sleep(FIRST_BACKOFF * 2 ** (attempt - 1))
                config = self._config()
                if not config.webhook_url:
                    return
                delivered = await self._post(config, body)
                if generation != self._generation:
                    return
                if delivered:
                    self.posted += 1
                    self.statuses_posted += statuses
                    return
                self.failures += 1
            self.abandoned += 1
            logger.warning("Gave up a webhook of %d statuses.", statuses)
        finally:
            if generation == self._generation:
                self.pending -= items

    async def _post(self, config: SandboxConfig, body: bytes) -> bool:
        assert self._session is not None
        assert self._slots is not None
        assert config.webhook_url
        headers = {
            "Content-Type": "application/json",
            "X-Hub-Signature-256": signature_header(body, config.app_secret),
        }
        async with self._slots:
            try:
                async with self._session.post(config.webhook_url, data=body, headers=headers) as r:
                    await r.read()
                    return 200 <= r.status < 300
            except (aiohttp.ClientError, TimeoutError) as error:
                logger.debug("Webhook POST failed: %r", error)
                return False
