"""When a request reached the sandbox's machine: the kernel's receive time, not the loop's.

Meta counts a number's rate by when requests reach it. A stamp taken in the handler is later
than that by however long the sandbox's one event loop took to get to the request (posting
status webhooks, a garbage collection, a busy machine): requests that came in evenly during
such a pause are all stamped right after it, bunched, and a sender that never went above its
rate would seem to. So the listening socket asks the kernel to time every packet it receives
(SO_TIMESTAMPNS, Linux) and reads with `recvmsg`, which returns that time; the first read after
a request was answered carries the next request's arrival (the service's client sends a
connection's next request only once it has the answer). Where the kernel gives no time, the
moment of the read stands in.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

# Linux's SO_TIMESTAMPNS (timespec) and its control message; Python names neither.
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
TIMESPEC = struct.Struct("@qq")
ANCILLARY_BYTES = socket.CMSG_SPACE(TIMESPEC.size)
ARRIVAL = "meta_sandbox.arrival"  # the request's key for it

# Per connection (by file descriptor): the wall time the first bytes read since its last request
# was answered reached the machine.
_pending: dict[int, float] = {}


def _stamp_of(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SCM_TIMESTAMPNS and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return time.time()


def _stamp_on(sock: socket.socket) -> None:
    # Not Linux: reads are timed when they happen.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


class _StampedConnection(socket.socket):
    """An accepted connection whose reads note when their first bytes arrived."""

    def recv(self, size: int, flags: int = 0, /) -> bytes:
        data, ancillary, _, _ = self.recvmsg(size, ANCILLARY_BYTES, flags)
        if data:
            _pending.setdefault(self.fileno(), _stamp_of(ancillary))
        return data

    def close(self) -> None:
        _pending.pop(self.fileno(), None)
        super().close()


class _StampedListener(socket.socket):
    def accept(self) -> tuple[socket.socket, Any]:
        fd, address = self._accept()  # type: ignore[attr-defined]
        connection = _StampedConnection(self.family, self.type, self.proto, fileno=fd)
        if socket.getdefaulttimeout() is None and self.gettimeout():
            connection.setblocking(True)
        _stamp_on(connection)
        return connection, address


def listening_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port) whose connections' requests carry their kernel
    arrival time (`arrival_middleware`); port 0 takes a free one."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = _StampedListener(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _stamp_on(sock)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


def _fileno(request: web.Request) -> int | None:
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    return sock.fileno() if sock is not None else None


@web.middleware
async def arrival_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Give the request its arrival time (`arrival_of`); once it is handled, the next bytes on
    its connection are the next request's."""
    fileno = _fileno(request)
    stamp = _pending.pop(fileno, None) if fileno is not None else None
    request[ARRIVAL] = stamp if stamp is not None else time.time()
    try:
        return await handler(request)
    finally:
        if fileno is not None:
            _pending.pop(fileno, None)  # the body's later segments: not a new request


def arrival_of(request: web.Request) -> float:
    """The wall time the request reached the machine (its handling time when no middleware
    stamped it)."""
    return request.get(ARRIVAL, time.time())
