from __future__ import annotations

from django.apps import AppConfig


class MindoConfig(AppConfig):
    name = "mindo"
    verbose_name = "Organizations and API keys"
