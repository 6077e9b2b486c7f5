"""The sandbox times a send by when it reached the machine, not by when its loop got to it, and
counts a number's 1-s windows on those times whatever order it handles them in."""

from __future__ import annotations

import socket
import time

import orjson
from yarl import URL

from meta.graph_version import GRAPH_VERSION
from meta_sandbox import SandboxThread
from meta_sandbox.ratelimit import SendWindows
from tests.test_sandbox import NUMBER, TIMEOUT, TOKEN, config, welcome


def request_bytes(to: str) -> bytes:
    body = orjson.dumps(welcome(to=to, callback=None))
    head = (
        f"POST /{GRAPH_VERSION}/{NUMBER}/messages HTTP/1.1\r\nHost: sandbox\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


def answer_status(connection: socket.socket) -> int:
    """The status of the next answer on the keep-alive `connection` (read whole)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += connection.recv(65536)
    head, _, rest = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += connection.recv(65536)
    return int(head.split()[1])


def test_a_send_that_came_while_the_sandbox_was_busy_is_timed_at_its_arrival() -> None:
    with SandboxThread(config()) as sandbox:
        url = URL(sandbox.url)
        with socket.create_connection((url.host, url.port), timeout=TIMEOUT) as connection:
            connection.sendall(request_bytes("5491100000001"))
            assert answer_status(connection) == 200
            first_answered = time.time()
            with sandbox.paused():
                # The same connection's next request: its bytes are in the sandbox's kernel
                # once sendall returns, and its loop gets to them only after the pause.
                connection.sendall(request_bytes("5491100000002"))
                sent_by = time.time()
            assert answer_status(connection) == 200
        handled_after = time.time()
        first, second = sandbox.control("messages")["messages"]

    assert first["to"] == "5491100000001"
    assert first["received_at"] <= first_answered
    assert first_answered <= second["received_at"] <= sent_by < handled_after


def test_windows_count_arrivals_handled_out_of_order() -> None:
    windows = SendWindows()

    for moment in (10.0, 10.9, 10.2, 11.1, 10.95):
        windows.record(NUMBER, moment)

    # (10.1, 11.1] holds 10.9, 10.2, 11.1 and 10.95: the late-handled ones count where they arrived.
    assert windows.max_in_one_second == {NUMBER: 4}
    assert windows.count(NUMBER, 11.1) == 4


def test_a_send_handled_over_a_second_after_later_ones_opens_no_window() -> None:
    windows = SendWindows()
    for moment in (20.0, 20.5):
        windows.record(NUMBER, moment)

    windows.record(NUMBER, 19.4)

    assert windows.max_in_one_second == {NUMBER: 2}
    assert windows.count(NUMBER, 20.5) == 2
