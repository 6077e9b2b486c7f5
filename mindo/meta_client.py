"""The Graph client as the service uses it: configured from settings, timed into its metrics.

`meta` reads no settings and records no metrics of ours, so this is where the two meet.
"""

from __future__ import annotations

from django.conf import settings

from meta.graph import AsyncGraphClient, GraphConfig
from mindo import metrics


def graph_config() -> GraphConfig:
    """Read at each call, so a changed setting (a test's sandbox) takes effect at once."""
    return GraphConfig(
        url=settings.META_GRAPH_URL,
        version=settings.META_GRAPH_VERSION,
        timeout_seconds=settings.META_HTTP_TIMEOUT_SECONDS,
        connect_timeout_seconds=settings.META_HTTP_CONNECT_TIMEOUT_SECONDS,
        max_connections=settings.META_MAX_CONNECTIONS,
    )


def async_graph_client(*, timeout: float | None = None) -> AsyncGraphClient:
    """A client for template sends whose every request lands in `mindo_graph_request_seconds`;
    `timeout` (seconds, a whole call) overrides META_HTTP_TIMEOUT_SECONDS."""
    return AsyncGraphClient(
        graph_config(), timeout=timeout, observe_seconds=metrics.GRAPH_REQUEST_SECONDS.observe
    )
