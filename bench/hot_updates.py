"""Do Meta's status webhooks update messages in place (HOT updates)?

    .venv/bin/python bench/hot_updates.py [--messages 100000] [--read-share 0.6] [--per-body 1]

1. Create and migrate its own database (`mindo_bench_hot`), provision a demo organization.
2. Twice, on the same table: first with the OLD index set (messaging 0012: the (send, status,
   id) index, the lease index whose predicate names `status`, fillfactor 100: the baseline),
   then with the NEW one (messaging 0013: the (send, phase, id) index, the lease index by phase,
   fillfactor 85). Each time: one send of `--messages` messages, all `sent` with a wamid, written
   with COPY as bench/reads.py does, then VACUUM ANALYZE; Meta's `delivered` for every message,
   then `read` for `--read-share` of them, stored as bodies (COPY, `--per-body` statuses each)
   `--arrivals` at a time, each lot applied by the real applier
   (webhooks.processing.webhook_events_apply_pending) before the next is stored.
3. Print, per index set: the messages table's updates and how many were HOT
   (pg_stat_user_tables), the apply rate of each round (statuses per second of the applier
   alone), the heap and index bytes before and after; and the new set's ratio to the old.
4. EXPLAIN of the drain's claim and the reaper under the new set: each must name its index.
5. Always: drop the database.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script, the project's packages are not on the path

from bench.support import (  # noqa: E402
    add_service_arguments,
    bench_database_from_args,
    bench_env,
    database_drop,
    django_setup,
    print_table,
    provision,
    rows_copy,
    sig3,
)

MESSAGES = "messaging_message"
STATS_TIMEOUT = 30.0  # seconds for the statistics of the applier's updates to be flushed

# messaging 0012's indexes and storage, and 0013's (the name, then its definition).
OLD_INDEXES = {
    "message_send_status_id": f"ON {MESSAGES} (bulk_send_id, status, id)",
    "message_sending_lease": f"ON {MESSAGES} (lease_expires_at) WHERE status = 'sending'",
}
NEW_INDEXES = {
    "message_send_phase_id": f"ON {MESSAGES} (bulk_send_id, phase, id)",
    "message_open_lease": (
        f"ON {MESSAGES} (lease_expires_at) WHERE lease_expires_at IS NOT NULL AND phase = 0"
    ),
}
OLD_FILLFACTOR, NEW_FILLFACTOR = 100, 85


@dataclass
class Round:
    statuses: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.statuses / self.seconds


@dataclass
class Outcome:
    name: str
    updates: int = 0
    hot: int = 0
    rounds: dict[str, Round] = field(default_factory=dict)
    sizes_before: tuple[int, int] = (0, 0)
    sizes_after: tuple[int, int] = (0, 0)
    bodies_bytes: int = 0
    # Seconds of the oldest transaction with an id on the whole server, seen between applies: a
    # page's dead versions are pruned (room for the next HOT update) only once older than it.
    oldest_elsewhere: float = 0.0

    @property
    def hot_share(self) -> float:
        return self.hot / self.updates if self.updates else 0.0


def execute(statement: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def index_set(drop: dict[str, str], create: dict[str, str], fillfactor: int) -> None:
    for name in drop:
        execute(f"DROP INDEX IF EXISTS {name}")
    for name, definition in create.items():
        execute(f"CREATE INDEX IF NOT EXISTS {name} {definition}")
    execute(f"ALTER TABLE {MESSAGES} SET (fillfactor = {fillfactor})")


def wamid_of(i: int) -> str:
    return f"wamid.HOT{i:09d}"


def message_rows(count: int, send_id: str, account_id: int) -> Iterator[tuple[Any, ...]]:
    from datetime import timedelta

    from django.utils import timezone

    sent_at = timezone.now() - timedelta(hours=30)
    for i in range(count):
        yield (
            send_id,
            account_id,
            f"+54911{20_000_000 + i:08d}",
            orjson.dumps({"name": f"Cliente {i}", "code": f"C{i:06d}"}).decode(),
            orjson.dumps({"button_0": f"B-{i}"}).decode(),
            "sent",
            wamid_of(i),
            sent_at,
        )


def fill(phone_number_id: str, count: int) -> None:
    """One send of `count` sent messages, alone in the tables, vacuumed and analyzed."""
    from django.db import transaction

    from bulksend.models import BulkSend, BulkSendStatus
    from templates_app.models import MessageTemplate, PhoneNumber

    execute(f"TRUNCATE {MESSAGES}, bulksend_bulksend, webhooks_webhookevent CASCADE")
    number = PhoneNumber.objects.select_related("business_account").get(
        phone_number_id=phone_number_id
    )
    template = MessageTemplate.objects.filter(business_account=number.business_account).first()
    with transaction.atomic():
        send = BulkSend.objects.create(
            organization=number.business_account.organization,
            phone_number=number,
            template=template,
            status=BulkSendStatus.COMPLETED,
            submitted_recipients=count,
            unique_recipients=count,
            sent_count=count,
        )
        columns = (
            "bulk_send_id, business_account_id, recipient_phone, variables, button_variables, "
            "status, wamid, sent_at"
        )
        rows_copy(MESSAGES, columns, message_rows(count, str(send.pk), number.business_account_id))
    execute(f"VACUUM ANALYZE {MESSAGES}")


def bodies_store(status: str, wamids: list[str], per_body: int, phone_number_id: str) -> None:
    """Meta's bodies naming `status` for `wamids`, stored unapplied as the receiver stores them
    (COPY: the receiving is not what is measured)."""
    from django.db import connection

    from tests import meta_payloads as meta

    with (
        connection.cursor() as cursor,
        cursor.cursor.copy("COPY webhooks_webhookevent (body) FROM STDIN") as copy,
    ):
        for start in range(0, len(wamids), per_body):
            statuses = [
                meta.status(wamid, status, int(time.time()), recipient_id=f"549111{n:07d}")
                for n, wamid in enumerate(wamids[start : start + per_body], start)
            ]
            body = meta.statuses_notification(*statuses, phone_number_id=phone_number_id)
            copy.write_row((meta.encode(body).decode(),))


def apply_timed() -> float:
    """Seconds the applier takes to apply every body stored."""
    from webhooks.processing import webhook_events_apply_pending

    started = time.perf_counter()
    while webhook_events_apply_pending():
        pass
    return time.perf_counter() - started


def oldest_transaction() -> float:
    [(seconds,)] = execute(
        "SELECT COALESCE(max(extract(epoch FROM now() - xact_start)), 0) FROM pg_stat_activity "
        "WHERE backend_xid IS NOT NULL AND pid <> pg_backend_pid()"
    )
    return float(seconds)


def table_stats() -> tuple[int, int]:
    execute("SELECT pg_stat_clear_snapshot()")
    [(updates, hot)] = execute(
        "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables WHERE relname = %s",
        [MESSAGES],
    )
    return int(updates), int(hot)


def stats_after(before: tuple[int, int], at_least: int) -> tuple[int, int]:
    """The table's counters once this session's updates are flushed to them (at least
    `at_least` more updates than `before`)."""
    execute("SELECT pg_stat_force_next_flush()")
    deadline = time.monotonic() + STATS_TIMEOUT
    while True:
        updates, hot = table_stats()
        if updates - before[0] >= at_least:
            return updates - before[0], hot - before[1]
        if time.monotonic() > deadline:
            sys.exit(f"the statistics showed {updates - before[0]} of {at_least} updates")
        time.sleep(0.1)


def sizes() -> tuple[int, int]:
    [(heap, indexes)] = execute(
        "SELECT pg_table_size(%s::regclass), pg_indexes_size(%s::regclass)", [MESSAGES, MESSAGES]
    )
    return int(heap), int(indexes)


def measure(name: str, phone_number_id: str, args: argparse.Namespace) -> Outcome:
    outcome = Outcome(name)
    fill(phone_number_id, args.messages)
    outcome.sizes_before = sizes()
    before = table_stats()
    wamids = [wamid_of(i) for i in range(args.messages)]
    read = wamids[: int(len(wamids) * args.read_share)]
    for status, named in (("delivered", wamids), ("read", read)):
        seconds = 0.0
        # As they come: the applier takes what arrived while it applied the bodies before.
        for start in range(0, len(named), args.arrivals):
            chunk = named[start : start + args.arrivals]
            bodies_store(status, chunk, args.per_body, phone_number_id)
            seconds += apply_timed()
            outcome.oldest_elsewhere = max(outcome.oldest_elsewhere, oldest_transaction())
        outcome.rounds[status] = Round(len(named), seconds)
    outcome.updates, outcome.hot = stats_after(before, len(wamids) + len(read))
    outcome.sizes_after = sizes()
    [(outcome.bodies_bytes,)] = execute(
        "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
        "WHERE inhparent = 'webhooks_webhookevent'::regclass"
    )
    return outcome


def plans() -> list[tuple[str, str]]:
    """(statement, the indexes its plan reads) of the claim and the reaper."""
    from django.utils import timezone

    from tests.plans import drain_statements, plan_indexes

    [(send_id,)] = execute("SELECT id FROM bulksend_bulksend LIMIT 1")
    return [
        (name, ", ".join(sorted(plan_indexes(*statement))) or "NO INDEX: sequential scan")
        for name, statement in drain_statements(send_id, timezone.now()).items()
    ]


def report(old: Outcome, new: Outcome) -> None:
    mib = 1024 * 1024
    rows = []
    for outcome in (old, new):
        rows.append(
            [
                outcome.name,
                f"{outcome.updates:,}",
                f"{outcome.hot:,}",
                f"{outcome.hot_share:.1%}",
                f"{outcome.rounds['delivered'].rate:,.0f}",
                f"{outcome.rounds['read'].rate:,.0f}",
                f"{sig3(outcome.sizes_before[0] / mib)} -> {sig3(outcome.sizes_after[0] / mib)}",
                f"{sig3(outcome.sizes_before[1] / mib)} -> {sig3(outcome.sizes_after[1] / mib)}",
                sig3(outcome.bodies_bytes / mib),
                f"{outcome.oldest_elsewhere:.1f}",
            ]
        )
    print()
    print_table(
        [
            "index set",
            "updates",
            "HOT",
            "HOT share",
            "delivered/s",
            "read/s",
            "heap MiB",
            "indexes MiB",
            "bodies MiB",
            "oldest xact s",
        ],
        rows,
    )
    for status in ("delivered", "read"):
        ratio = new.rounds[status].rate / old.rounds[status].rate
        print(f"{status}: the new index set applies at {ratio:.2f}x the old one's rate")
    grown = (sum(new.sizes_after) - sum(new.sizes_before)) / max(
        sum(old.sizes_after) - sum(old.sizes_before), 1
    )
    print(f"table and indexes grew {grown:.2f}x as much as with the old set")
    print(
        "oldest xact s: the longest transaction seen on the server (any database) between "
        "applies; dead versions younger than it are not pruned, so fewer updates find room"
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--read-share", type=float, default=0.6, help="share of them read")
    parser.add_argument("--per-body", type=int, default=1, help="statuses per webhook body")
    parser.add_argument(
        "--arrivals",
        type=int,
        default=20,
        help="statuses stored before each apply: 20 is the fast path at about 1,000 webhooks/s "
        "(a backlog is applied 500 at a time)",
    )
    parser.add_argument("--fillfactor", type=int, default=NEW_FILLFACTOR, help="of the new set")
    parser.add_argument("--org", default="BenchHot")
    add_service_arguments(
        parser, database="mindo_bench_hot", database_variable="BENCH_HOT_DATABASE_URL"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    database = bench_database_from_args(args)
    env = {**bench_env(args.database_url, args.redis_url), "PYTHONWARNINGS": "ignore"}
    print(
        f"database {database}, {args.messages:,} messages, {args.arrivals} statuses per apply, "
        f"load {os.getloadavg()}"
    )
    try:
        demo = provision(env, args.org)
        django_setup(env)
        index_set(NEW_INDEXES, OLD_INDEXES, OLD_FILLFACTOR)
        old = measure("old (0012)", demo.phone_number_id, args)
        index_set(OLD_INDEXES, NEW_INDEXES, args.fillfactor)
        new = measure(f"new (0013, fillfactor {args.fillfactor})", demo.phone_number_id, args)
        found = plans()
    finally:
        database_drop(args.database_url)
    report(old, new)
    print()
    print_table(["statement (new set)", "indexes read"], [[name, n] for name, n in found])
    print(f"load at the end {os.getloadavg()}")


if __name__ == "__main__":
    main()
