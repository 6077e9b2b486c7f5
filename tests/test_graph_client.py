"""The async Graph API client against a fake Meta at the HTTP boundary (an in-process server)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from meta.graph import AsyncGraphClient, GraphConfig, SendOutcome, SendRequest
from meta.graph_errors import ErrorClass

BODY = {"messaging_product": "whatsapp", "to": "5491112345678", "type": "template"}


def meta_error(
    code: int, message: str, details: str | None = None, subcode: int | None = None
) -> dict[str, Any]:
    """An error body as Meta's Cloud API writes it."""
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    if subcode is not None:
        error["error_subcode"] = subcode
    error["fbtrace_id"] = "AbCdEf123"
    return {"error": error}


# phone_number_id -> (HTTP status, body) the fake answers with; texts as Meta writes them.
ANSWERS: dict[str, tuple[int, Any]] = {
    "130429": (
        400,
        meta_error(
            130429, "(#130429) Rate limit hit", "Cloud API message throughput has been reached."
        ),
    ),
    "131056": (
        400,
        meta_error(
            131056,
            "(#131056) (Business Account, Consumer Account) pair rate limit hit",
            "Too many messages sent from the sender phone number to the same recipient phone "
            "number in a short period of time.",
        ),
    ),
    "131000": (
        500,
        meta_error(
            131000, "Something went wrong", "Message failed to send due to an unknown error."
        ),
    ),
    "131049": (
        400,
        meta_error(
            131049,
            "This message was not delivered to maintain healthy ecosystem engagement.",
            "In order to maintain a healthy ecosystem engagement, the message failed to be "
            "delivered.",
        ),
    ),
    "131026": (400, meta_error(131026, "Message undeliverable", "Message Undeliverable.")),
    "132000": (
        400,
        meta_error(
            132000,
            "(#132000) Number of parameters does not match the expected number of params",
            "body: number of localizable_params (1) does not match the expected number of "
            "params (2)",
        ),
    ),
    "132001": (
        404,
        meta_error(
            132001,
            "(#132001) Template name does not exist in the translation",
            "template name (promo) does not exist in es",
        ),
    ),
    "190": (
        401,
        meta_error(
            190,
            "Error validating access token: Session has expired on Friday, 01-Mar-24 08:00:00 PST.",
            subcode=463,
        ),
    ),
    "368": (400, meta_error(368, "(#368) Temporarily blocked for policies violations")),
    "100": (400, meta_error(100, "(#100) Invalid parameter", "Parameter 'to' is invalid.")),
    "502": (502, "<html><body><h1>502 Bad Gateway</h1></body></html>"),
}


