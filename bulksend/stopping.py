"""A send's stop mark in Redis: what a worker in the middle of a batch checks before every request.

The database says whether a send may go on (CANCELLED, `paused_at`), and a drain reads it before it
hands each batch to its sender. A batch already handed over is what the mark is for: cancelling or
pausing a send sets it, and the sender asks before each request, so it stops before its next
request to Meta instead of at the end of the batch:
- paced (the usual case), in the limiter's own script (messaging.ratelimit's stop key): the Redis
  call it makes for its permits anyway refuses them, at no extra cost;
- unpaced, by reading the mark at most every STOP_POLL_SECONDS between requests.
The endpoint that stopped the send then waits until no message of it is claimed and unsent
(bulksend.lifecycle), so that nothing is sent after its answer.

The mark is set and cleared under the send's row lock, inside the transaction that pauses,
cancels or resumes it, so a pause and a resume racing leave the mark as the last of them says.
Redis away: setting the mark is given up (logged): the drain's check of the database before each
batch and the endpoint's wait still keep anything from going out after the answer. Clearing it is
not: a mark left behind would hold a resumed send for good, so a resume refuses (503) while Redis
cannot be reached.

The mark's key carries the send's number as its hash tag, `bulksend:stopped:{<number>}:<send>`,
so that on Redis Cluster it shares the slot of the number's rate key and the limiter's script may
read both (messaging.ratelimit). On a plain Redis the legacy key of earlier versions,
`bulksend:stopped:<send>`, is set, cleared and read alongside it, so that a rolling deploy misses
no mark: an old web server's mark stops a new worker and a new one's stops an old worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

from django.conf import settings

from bulksend.liveness import redis_client
from messaging.ratelimit import LimiterStopped
from mindo.redisconn import REDIS_ERRORS

logger = logging.getLogger(__name__)

STOP_KEY = "bulksend:stopped:{{{number}}}:{send}"
LEGACY_STOP_KEY = "bulksend:stopped:{send}"
STOP_KEY_PATTERN = "bulksend:stopped:*"
# A cancelled send never sends again: its mark outlives any drain that could still be stuck in
# one of its batches (a stopped process that resumes), then goes. A paused one's lives until the
# resume clears it.
CANCELLED_MARK_SECONDS = 7 * 24 * 3600
# How often an unpaced sender reads the mark: one Redis call per this many seconds, not per request.
STOP_POLL_SECONDS = 0.02


def send_stop_keys(bulk_send_id: uuid.UUID | str, phone_number_id: str) -> tuple[str, ...]:
    """The keys of the send's mark (`phone_number_id`: Meta's id of the send's number, the
    limiter's key): the tagged one, and on a plain Redis the legacy one (see the module)."""
    tagged = STOP_KEY.format(number=phone_number_id, send=bulk_send_id)
    if settings.REDIS_CLUSTER:
        return (tagged,)
    return (tagged, LEGACY_STOP_KEY.format(send=bulk_send_id))


def send_stop_mark(
    bulk_send_id: uuid.UUID | str, phone_number_id: str, *, why: str, forever: bool = False
) -> bool:
    """Set the send's mark (`forever`: a cancelled send's, which expires on its own much later);
    False (logged) when Redis is away."""
    try:
        for key in send_stop_keys(bulk_send_id, phone_number_id):
            redis_client().set(key, why, ex=None if not forever else CANCELLED_MARK_SECONDS)
    except REDIS_ERRORS as error:
        logger.warning("Cannot mark send %s %s in Redis: %s", bulk_send_id, why, error)
        return False
    return True


def send_stop_clear(bulk_send_id: uuid.UUID | str, phone_number_id: str) -> None:
    """Clear the send's mark; raises one of REDIS_ERRORS when Redis is away (see the module).
    One key per command: on a cluster, keys of two slots never share one."""
    for key in send_stop_keys(bulk_send_id, phone_number_id):
        redis_client().delete(key)


def send_stop_is_set(bulk_send_id: uuid.UUID | str, phone_number_id: str) -> bool:
    """Whether the send's mark is set; False (logged) when Redis cannot say: the database check
    before each batch still holds."""
    try:
        # One round trip: on a plain Redis both keys in one EXISTS, on a cluster there is one.
        return bool(redis_client().exists(*send_stop_keys(bulk_send_id, phone_number_id)))
    except REDIS_ERRORS as error:
        logger.warning("Cannot read the stop mark of send %s: %s", bulk_send_id, error)
        return False


class StopPoll:
    """For an unpaced sender: `await poll()` before each request raises `LimiterStopped` once the
    send's mark is set, reading Redis at most every STOP_POLL_SECONDS.

    The read runs in a thread, not on the sending loop: a blocking call there would hold every
    request in flight until Redis answers. Only the request whose turn it is to read waits for the
    answer; the others go on meanwhile, as they would have in the 20 ms before the read.
    """

    def __init__(self, bulk_send_id: uuid.UUID | str, phone_number_id: str) -> None:
        self.bulk_send_id = bulk_send_id
        self.phone_number_id = phone_number_id
        self._next_read = 0.0

    def read_next(self) -> None:
        """Have the next call read the mark, however recent the last read."""
        self._next_read = 0.0

    async def __call__(self) -> None:
        now = time.monotonic()
        if now < self._next_read:
            return
        self._next_read = now + STOP_POLL_SECONDS
        if await asyncio.to_thread(send_stop_is_set, self.bulk_send_id, self.phone_number_id):
            raise LimiterStopped(f"send {self.bulk_send_id} is stopped")
