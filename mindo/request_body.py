"""Reading a request body within a limit, from a Content-Length or a chunked upload.

Shared by whatever reads bodies (the API's middleware here; Meta's webhook endpoint may use
`wsgi_body_read` too). Two things the servers do not do for us:

- A chunked upload (`Transfer-Encoding: chunked`) has no Content-Length. gunicorn decodes its
  chunks into `wsgi.input`, but Django sizes its stream by CONTENT_LENGTH and so reads it as
  empty. `wsgi_body_read` reads `wsgi.input` itself, never more than the limit and one byte.
- A server that answers before reading the body (a 413, a 401) and closes the connection with
  the body still unread makes the kernel reset it, and the client sees a reset instead of the
  answer. `stream_drain` reads and discards what is left, up to a bound, first.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

READ_CHUNK_BYTES = 64 * 1024


class Readable(Protocol):
    """A file of bytes, `wsgi.input` or a Django request."""

    def read(self, size: int, /) -> bytes: ...


def request_is_chunked(environ: Mapping[str, Any]) -> bool:
    """Whether the body comes in chunks, with no Content-Length to size it."""
    encoding = str(environ.get("HTTP_TRANSFER_ENCODING", "")).lower()
    return "chunked" in encoding and not environ.get("CONTENT_LENGTH")


def stream_read(stream: Readable, max_bytes: int) -> bytes:
    """At most `max_bytes` of `stream`: fewer only when it ends first."""
    parts: list[bytes] = []
    remaining = max_bytes
    while remaining > 0:
        part = stream.read(min(READ_CHUNK_BYTES, remaining))
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def stream_drain(stream: Readable, max_bytes: int) -> bool:
    """Read and discard up to `max_bytes` of `stream`; True when it ended within them."""
    remaining = max_bytes
    while remaining >= 0:
        part = stream.read(READ_CHUNK_BYTES)
        if not part:
            return True
        remaining -= len(part)
    return False


def wsgi_body_read(environ: Mapping[str, Any], *, limit: int) -> bytes:
    """The body of a WSGI request, at most `limit` + 1 bytes, whether it declared its length or
    came in chunks: more than `limit` bytes back means the body is over the limit."""
    stream = environ["wsgi.input"]
    if request_is_chunked(environ):
        return stream_read(stream, limit + 1)
    declared = str(environ.get("CONTENT_LENGTH") or "0")
    length = int(declared) if declared.isdigit() else 0
    return stream_read(stream, min(length, limit + 1))
