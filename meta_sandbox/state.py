"""Everything one running sandbox holds; its handlers share it through the application."""

from __future__ import annotations

import random
from typing import Any

from aiohttp import web

from meta_sandbox.catalog import Catalog
from meta_sandbox.config import SandboxConfig
from meta_sandbox.preferences_store import Preferences
from meta_sandbox.ratelimit import SendWindows
from meta_sandbox.records import Records
from meta_sandbox.store import CatalogStore
from meta_sandbox.wamids import WamidFactory
from meta_sandbox.webhooks import WebhookDispatcher


class SandboxState:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.store = CatalogStore(config)
        self.records = Records()
        self.windows = SendWindows()
        self.wamids = WamidFactory()
        self.webhooks = WebhookDispatcher(lambda: self.config)
        self.preferences = Preferences()

    @property
    def catalog(self) -> Catalog:
        return self.store.catalog

    def configure(self, config: SandboxConfig) -> None:
        if config.seed != self.config.seed:
            self.rng.seed(config.seed)
        self.config = config

    def reset(self) -> None:
        """Forget every message, counter, send window and webhook not yet posted."""
        self.records.clear()
        self.windows.clear()
        self.webhooks.reset()

    def stats(self) -> dict[str, Any]:
        return {
            "accepted": len(self.records.messages),
            "rejected_by_code": dict(self.records.rejected_by_code),
            "faults": dict(self.records.faults),
            "webhooks_posted": self.webhooks.posted,
            "webhook_statuses_posted": self.webhooks.statuses_posted,
            "webhook_failures": self.webhooks.failures,
            "webhooks_abandoned": self.webhooks.abandoned,
            "pending_webhooks": self.webhooks.pending,
            "max_sends_in_one_second": dict(self.windows.max_in_one_second),
            "catalog": self.catalog.summary(),
        }


STATE = web.AppKey("sandbox_state", SandboxState)
