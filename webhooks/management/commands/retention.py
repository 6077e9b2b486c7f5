from __future__ import annotations

import argparse
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from bulksend.retention import finished_sends_retire
from webhooks.retention import webhook_bodies_retire

_AGE = re.compile(r"^(\d+)([dh])$")


def age(text: str) -> timedelta:
    """`90d` or `36h`."""
    match = _AGE.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of days or hours, e.g. 90d or 36h")
    amount = int(match[1])
    return timedelta(days=amount) if match[2] == "d" else timedelta(hours=amount)


class Command(BaseCommand):
    help = (
        "Retire what is older than the cut: the webhook bodies' day partitions wholly before it "
        "(dropped), and sends finished before it with their messages (deleted in slices); each "
        "written to CSV files first with --archive."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--older-than", type=age, required=True, help="e.g. 90d or 36h")
        parser.add_argument("--archive", type=Path, help="write what goes here as CSV first")
        parser.add_argument("--dry-run", action="store_true", help="count only, change nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - options["older_than"]
        dry_run = options["dry_run"]
        bodies = webhook_bodies_retire(cutoff, archive_dir=options["archive"], dry_run=dry_run)
        sends = finished_sends_retire(cutoff, archive_dir=options["archive"], dry_run=dry_run)
        verb = "Would retire" if dry_run else "Retired"
        self.stdout.write(
            f"{verb} {bodies.rows} webhook bodies ({len(bodies.partitions)} day partitions"
            f"{': ' + ', '.join(bodies.partitions) if bodies.partitions else ''}) and "
            f"{sends.sends} finished sends with {sends.messages} messages, "
            f"received or finished before {cutoff:%Y-%m-%d %H:%M:%S} UTC."
        )
        for path in bodies.archives + sends.archives:
            self.stdout.write(f"Archived {path}")
