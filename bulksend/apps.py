from __future__ import annotations

from django.apps import AppConfig


class BulksendConfig(AppConfig):
    name = "bulksend"
    verbose_name = "Bulk sends"
