"""Which message statuses each counter of a send counts, stated once: the counters are exact

Messaging moves messages and reports, per send, how each counter moved (`SendDeltas`);
bulksend.lifecycle adds those deltas to the sends in the same transaction. The SQL fragments
below are built from `MessageStatus`, so a status is spelled in one place.
"""

from __future__ import annotations

from messaging.models import MessageStatus

# A message claimed by a worker (`sending`) is still pending to clients and to the counters.
COUNTED_STATUSES: dict[str, frozenset[str]] = {
    "sent": frozenset({MessageStatus.SENT, MessageStatus.DELIVERED, MessageStatus.READ}),
    "delivered": frozenset({MessageStatus.DELIVERED, MessageStatus.READ}),
    "read": frozenset({MessageStatus.READ}),
    "failed": frozenset({MessageStatus.FAILED}),
    "cancelled": frozenset({MessageStatus.CANCELLED}),
    "pending": frozenset({MessageStatus.PENDING, MessageStatus.SENDING}),
}
COUNTERS = tuple(COUNTED_STATUSES)
# In a cancelled send a `pending` message is cancelled already: the cancel counts it so at once and
# a task turns its row afterwards (bulksend.conversion). Only what a worker holds is pending.
CANCELLED_SEND_COUNTED_STATUSES: dict[str, frozenset[str]] = {
    **COUNTED_STATUSES,
    "cancelled": frozenset({MessageStatus.CANCELLED, MessageStatus.PENDING}),
    "pending": frozenset({MessageStatus.SENDING}),
}


def counted_statuses(*, send_cancelled: bool) -> dict[str, frozenset[str]]:
    """Which stored statuses each counter counts, in a send cancelled or not."""
    return CANCELLED_SEND_COUNTED_STATUSES if send_cancelled else COUNTED_STATUSES


# bulk_send_id -> counter name -> how much it moved.
SendDeltas = dict[str, dict[str, int]]


def sql_literal(status: str) -> str:
    """A status as an SQL string literal; statuses are enum values, never client input."""
    assert status.isidentifier(), status
    return f"'{status}'"


def sql_in(statuses: frozenset[str] | tuple[str, ...]) -> str:
    """`(...)` for an SQL `IN`, in a stable order."""
    return "(" + ", ".join(sql_literal(status) for status in sorted(statuses)) + ")"


# `{PENDING}`, `{SENT}`, ... for SQL templates written with `str.format`.
STATUS_SQL = {status.name: sql_literal(status.value) for status in MessageStatus}


def deltas_select_sql(old: str, new: str) -> str:
    """The select list that sums, per group, how each counter moved from column `old` to `new`."""
    return ",\n        ".join(
        f"sum(({new} IN {sql_in(statuses)})::int - ({old} IN {sql_in(statuses)})::int) AS {name}"
        for name, statuses in COUNTED_STATUSES.items()
    )


def deltas_move(deltas: SendDeltas, bulk_send_id: str, old: str, new: str, count: int = 1) -> None:
    """Record that `count` messages of a send moved from status `old` to `new`."""
    totals = deltas.setdefault(bulk_send_id, dict.fromkeys(COUNTERS, 0))
    for name, statuses in COUNTED_STATUSES.items():
        totals[name] += count * ((new in statuses) - (old in statuses))


def deltas_merge(deltas: SendDeltas, other: SendDeltas) -> None:
    """Add `other` to `deltas`."""
    for bulk_send_id, moved in other.items():
        totals = deltas.setdefault(bulk_send_id, dict.fromkeys(COUNTERS, 0))
        for name, count in moved.items():
            totals[name] += count
