"""A large request body kept in a temporary file, read once from the socket in chunks.

send-bulk takes bodies of hundreds of megabytes (a million recipients): read whole, one would be
a `bytes` of that size and, parsed, a Python object per value (gigabytes). Spooled, it costs a
few megabytes of memory whatever its size, and can be read again (twice: its checks, then its
messages) or hashed for its Idempotency-Key without holding it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from mindo.parsers import too_large

# Where the spool is kept on the request (Django's HttpRequest, which DRF's Request wraps).
SPOOL_ATTRIBUTE = "_mindo_body_spool"
# Bodies up to this size stay in memory; larger ones go to a temporary file.
IN_MEMORY_BYTES = 8 * 1024 * 1024
CHUNK_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class BodySpool:
    file: IO[bytes]
    size: int

    def reader(self) -> IO[bytes]:
        """The body from its first byte (one reader at a time)."""
        self.file.seek(0)
        return self.file

    def chunks(self) -> Iterator[bytes]:
        reader = self.reader()
        while part := reader.read(CHUNK_BYTES):
            yield part


def body_spool(request: Any) -> BodySpool | None:
    """The request's spooled body, when `body_spool_read` kept one."""
    spool: BodySpool | None = getattr(_django_request(request), SPOOL_ATTRIBUTE, None)
    return spool


def body_spool_read(request: Any, *, limit: int) -> BodySpool:
    """Read the request's body into a spool (413 past `limit` bytes, declared or read) and keep
    it on the request; the body is read from the socket only once."""
    spool = body_spool(request)
    if spool is not None:
        return spool
    declared = request.META.get("CONTENT_LENGTH")
    if declared and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    # Lives as long as the request: an unnamed file, gone from the disk once it is collected.
    file = tempfile.SpooledTemporaryFile(max_size=IN_MEMORY_BYTES)  # noqa: SIM115
    size = 0
    stream = request.stream  # None for an empty body
    while stream is not None and (part := stream.read(CHUNK_BYTES)):
        size += len(part)
        if size > limit:
            file.close()
            raise too_large(limit)
        file.write(part)
    spool = BodySpool(file, size)
    setattr(_django_request(request), SPOOL_ATTRIBUTE, spool)
    return spool


def request_body_chunks(request: Any) -> Iterator[bytes]:
    """The body as it came, from its spool when it has one (never read into one `bytes`)."""
    spool = body_spool(request)
    if spool is None:
        yield request.body
    else:
        yield from spool.chunks()


def _django_request(request: Any) -> Any:
    return getattr(request, "_request", request)
