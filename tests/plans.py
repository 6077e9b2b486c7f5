"""What a statement's plan reads: shared by the plan tests and bench/hot_updates.py."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import orjson
from django.db import connection

from messaging import delivery
from messaging.models import Message


def drain_statements(send_id: Any, now: datetime) -> dict[str, tuple[str, dict[str, Any]]]:
    """The drain's claim and the reaper's statements, by name, with parameters to plan them."""
    reap_params = {
        "cutoff": now,
        "unknown_cutoff": now,
        "resend": False,
        "grace": timedelta(0),
        "max_attempts": 3,
        "now": now,
        "ceiling": 60,
    }
    claim_params = {
        "send": send_id,
        "now": now,
        "lease_until": now,
        "limit": 100,
    }
    return {
        "claim (messages_claim)": (delivery._sql(delivery._CLAIM_SQL), claim_params),
        "reaper (leases_reap)": (delivery._sql(delivery._REAP_SQL), reap_params),
        "reaper, unknown outcome": (delivery._sql(delivery._REAP_UNKNOWN_SQL), reap_params),
    }


def messages_indexes_only(keep: str) -> None:
    """Drop every other index of the messages table (not the primary key) in the caller's
    transaction, so that a plan shows whether `keep` can serve a statement whatever the
    statistics of the moment prefer. The test's rollback brings them back."""
    table = Message._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.relname, c.conname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid "
            "WHERE x.indrelid = %s::regclass AND NOT x.indisprimary AND i.relname <> %s",
            [table, keep],
        )
        for index, constraint in cursor.fetchall():
            if constraint:
                cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
            else:
                cursor.execute(f'DROP INDEX "{index}"')


def plan_indexes(statement: str, params: dict[str, Any], *, seqscan: bool = True) -> set[str]:
    """The indexes of the messages table the plan of `statement` reads; with `seqscan` off,
    whether an index can serve it at all (a test's tables are too small for the planner to
    prefer one). Sequential scans off last until the caller's transaction ends."""
    with connection.cursor() as cursor:
        if not seqscan:
            cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("EXPLAIN (FORMAT JSON) " + statement, params)
        plan = cursor.fetchone()[0]
        cursor.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = %s", [Message._meta.db_table]
        )
        messages_indexes = {row[0] for row in cursor.fetchall()}
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            # By the index's name: a bitmap index scan's node does not name its table.
            if node.get("Index Name") in messages_indexes:
                found.add(node["Index Name"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(plan if isinstance(plan, list) else orjson.loads(plan))
    return found
