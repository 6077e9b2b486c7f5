from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from webhooks.retention import webhook_events_purge


class Command(BaseCommand):
    help = "Delete kept webhook bodies older than N days (default WEBHOOK_EVENT_RETENTION_DAYS)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--days", type=int, default=settings.WEBHOOK_EVENT_RETENTION_DAYS)

    def handle(self, *args: Any, **options: Any) -> None:
        deleted = webhook_events_purge(older_than_days=options["days"])
        self.stdout.write(f"Deleted {deleted} webhook events older than {options['days']} days.")
