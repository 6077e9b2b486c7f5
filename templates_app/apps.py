from __future__ import annotations

from django.apps import AppConfig


class TemplatesAppConfig(AppConfig):
    name = "templates_app"
    verbose_name = "WhatsApp accounts, numbers and templates"
