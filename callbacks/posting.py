"""Posting claimed events to their endpoints: concurrent, over kept-alive connections.

One `Poster` lives as long as a delivery run: its event loop and aiohttp session (and so its
connections) last across rounds. Within a round each endpoint has its own bound on requests in
flight (CALLBACKS_ENDPOINT_CONCURRENCY) and every request a short timeout; posts not started when
the round's time is up are released for the next round, and an endpoint that times out or
refuses a connection gets no more posts in this round. So a slow or dead endpoint costs a round
about one timeout, and never holds another customer's events longer than that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
from django.conf import settings

from callbacks.addresses import (
    AddressRefused,
    GuardedResolver,
    literal_address_check,
    refused_error,
)
from callbacks.models import RESPONSE_EXCERPT_BYTES
from callbacks.signing import SIGNATURE_HEADER, signature_header
from callbacks.store import AttemptResult, Claim, ClaimedEvent, EndpointTarget, Outcome

USER_AGENT = "Mindo-Callbacks/1.0"
RETRYABLE_4XX = {408, 429}


def outcome_of_status(status: int) -> str:
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status >= 500 or status in RETRYABLE_4XX:
        return Outcome.RETRY
    # Other 4xx: the receiver refuses the body, sending it again would not help. A 3xx: redirects
    # are not followed (a redirect could point inside), so it is a refusal too.
    return Outcome.FAILED


def batches(target: EndpointTarget, events: list[ClaimedEvent]) -> Iterator[list[ClaimedEvent]]:
    size = settings.CALLBACKS_BATCH_SIZE if target.batch_events else 1
    for start in range(0, len(events), size):
        yield events[start : start + size]


def body_of(target: EndpointTarget, events: list[ClaimedEvent]) -> bytes:
    if not target.batch_events:
        return events[0].envelope()
    return b'{"events":[' + b",".join(event.envelope() for event in events) + b"]}"


class Poster:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.session: aiohttp.ClientSession | None = None

    def __enter__(self) -> Poster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.session is not None:
            self.loop.run_until_complete(self.session.close())
            self.session = None
        self.loop.close()

    def _session(self) -> aiohttp.ClientSession:
        if self.session is None:
            connector = aiohttp.TCPConnector(
                resolver=GuardedResolver(),
                limit=settings.CALLBACKS_MAX_CONNECTIONS,
                limit_per_host=settings.CALLBACKS_ENDPOINT_CONCURRENCY,
            )
            self.session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(
                    total=settings.CALLBACKS_TIMEOUT_SECONDS,
                    connect=min(settings.CALLBACKS_TIMEOUT_SECONDS, 3.0),
                ),
                headers={"User-Agent": USER_AGENT},
                skip_auto_headers=("Accept-Encoding",),
            )
        return self.session

    def post_round(self, claim: Claim) -> list[AttemptResult]:
        """Post every claimed event (in batches where the endpoint opted in); one result each."""
        return self.loop.run_until_complete(self._round(claim))

    async def _round(self, claim: Claim) -> list[AttemptResult]:
        session = self._session()
        by_endpoint: dict[str, list[ClaimedEvent]] = {}
        for event in claim.events:
            by_endpoint.setdefault(event.endpoint_id, []).append(event)
        deadline = time.monotonic() + settings.CALLBACKS_ROUND_SECONDS
        groups = [
            self._endpoint_round(session, claim.endpoints[endpoint_id], events, deadline)
            for endpoint_id, events in by_endpoint.items()
            if endpoint_id in claim.endpoints
        ]
        results: list[AttemptResult] = []
        for group in await asyncio.gather(*groups):
            results.extend(group)
        return results

    async def _endpoint_round(
        self,
        session: aiohttp.ClientSession,
        target: EndpointTarget,
        events: list[ClaimedEvent],
        deadline: float,
    ) -> list[AttemptResult]:
        semaphore = asyncio.Semaphore(settings.CALLBACKS_ENDPOINT_CONCURRENCY)
        unreachable = asyncio.Event()

        async def one(batch: list[ClaimedEvent]) -> AttemptResult:
            async with semaphore:
                if unreachable.is_set() or time.monotonic() >= deadline:
                    return AttemptResult(target.id, batch, Outcome.RELEASED)
                result = await self._post(session, target, batch)
                if result.outcome == Outcome.RETRY and result.status_code is None:
                    unreachable.set()
                return result

        return list(await asyncio.gather(*(one(batch) for batch in batches(target, events))))

    async def _post(
        self, session: aiohttp.ClientSession, target: EndpointTarget, events: list[ClaimedEvent]
    ) -> AttemptResult:
        body = body_of(target, events)
        attempted_at = datetime.now(UTC)
        result = AttemptResult(target.id, events, Outcome.RETRY, attempted_at=attempted_at)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature_header(target.secrets, int(time.time()), body),
        }
        started = time.monotonic()
        try:
            literal_address_check(urlsplit(target.url).hostname or "")
            async with session.post(
                target.url, data=body, headers=headers, allow_redirects=False
            ) as response:
                excerpt = await response.content.read(RESPONSE_EXCERPT_BYTES)
                result.status_code = response.status
                result.outcome = outcome_of_status(response.status)
                result.response_excerpt = excerpt.decode("utf-8", errors="replace").replace(
                    "\x00", ""
                )
                if result.outcome != Outcome.DELIVERED:
                    result.error = f"HTTP {response.status}"
        except (TimeoutError, AddressRefused, aiohttp.ClientError, OSError) as error:
            refused = refused_error(error)
            if refused is not None:
                result.outcome, result.error = Outcome.FAILED, str(refused)
            elif isinstance(error, asyncio.TimeoutError):
                result.error = f"Timed out after {settings.CALLBACKS_TIMEOUT_SECONDS:g} s"
            else:
                result.error = f"{type(error).__name__}: {error}"
        result.latency_ms = int((time.monotonic() - started) * 1000)
        return result
