"""A send's messages as CSV, streamed straight out of PostgreSQL.

`COPY (SELECT ...) TO STDOUT WITH CSV` lets PostgreSQL write the CSV (quoting, escaping, the
timestamps' text), so a million rows cost the service no Python per row beyond gathering the
server's output into chunks: memory stays at one chunk whatever the row count, and the rate is
the database's. The columns say everything a client needs to reconcile a send with its own
records (`bench/export_csv.py` measures the rate).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from django.db import connection
from django.http import StreamingHttpResponse

from messaging.models import (
    CANCELLED_SEND_PUBLIC_STATUS,
    PUBLIC_STATUS,
    Message,
    MessageStatus,
    stored_statuses_of,
)

# Bytes gathered before a chunk goes to the client: PostgreSQL hands over one row at a time,
# and one write per row would cost a system call each.
CHUNK_BYTES = 64 * 1024

# Every moment in UTC, ISO 8601 with microseconds, as the JSON endpoints write them.
_MOMENT = "to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"


def _public_status_sql(shown: dict[MessageStatus, MessageStatus]) -> str:
    return (
        "CASE status "
        + " ".join(f"WHEN '{stored}' THEN '{public}'" for stored, public in shown.items())
        + " ELSE status END"
    )


# The status column, in a send cancelled or not (messaging.models.public_status_of): a claimed
# (`sending`) message is still pending to clients, as everywhere else in the API, and a pending
# one of a cancelled send is cancelled.
_STATUS_COLUMN = {
    False: _public_status_sql(PUBLIC_STATUS),
    True: _public_status_sql(CANCELLED_SEND_PUBLIC_STATUS),
}

# (header, SQL expression), in the file's order; `{status}` is the status column.
COLUMNS: tuple[tuple[str, str], ...] = (
    ("message_id", "id"),
    ("phone", "recipient_phone"),
    ("status", "{status}"),
    ("wamid", "wamid"),
    # JSON objects: a variable's name never collides with a column's, whatever the template.
    ("variables", "variables::text"),
    ("button_variables", "button_variables::text"),
    ("attempts", "attempts"),
    ("created_at", _MOMENT.format(column="created_at")),
    ("sent_at", _MOMENT.format(column="sent_at")),
    ("delivered_at", _MOMENT.format(column="delivered_at")),
    ("read_at", _MOMENT.format(column="read_at")),
    ("failed_at", _MOMENT.format(column="failed_at")),
    ("error_code", "error_code"),
    ("error_message", "error_message"),
    # What Meta's status webhooks said it charges the message as (messaging.pricing).
    ("pricing_category", "pricing_category"),
    ("pricing_type", "pricing_type"),
    # The business-scoped user id of a message sent to one (its `phone` is empty then).
    ("user_id", "recipient_user_id"),
)


def _export_sql(with_status: bool, *, send_cancelled: bool) -> str:
    selected = ", ".join(
        f'{expression.format(status=_STATUS_COLUMN[send_cancelled])} AS "{header}"'
        for header, expression in COLUMNS
    )
    where = "bulk_send_id = %s" + (" AND status = ANY(%s)" if with_status else "")
    # Ordered by (send, id) as the messages list is: the (bulk_send, id) index gives the rows in
    # order, with no sort of a million rows first.
    return (
        f"COPY (SELECT {selected} FROM {Message._meta.db_table} WHERE {where} "
        "ORDER BY bulk_send_id, id) TO STDOUT WITH (FORMAT csv, HEADER true)"
    )


def messages_csv(
    bulk_send_id: uuid.UUID, status: str | None = None, *, send_cancelled: bool = False
) -> Iterator[bytes]:
    """The CSV of the send's messages (those a client sees as `status`, when given), header
    first, in chunks of about CHUNK_BYTES. The caller has checked the send is the client's, and
    says whether it is cancelled.

    The database connection is busy until the iterator is exhausted or closed: a client that
    goes away mid-file closes it, which ends the COPY (psycopg cancels it)."""
    params: list[object] = [bulk_send_id]
    if status:
        params.append(stored_statuses_of(status, send_cancelled=send_cancelled))
    sql = _export_sql(bool(status), send_cancelled=send_cancelled)
    with connection.cursor() as cursor, cursor.cursor.copy(sql, params) as copy:
        chunk = bytearray()
        for row in copy:
            chunk += row
            if len(chunk) >= CHUNK_BYTES:
                yield bytes(chunk)
                chunk.clear()
        if chunk:
            yield bytes(chunk)


def messages_csv_response(
    bulk_send_id: uuid.UUID, status: str | None = None, *, send_cancelled: bool = False
) -> StreamingHttpResponse:
    """The CSV as a download named after the send (and the status it holds)."""
    response = StreamingHttpResponse(
        messages_csv(bulk_send_id, status, send_cancelled=send_cancelled),
        content_type="text/csv; charset=utf-8",
    )
    name = f"bulk-send-{bulk_send_id}-messages{'-' + status if status else ''}"
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response
