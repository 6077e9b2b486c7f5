"""The sandbox application: `make_app(config)` for `aiohttp.web`, and `SandboxThread` to run
one inside a test process on a free port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from meta_sandbox import asset_webhooks, control, errors, graph, registry
from meta_sandbox.arrivals import arrival_middleware, listening_socket
from meta_sandbox.config import SandboxConfig, config_validate
from meta_sandbox.state import STATE, SandboxState
from meta_sandbox.versions import today, version_refusal

# Any Graph API version's shape (/v24.0/..., /v27.0/...): which ones are served is `versions`.
VERSION = r"{version:v\d+(?:\.\d+)?}"
# Room for big template bodies; Meta's own limit is far above what a template send needs.
MAX_BODY_BYTES = 1024 * 1024
START_TIMEOUT = 30.0
CONTROL_TIMEOUT = 15.0
ACTIONS = frozenset({"reset", "refresh"})


async def _start(app: web.Application) -> None:
    state = app[STATE]
    state.store.load()
    await state.store.start()
    await state.webhooks.start()


async def _stop(app: web.Application) -> None:
    state = app[STATE]
    await state.webhooks.stop()
    await state.store.stop()


@web.middleware
async def _version_check(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a Graph API version Meta does not serve on the sandbox's date, as Meta does."""
    version = request.match_info.get("version")
    if version is not None:
        state = request.app[STATE]
        refusal = version_refusal(version, today(state.config.graph_date))
        if refusal is not None:
            error = (
                errors.deprecated_version(refusal.latest)
                if refusal.expired
                else errors.unknown_path(request.path)
            )
            return graph.error_response(state, error)
    return await handler(request)


def make_app(config: SandboxConfig | None = None) -> web.Application:
    """The Graph API stand-in. The catalog loads and the webhook worker starts with the app."""
    state = SandboxState(config_validate(config or SandboxConfig()))
    app = web.Application(
        client_max_size=MAX_BODY_BYTES, middlewares=[arrival_middleware, _version_check]
    )
    app[STATE] = state
    app.router.add_post(f"/{VERSION}/{{object_id}}/messages", graph.send_message)
    app.router.add_get(f"/{VERSION}/{{object_id}}/message_templates", graph.list_templates)
    app.router.add_get(f"/{VERSION}/{{object_id}}/phone_numbers", graph.list_numbers)
    registry.registry_routes(app, VERSION)
    control.control_routes(app)
    asset_webhooks.asset_webhook_routes(app)
    app.router.add_route("*", "/{tail:.*}", graph.unknown_path)
    app.on_startup.append(_start)
    app.on_cleanup.append(_stop)
    return app


class SandboxThread:
    """A sandbox serving on 127.0.0.1 on a free port, in a daemon thread with its own loop.

        with SandboxThread(SandboxConfig(catalog=..., webhook_url=...)) as sandbox:
            requests.post(f"{sandbox.url}/v27.0/{number}/messages", ...)

    `url` has no trailing slash. `state` is the live state, for a test that wants to look
    directly (read it only once the sandbox is quiet: it belongs to the sandbox's thread).
    """

    def __init__(self, config: SandboxConfig | None = None, **changes: Any) -> None:
        self.config = config_validate(dataclasses.replace(config or SandboxConfig(), **changes))
        self.url = ""
        self.port = 0
        self.app: web.Application | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="meta-sandbox", daemon=True)

    @property
    def state(self) -> SandboxState:
        assert self.app is not None, "the sandbox is not started"
        return self.app[STATE]

    def start(self) -> SandboxThread:
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT):
            raise RuntimeError("The sandbox did not start in time.")
        if self._error is not None:
            raise RuntimeError("The sandbox could not start.") from self._error
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=15.0)

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """The sandbox's loop runs nothing while inside: a sandbox busy elsewhere, as a test
        wants one (what comes meanwhile waits in the kernel's queues)."""
        assert self._loop is not None, "the sandbox is not started"
        held, release = threading.Event(), threading.Event()

        def hold() -> None:
            held.set()
            release.wait(START_TIMEOUT)

        self._loop.call_soon_threadsafe(hold)
        if not held.wait(START_TIMEOUT):
            raise RuntimeError("The sandbox's loop did not pause in time.")
        try:
            yield
        finally:
            release.set()

    def control(self, path: str, payload: Mapping[str, Any] | None = None) -> Any:
        """Call `/_sandbox/{path}` and return its JSON: a POST when there is a payload or the
        path is an action (`reset`, `refresh`), else a GET. E.g. `control("stats")`,
        `control("config", {"error_share": 0.5})`, `control("reset")`."""
        post = payload is not None or path in ACTIONS
        request = urllib.request.Request(
            f"{self.url}/_sandbox/{path}",
            data=orjson.dumps(payload or {}) if post else None,
            headers={"Content-Type": "application/json"},
            method="POST" if post else "GET",
        )
        with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT) as response:
            return orjson.loads(response.read())

    def __enter__(self) -> SandboxThread:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as error:  # reported to start(), which raises it in the caller
            self._error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self.app = make_app(self.config)
        # A short grace: a test stopping the sandbox must not wait for a hanging (timeout) send.
        runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        try:
            site = web.SockSite(runner, listening_socket("127.0.0.1", 0))
            await site.start()
            self.port = int(runner.addresses[0][1])
            self.url = f"http://127.0.0.1:{self.port}"
            self._ready.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()
