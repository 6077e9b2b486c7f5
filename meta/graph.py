"""The one module that talks to Meta's Graph API: its URLs, authentication, timeouts and errors.

Two clients, for two very different callers:
- `AsyncGraphClient` is the drainer's hot path: one aiohttp session whose keep-alive connections
  carry thousands of template sends a second, concurrently. Its methods never raise for Meta's or
  the network's failures; they return a classified `GraphError` (see `meta.graph_errors`).
  One that has `maybe_delivered` set (the connection dropped or timed out after the request was
  written) must not be retried at once: Meta may have accepted it. The drainer waits for the
  `sent` webhook, which carries the message's `biz_opaque_callback_data`, and retries only when
  none came within its reconciliation window.
- `graph_list_templates` and `graph_list_phone_numbers` serve operators' syncs, and
  `graph_request` any other call (template creation): plain blocking `requests` calls that raise
  `GraphRequestError`.

Where Meta is and how long to wait for it come in as a `GraphConfig`; this module reads no
settings (mindo.meta_client builds the config from them), so it serves the service, the benches
and the tests alike.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self

import aiohttp
import orjson
import requests
from yarl import URL

from meta.graph_errors import (
    CODE_BAD_RESPONSE,
    CODE_CONNECT_TIMEOUT,
    CODE_CONNECTION_ERROR,
    CODE_CONNECTION_LOST,
    CODE_TIMEOUT,
    ErrorClass,
    GraphError,
    GraphRequestError,
    graph_error_from_response,
    transport_error,
)
from meta.graph_version import GRAPH_VERSION

# The error types are defined next door and re-exported: callers need only this module.
__all__ = [
    "AsyncGraphClient",
    "ErrorClass",
    "GraphConfig",
    "GraphError",
    "GraphRequestError",
    "SendOutcome",
    "SendProgress",
    "SendRequest",
    "graph_list_phone_numbers",
    "graph_list_templates",
    "graph_request",
]

# Idle keep-alive connections are closed before Meta's side would, so that a request is rarely
# written into a connection the server is closing (which would end as `connection_lost`).
KEEPALIVE_SECONDS = 15.0
LIST_PAGE_SIZE = 100
LIST_MAX_PAGES = 200  # bounds a listing even if a server kept answering with a next page


@dataclass(frozen=True, slots=True)
class GraphConfig:
    """Where the Graph API is and how long to wait for it; the defaults are Meta's own API."""

    url: str = "https://graph.facebook.com"  # or the sandbox's address
    version: str = GRAPH_VERSION
    timeout_seconds: float = 10.0  # a whole call
    connect_timeout_seconds: float = 3.0
    max_connections: int = 200  # per async client

    @property
    def base_url(self) -> str:
        return f"{self.url.rstrip('/')}/{self.version}"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """Meta's answer to one send: the wamid it accepted the message under, or why it did not."""

    wamid: str | None
    error: GraphError | None

    @property
    def halts(self) -> bool:
        """Meta refuses every request with this token or account until an operator acts, or
        holds the sender back (a spam limit, a paused template) until an operator looks."""
        return self.error is not None and self.error.error_class in (
            ErrorClass.HALT,
            ErrorClass.PAUSE,
        )


@dataclass(frozen=True, slots=True)
class SendRequest:
    phone_number_id: str
    access_token: str
    body: dict[str, Any] | bytes  # bytes when the caller encoded it already


def _socket_factory(unacknowledged_seconds: float) -> Callable[[tuple[Any, ...]], socket.socket]:
    """Sockets whose kernel gives up on written data left unacknowledged that long.

    A send the client gave up on (a timeout) counts as maybe delivered, and is sent again once
    Meta's webhooks have come `DELIVERY_CALLBACK_GRACE_SECONDS` past it without naming it. By
    default the kernel goes on retransmitting what was written for minutes, also after the
    socket is closed: a worker host cut off from Meta (its link down) would deliver the request
    when the link comes back, after another host sent the message again. With TCP_USER_TIMEOUT
    the connection, and what it still holds, is dropped once written data has gone unacknowledged
    for the call's whole budget: a request reaches Meta within that long of being written, or
    never (so the grace must be at least the call's timeout).
    """
    milliseconds = max(1, int(unacknowledged_seconds * 1000))

    def factory(addr_info: tuple[Any, ...]) -> socket.socket:
        # aiohttp's address info: (family, type, proto, canonical name, address).
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=kind, proto=proto)
        if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, milliseconds)
        return sock

    return factory