class FakeMeta:
    """Answers POST /v21.0/{phone_number_id}/messages; counts connections and requests in flight."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        # Answer nothing until this many requests are in flight at once (0: no waiting), so
        # that a slow machine cannot finish one before the client has sent the others.
        self.gather = 0
        self._gathered = asyncio.Event()
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections: set[int] = set()
        self.bodies: list[dict[str, Any]] = []
        # Awaited before a send is answered, given its body: a test's hold on one answer.
        self.before_answer: Callable[[dict[str, Any]], Awaitable[None]] | None = None
        app = web.Application()
        app.router.add_post("/v21.0/{phone_number_id}/messages", self.messages)
        self.server = TestServer(app, host="127.0.0.1")

    @property
    def url(self) -> str:
        return str(self.server.make_url("/v21.0"))

    async def __aenter__(self) -> FakeMeta:
        await self.server.start_server()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.server.close()

    async def messages(self, request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        self.connections.add(id(request.transport))
        assert request.headers["Authorization"] == "Bearer token-1"
        body = orjson.loads(await request.read())
        self.bodies.append(body)
        number = request.match_info["phone_number_id"]
        if number == "slow":
            await asyncio.sleep(1.0)
        elif number == "hang-up":
            request.transport.close()  # the request was read, the answer never comes
            await asyncio.sleep(0.05)
            return web.Response()
        elif number in ANSWERS:
            status, answer = ANSWERS[number]
            if isinstance(answer, str):
                return web.Response(status=status, text=answer, content_type="text/html")
            return web.json_response(answer, status=status)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        if self.in_flight >= self.gather:
            self._gathered.set()
        await asyncio.wait_for(self._gathered.wait(), timeout=60)
        if self.before_answer is not None:
            await self.before_answer(body)
        await asyncio.sleep(self.delay)
        self.in_flight -= 1
        wamid = f"wamid.{body.get('to')}"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid, "message_status": "accepted"}],
            }
        )


def run(scenario: Callable[[FakeMeta, AsyncGraphClient], Awaitable[Any]], **client: Any) -> Any:
    async def main() -> Any:
        async with FakeMeta() as meta, AsyncGraphClient(base_url=meta.url, **client) as graph:
            return await asyncio.wait_for(scenario(meta, graph), timeout=120)

    return asyncio.run(main())


def send(phone_number_id: str, **client: Any) -> SendOutcome:
    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> SendOutcome:
        return await graph.send_template(
            phone_number_id=phone_number_id, access_token="token-1", body=BODY
        )

    outcome: SendOutcome = run(scenario, **client)
    return outcome


def test_an_accepted_message_returns_its_wamid() -> None:
    outcome = send("813497231850626")

    assert outcome == SendOutcome(wamid="wamid.5491112345678", error=None)


@pytest.mark.parametrize(
    ("phone_number_id", "code", "error_class", "http_status"),
    [
        ("130429", "130429", ErrorClass.RETRY, 400),
        ("131056", "131056", ErrorClass.RETRY, 400),
        ("131000", "131000", ErrorClass.RETRY, 500),
        ("131049", "131049", ErrorClass.DEFER, 400),
        ("131026", "131026", ErrorClass.FAIL, 400),
        ("132000", "132000", ErrorClass.FAIL, 400),
        ("132001", "132001", ErrorClass.FAIL, 404),
        ("190", "190", ErrorClass.HALT, 401),
        ("368", "368", ErrorClass.HALT, 400),
        ("100", "100", ErrorClass.FAIL, 400),
        ("502", "http_502", ErrorClass.RETRY, 502),
    ],
)
def test_meta_errors_are_classified(
    phone_number_id: str, code: str, error_class: ErrorClass, http_status: int
) -> None:
    outcome = send(phone_number_id)

    assert outcome.wamid is None
    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.error_class) == (code, error_class)
    assert outcome.error.http_status == http_status
    assert outcome.error.maybe_delivered is False


def test_an_error_keeps_meta_message_and_details_for_the_message_row() -> None:
    outcome = send("132000")

    assert outcome.error is not None
    assert outcome.error.text == (
        "(#132000) Number of parameters does not match the expected number of params: "
        "body: number of localizable_params (1) does not match the expected number of params (2)"
    )
    assert outcome.error.fbtrace_id == "AbCdEf123"
    assert outcome.error.permanent


def test_a_proxy_error_page_is_kept_short() -> None:
    outcome = send("502")

    assert outcome.error is not None
    assert outcome.error.text == "HTTP 502 Bad Gateway from the Graph API"


def test_an_expired_token_keeps_its_subcode() -> None:
    outcome = send("190")

    assert outcome.error is not None
    assert outcome.error.subcode == "463"


def test_a_timeout_is_retried_and_may_have_been_delivered() -> None:
    outcome = send("slow", timeout=0.3)

    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.error_class) == ("timeout", ErrorClass.RETRY)
    assert outcome.error.maybe_delivered is True


def test_a_connection_closed_after_the_request_may_have_delivered_the_message() -> None:
    outcome = send("hang-up")

    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.error_class) == ("connection_lost", ErrorClass.RETRY)
    assert outcome.error.maybe_delivered is True


def test_a_refused_connection_was_not_delivered() -> None:
    async def main() -> SendOutcome:
        async with AsyncGraphClient(base_url="http://127.0.0.1:9/v21.0") as graph:
            return await graph.send_template(phone_number_id="1", access_token="t", body=BODY)

    outcome = asyncio.run(main())

    assert outcome.error is not None
    assert (outcome.error.code, outcome.error.error_class) == ("connection_error", ErrorClass.RETRY)
    assert outcome.error.maybe_delivered is False


def sockets_connected_to(port: int) -> list[socket.socket]:
    """This process's TCP sockets connected to 127.0.0.1:`port` (copies of their descriptors)."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        try:
            sock = socket.socket(fileno=os.dup(int(name)))
        except OSError:
            continue  # not a socket, or closed meanwhile
        try:
            if sock.family == socket.AF_INET and sock.getpeername() == ("127.0.0.1", port):
                found.append(sock)
                continue
        except OSError:
            pass  # not connected
        sock.close()
    return found


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="Linux only")
def test_what_a_connection_holds_for_meta_is_dropped_once_the_call_would_have_timed_out() -> None:
    """A request the client gave up on counts as maybe delivered and may be sent again later:
    its connection's kernel must not deliver it after that (TCP_USER_TIMEOUT, the call's whole
    budget), as it would once a cut-off link came back (bench/multihost.sh, scenario B)."""

    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> list[int]:
        outcome = await graph.send_template(
            phone_number_id="813497231850626", access_token="token-1", body=BODY
        )
        assert outcome.error is None
        # The connection stays open for the next send (keep-alive).
        sockets = sockets_connected_to(meta.server.port or 0)
        try:
            return [s.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) for s in sockets]
        finally:
            for sock in sockets:
                sock.close()

    assert run(scenario, timeout=7.5) == [7_500]


