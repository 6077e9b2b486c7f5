"""`manage.py sync_numbers`: pull business accounts' phone numbers from the Graph API."""

from __future__ import annotations

from templates_app.management.commands.sync_templates import SyncCommand
from templates_app.models import WhatsAppBusinessAccount
from templates_app.sync import SyncResult, sync_numbers


class Command(SyncCommand):
    help = (
        "Create or update phone numbers (name, quality, tier, throughput level) from the Graph "
        "API listing of one business account or all of them."
    )
    what = "phone numbers"

    def sync(self, account: WhatsAppBusinessAccount) -> SyncResult:
        return sync_numbers(account)