def _unanswered(code: str, message: str, maybe_delivered: bool) -> SendOutcome:
    return SendOutcome(None, transport_error(code, message, maybe_delivered=maybe_delivered))


class AsyncGraphClient:
    """Template sends over one aiohttp session; use as `async with AsyncGraphClient(config) as c`.

    CPU matters here (a thousand sends a second on two cores), so the client keeps per-request
    work small: the messages URL is parsed once per number, the headers dict built once per
    token, bodies encoded with orjson, nothing logged per request, no cookie jar.

    The keyword arguments override `config` (benches and tests point one client elsewhere).
    `observe_seconds`, when given, receives each send's duration, answered or not: the caller's
    metrics, which this package knows nothing of.
    """

    def __init__(
        self,
        config: GraphConfig | None = None,
        *,
        base_url: str | None = None,
        timeout: float | None = None,
        connect_timeout: float | None = None,
        max_connections: int | None = None,
        observe_seconds: Callable[[float], object] | None = None,
    ) -> None:
        config = config or GraphConfig()
        self.base_url = (base_url or config.base_url).rstrip("/")
        self.timeout = aiohttp.ClientTimeout(
            total=timeout if timeout is not None else config.timeout_seconds,
            connect=connect_timeout
            if connect_timeout is not None
            else config.connect_timeout_seconds,
        )
        self.max_connections = max_connections or config.max_connections
        self.observe_seconds = observe_seconds
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}
        self._headers: dict[str, dict[str, str]] = {}

    async def __aenter__(self) -> Self:
        connector = aiohttp.TCPConnector(
            limit=self.max_connections,
            keepalive_timeout=KEEPALIVE_SECONDS,
            ttl_dns_cache=300,
            socket_factory=_socket_factory(self.timeout.total) if self.timeout.total else None,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self.timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
            raise_for_status=False,
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def messages_url(self, phone_number_id: str) -> URL:
        url = self._urls.get(phone_number_id)
        if url is None:
            url = self._urls[phone_number_id] = URL(f"{self.base_url}/{phone_number_id}/messages")
        return url

    def _auth_headers(self, access_token: str) -> dict[str, str]:
        headers = self._headers.get(access_token)
        if headers is None:
            headers = self._headers[access_token] = {
                "Authorization": f"Bearer {access_token}",
                "Content-Type": "application/json",
            }
        return headers

    async def send_template(
        self, *, phone_number_id: str, access_token: str, body: dict[str, Any] | bytes
    ) -> SendOutcome:
        """POST one template message. Never raises for Meta's or the network's failures."""
        if self.observe_seconds is None:
            return await self._send_template(phone_number_id, access_token, body)
        started = time.perf_counter()
        try:
            return await self._send_template(phone_number_id, access_token, body)
        finally:
            self.observe_seconds(time.perf_counter() - started)

    async def _send_template(
        self, phone_number_id: str, access_token: str, body: dict[str, Any] | bytes
    ) -> SendOutcome:
        session = self._session
        if session is None:
            raise RuntimeError("AsyncGraphClient is used outside `async with`.")
        data = body if isinstance(body, bytes) else orjson.dumps(body)
        try:
            async with session.post(
                self.messages_url(phone_number_id),
                data=data,
                headers=self._auth_headers(access_token),
            ) as response:
                status = response.status
                raw = await response.read()
        # Order matters: the connect failures are subclasses of the broader ones below.
        except aiohttp.ConnectionTimeoutError:
            return _unanswered(CODE_CONNECT_TIMEOUT, "Timed out connecting to the Graph API", False)
        except aiohttp.ClientConnectorError as error:
            message = f"Cannot connect to the Graph API: {error.strerror or error}"
            return _unanswered(CODE_CONNECTION_ERROR, message, False)
        except TimeoutError:
            # The body was (or may have been) written: Meta may have accepted the message.
            return _unanswered(CODE_TIMEOUT, "No answer from the Graph API in time", True)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError, aiohttp.ClientPayloadError):
            message = "The connection to the Graph API was lost before its answer"
            return _unanswered(CODE_CONNECTION_LOST, message, True)
        except aiohttp.ClientError as error:
            message = f"The Graph API call failed: {type(error).__name__}: {error}"
            return _unanswered(CODE_CONNECTION_ERROR, message, True)
        if 200 <= status < 300:
            try:
                return SendOutcome(orjson.loads(raw)["messages"][0]["id"], None)
            except (orjson.JSONDecodeError, LookupError, TypeError):
                # A 2xx we cannot read: Meta may well have accepted the message.
                return _unanswered(CODE_BAD_RESPONSE, f"Unreadable answer: {raw[:200]!r}", True)
        return SendOutcome(None, graph_error_from_response(status, raw))

    async def send_many(
        self,
        requests: Sequence[SendRequest],
        concurrency: int,
        *,
        before_send: Callable[[], Awaitable[object]] | None = None,
        progress: SendProgress | None = None,
        stop: threading.Event | None = None,
        slots: asyncio.Semaphore | None = None,
        all_taken: Callable[[], object] | None = None,
    ) -> list[SendOutcome]:
        """Send all `requests`, at most `concurrency` at a time; outcomes in the same order.

        `concurrency` workers take the next request as each finishes, which bounds the requests
        in flight exactly like a semaphore would without creating a task per request.
        `before_send`, when given, is awaited by a worker right before each request: the place
        for a rate limiter's `AsyncPacer.wait`, so that a permit is taken when it is used.

        If `before_send` raises, no worker takes another request: those in flight finish, and
        the error is raised once they have. Whatever is raised, `progress` (when given) tells the
        caller which requests were handed to Meta and what came back of them.

        `stop`, when given, ends the sending early without an error: once it is set (from any
        thread), no worker takes another request. It is set here when Meta answers with an error
        of the HALT class, since every later request with that token would get the same answer.
        The requests not taken have no outcome in `progress` and none in the list returned.

        `slots`, when given, is held by each request from before `before_send` until its answer:
        shared by several `send_many` at once, it bounds their requests in flight together, so
        that the next batch's requests take the connections the last ones of this batch free.
        `all_taken`, when given, is called as soon as no request is left to take (the last ones
        may still wait for a slot, a permit or their answer): the moment to start the next batch.
        """
        progress = progress if progress is not None else SendProgress(len(requests))
        indexes = iter(range(len(requests)))  # shared: next() is atomic between awaits
        refused: list[Exception] = []

        stopping = stop or threading.Event()  # never set when the caller gave none

        async def send(index: int) -> bool:
            """Hand request `index` to Meta once `before_send` allows it; False: stop here."""
            if refused or stopping.is_set():  # checked after the wait for a slot too
                return False
            if before_send is not None:
                try:
                    await before_send()
                except Exception as error:
                    refused.append(error)
                    return False
                if stopping.is_set():  # while it waited for its permit
                    return False
            request = requests[index]
            # From here on Meta may receive it, whatever happens to this task.
            progress.handed_over[index] = True
            outcome = progress.outcomes[index] = await self.send_template(
                phone_number_id=request.phone_number_id,
                access_token=request.access_token,
                body=request.body,
            )
            # Before the slot is freed: the request waiting for it must see the halt.
            if stop is not None and outcome.halts:
                stop.set()
            return True

        async def worker() -> None:
            for index in indexes:
                if refused or stopping.is_set():
                    return
                if slots is None:
                    going_on = await send(index)
                else:
                    async with slots:
                        going_on = await send(index)
                if not going_on:
                    return
            if all_taken is not None:
                all_taken()

        # A TaskGroup cancels the other workers if one fails unexpectedly (a bug, a cancel).
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, len(requests)))):
                group.create_task(worker())
        if refused:
            raise refused[0]
        return [outcome for outcome in progress.outcomes if outcome is not None]


