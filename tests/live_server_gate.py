"""Knowing when the live server is done with a request, including what it does after answering.

The webhook endpoint answers Meta first and applies the stored bodies in the response's
`close()`, which the server thread calls after the last byte: a client has its 200 while the
server still writes. A test that ends then lets that work run into the next test's database (the
flush at teardown, then an IntegrityError). The gate wraps the live server's WSGI application,
counts requests until their `close()` returns, and at the end of each test stops taking new ones
(a late webhook from a sandbox being torn down gets a 503 that touches nothing) and waits for the
ones in flight.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import orjson

# However busy the machine: a wait returns as soon as the last request is done.
SETTLE_TIMEOUT = 120.0

_CLOSED_BODY = orjson.dumps({"error": "The test is over"})


class _Finishing:
    """A response body that reports when the server has closed it (after any after-answer
    work)."""

    def __init__(self, body: Iterable[bytes], finished: Callable[[], None]) -> None:
        self.body = body
        self.finished = finished

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.finished()


class LiveServerGate:
    """The live server's WSGI application, counting the requests it has not finished."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app
        self._state = threading.Condition()
        self._in_flight = 0
        self._open = True

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        with self._state:
            if not self._open:
                start_response(
                    "503 Service Unavailable",
                    [
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(len(_CLOSED_BODY))),
                    ],
                )
                return [_CLOSED_BODY]
            self._in_flight += 1
        try:
            body = self.app(environ, start_response)
        except BaseException:
            self._finished()
            raise
        return _Finishing(body, self._finished)

    def _finished(self) -> None:
        with self._state:
            self._in_flight -= 1
            self._state.notify_all()

    def open(self) -> None:
        with self._state:
            self._open = True

    def wait_until_idle(self, *, close: bool = False, timeout: float = SETTLE_TIMEOUT) -> None:
        """Wait until no request is in flight; with `close`, refuse new ones from now on."""
        with self._state:
            if close:
                self._open = False
            if not self._state.wait_for(lambda: self._in_flight == 0, timeout):
                raise AssertionError(
                    f"The live server still had {self._in_flight} request(s) in flight after "
                    f"{timeout} s"
                )


def live_server_gate(live_server: Any) -> LiveServerGate:
    """The gate in front of `live_server`'s application, put there on first use."""
    httpd = live_server.thread.httpd
    app = httpd.get_app()
    if isinstance(app, LiveServerGate):
        return app
    gate = LiveServerGate(app)
    httpd.set_app(gate)
    return gate