def requests_for(count: int) -> list[SendRequest]:
    return [
        SendRequest("813497231850626", "token-1", {**BODY, "to": f"54911{index:08d}"})
        for index in range(count)
    ]


def test_send_many_keeps_the_order_and_bounds_the_requests_in_flight() -> None:
    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> tuple[list[SendOutcome], int]:
        meta.delay, meta.gather = 0.01, 7
        outcomes = await graph.send_many(requests_for(100), concurrency=7)
        return outcomes, meta.max_in_flight

    outcomes, max_in_flight = run(scenario)

    assert [outcome.wamid for outcome in outcomes] == [
        f"wamid.54911{index:08d}" for index in range(100)
    ]
    assert max_in_flight == 7


def test_send_many_reuses_its_connections() -> None:
    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> tuple[int, int]:
        outcomes = await graph.send_many(requests_for(200), concurrency=10)
        assert all(outcome.wamid for outcome in outcomes)
        return len(meta.bodies), len(meta.connections)

    requests, connections = run(scenario)

    assert requests == 200
    assert connections <= 10


def test_send_many_waits_for_before_send_before_each_request() -> None:
    calls = 0

    async def before_send() -> None:
        nonlocal calls
        calls += 1

    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> list[SendOutcome]:
        return await graph.send_many(requests_for(30), concurrency=4, before_send=before_send)

    outcomes = run(scenario)

    assert len(outcomes) == 30
    assert calls == 30


def test_batches_sharing_slots_overlap_and_keep_their_requests_in_flight_within_the_bound() -> None:
    first, second = requests_for(6), requests_for(12)[6:]
    held: list[bool] = []

    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> list[SendOutcome]:
        second_arrived = asyncio.Event()

        async def before_answer(body: dict[str, Any]) -> None:
            if body["to"] == second[0].body["to"]:  # type: ignore[index]
                second_arrived.set()
            elif body["to"] == first[-1].body["to"]:  # type: ignore[index]
                # Answered only once the second batch has a request at Meta.
                await asyncio.wait_for(second_arrived.wait(), timeout=5)
                held.append(True)

        meta.before_answer = before_answer
        slots = asyncio.Semaphore(2)
        taken = asyncio.Event()
        sending_first = asyncio.create_task(
            graph.send_many(first, 2, slots=slots, all_taken=taken.set)
        )
        await taken.wait()
        # Started while the first batch's last request awaits its answer.
        second_outcomes = await graph.send_many(second, 2, slots=slots)
        return [*await sending_first, *second_outcomes]

    outcomes = run(scenario)

    assert held == [True]
    assert [outcome.wamid for outcome in outcomes] == [
        f"wamid.54911{index:08d}" for index in range(12)
    ]


def test_requests_sharing_slots_never_exceed_them_together() -> None:
    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> int:
        meta.delay, meta.gather = 0.01, 3
        slots = asyncio.Semaphore(3)
        batches = [requests_for(60)[start : start + 20] for start in (0, 20, 40)]
        answered = await asyncio.gather(
            *(graph.send_many(batch, 3, slots=slots) for batch in batches)
        )
        assert sum(len(outcomes) for outcomes in answered) == 60
        return meta.max_in_flight

    # Three batches of three requests at a time each, three slots among them.
    assert run(scenario) == 3


def test_each_send_answered_or_not_is_timed_for_the_callers_observer() -> None:
    durations: list[float] = []

    async def scenario(meta: FakeMeta, graph: AsyncGraphClient) -> list[SendOutcome]:
        accepted = await graph.send_many(requests_for(5), concurrency=2)
        refused = await graph.send_template(phone_number_id="131026", access_token="t", body=BODY)
        return [*accepted, refused]

    outcomes = run(scenario, observe_seconds=durations.append)

    assert [outcome.wamid is not None for outcome in outcomes] == [True] * 5 + [False]
    assert len(durations) == 6
    assert all(duration >= 0 for duration in durations)


def test_the_config_says_where_the_graph_api_is_and_the_arguments_override_it() -> None:
    config = GraphConfig(url="http://meta.example/", version="v99.0", timeout_seconds=4.0)

    configured = AsyncGraphClient(config)
    overridden = AsyncGraphClient(config, base_url="http://sandbox.example/v21.0", timeout=2.0)

    assert configured.base_url == "http://meta.example/v99.0"
    assert (configured.timeout.total, configured.timeout.connect) == (4.0, 3.0)
    assert configured.max_connections == 200
    assert overridden.base_url == "http://sandbox.example/v21.0"
    assert overridden.timeout.total == 2.0