class SendProgress:
    """What `AsyncGraphClient.send_many` did with each of its requests, by index, as it goes.

    A caller whose sending was interrupted reads it to tell the requests that never left (safe
    to send again at once) from those handed to Meta (which may have accepted them) and those
    Meta answered.
    """

    __slots__ = ("handed_over", "outcomes")

    def __init__(self, count: int) -> None:
        self.handed_over: list[bool] = [False] * count
        self.outcomes: list[SendOutcome | None] = [None] * count


# --- listings, for operators' syncs --------------------------------------------------------------


class BusinessAccount(Protocol):
    """What a listing needs of a business account (this package imports no app's model)."""

    @property
    def waba_id(self) -> str: ...

    @property
    def access_token(self) -> str: ...


def _call(
    session: requests.Session,
    config: GraphConfig,
    method: str,
    url: str,
    params: dict[str, Any] | None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    try:
        response = session.request(
            method,
            url,
            params=params,
            data=None if body is None else orjson.dumps(body),
            headers=None if body is None else {"Content-Type": "application/json"},
            timeout=(config.connect_timeout_seconds, config.timeout_seconds),
        )
    except requests.Timeout:
        raise GraphRequestError(
            transport_error(
                CODE_TIMEOUT, "No answer from the Graph API in time", maybe_delivered=False
            )
        ) from None
    except requests.RequestException as error:
        message = f"Cannot reach the Graph API: {error}"
        raise GraphRequestError(
            transport_error(CODE_CONNECTION_ERROR, message, maybe_delivered=False)
        ) from None
    if not response.ok:
        raise GraphRequestError(graph_error_from_response(response.status_code, response.content))
    try:
        payload = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        payload = None
    if not isinstance(payload, dict):
        message = f"Unreadable answer from the Graph API: {response.content[:200]!r}"
        raise GraphRequestError(transport_error(CODE_BAD_RESPONSE, message, maybe_delivered=False))
    return payload


def _list(
    account: BusinessAccount, config: GraphConfig, edge: str, fields: str
) -> list[dict[str, Any]]:
    """Every item of `/{waba_id}/{edge}`, following Meta's cursor paging.

    As Meta documents it, a page without `paging.next` is the last one. `next` is followed as
    given when it points at our own Graph URL; when it names another host (real Meta's address
    behind a proxy we were configured with), the page's `cursors.after` is asked of our URL
    instead, so the token never goes anywhere else. A repeated cursor also ends the listing.
    """
    base = config.base_url
    first_url = f"{base}/{account.waba_id}/{edge}"
    url: str = first_url
    params: dict[str, Any] | None = {"fields": fields, "limit": LIST_PAGE_SIZE}
    items: list[dict[str, Any]] = []
    seen_cursors: set[str] = set()
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {account.access_token}"
        for _ in range(LIST_MAX_PAGES):
            page = _call(session, config, "GET", url, params)
            data = page.get("data") or []
            items.extend(item for item in data if isinstance(item, dict))
            paging = page.get("paging")
            paging = paging if isinstance(paging, dict) else {}
            cursors = paging.get("cursors")
            after = cursors.get("after") if isinstance(cursors, dict) else None
            next_url = paging.get("next")
            if not data or not isinstance(next_url, str) or after in seen_cursors:
                break
            if after is not None:
                seen_cursors.add(after)
            if next_url.startswith(f"{base}/"):
                url, params = next_url, None
            elif after is not None:
                url, params = first_url, {"fields": fields, "limit": LIST_PAGE_SIZE, "after": after}
            else:
                break
    return items


def graph_request(
    config: GraphConfig,
    method: str,
    url: str,
    *,
    access_token: str | None = None,
    params: dict[str, Any] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One blocking call (`body` sent as JSON), with the configured timeouts: the JSON object
    answered, or GraphRequestError."""
    with requests.Session() as session:
        if access_token is not None:
            session.headers["Authorization"] = f"Bearer {access_token}"
        return _call(session, config, method, url, params, body)


TEMPLATE_FIELDS = "id,name,language,status,category,components,parameter_format"
# `whatsapp_business_manager_messaging_limit` is the portfolio's messaging limit (v24.0 on);
# `messaging_limit_tier`, the number's own, is deprecated and asked for only as the fallback of
# a version that does not have the new field. Meta answers the fields of the version it serves.
PHONE_NUMBER_FIELDS = (
    "id,display_phone_number,verified_name,quality_rating,throughput,"
    "whatsapp_business_manager_messaging_limit,messaging_limit_tier"
)


def graph_list_templates(account: BusinessAccount, config: GraphConfig) -> list[dict[str, Any]]:
    """The account's message templates as Meta lists them; raises GraphRequestError."""
    return _list(account, config, "message_templates", TEMPLATE_FIELDS)


def graph_list_phone_numbers(account: BusinessAccount, config: GraphConfig) -> list[dict[str, Any]]:
    """The account's phone numbers as Meta lists them; raises GraphRequestError."""
    return _list(account, config, "phone_numbers", PHONE_NUMBER_FIELDS)
