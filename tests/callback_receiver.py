"""A customer's endpoint for the tests: a real HTTP server on 127.0.0.1 that verifies every
`Mindo-Signature` with the secrets it is given and records every event it receives.

Answers are scripted: `answers` holds the statuses of the next requests (then 200), `delay`
holds each answer back (a timeout, from the sender's side). `stop()` then `start()` on the same
port plays a receiver that is down for a while. `hold()` keeps every request open after its
events are recorded, with `arrived` set, until `release()`: a sender is mid-request for as long
as the test wants, with no sleep.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from callbacks.signing import SIGNATURE_HEADER, signature_verify

# A held request is let go after this long whatever the test does, so no thread outlives it.
HOLD_LIMIT_SECONDS = 300.0


@dataclass
class Received:
    event: dict[str, Any]
    signature: str
    batch: bool


@dataclass
class CallbackReceiver:
    port: int = 0
    secrets: list[str] = field(default_factory=list)
    answers: deque[int] = field(default_factory=deque)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    bad_signatures: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Open (set) unless held; `arrived` is set by a request that found it closed.
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/mindo"

    def start(self) -> CallbackReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if receiver.delay:
                    time.sleep(receiver.delay)
                status = receiver._take(body, self.headers.get(SIGNATURE_HEADER) or "")
                if not receiver.gate.is_set():
                    receiver.arrived.set()
                    receiver.gate.wait(timeout=HOLD_LIMIT_SECONDS)
                payload = b'{"ok":true}' if status < 300 else b'{"error":"try later"}'
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.gate.set()
        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def hold(self) -> None:
        """Keep the next requests open (their events recorded) until `release()`."""
        self.arrived.clear()
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()

    def _take(self, body: bytes, header: str) -> int:
        with self.lock:
            self.requests += 1
            if not any(
                signature_verify(header, body, secret, now=int(time.time()))
                for secret in self.secrets
            ):
                self.bad_signatures += 1
                return 400
            status = self.answers.popleft() if self.answers else 200
            if status >= 300:
                return status
            document = orjson.loads(body)
            batch = "events" in document
            for event in document["events"] if batch else [document]:
                self.received.append(Received(event, header, batch))
            return status

    def events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [
                item.event
                for item in self.received
                if event_type is None or item.event["type"] == event_type
            ]

    def ids(self) -> list[str]:
        return [event["id"] for event in self.events()]
