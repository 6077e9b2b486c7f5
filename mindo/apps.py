from __future__ import annotations

from django.apps import AppConfig


class MindoConfig(AppConfig):
    name = "mindo"
    verbose_name = "Organizations and API keys"

    def ready(self) -> None:
        # Registers the system check that refuses development secrets in production.
        from mindo import checks  # noqa: F401
