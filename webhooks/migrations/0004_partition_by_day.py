"""Webhook bodies partitioned by the day they were received (webhooks.partitions): retention
drops whole days. The rows already kept move into their days' partitions.

The primary key becomes (id, received_at), as PostgreSQL requires of a partitioned table; ids
still come from one sequence, so an id still names one body. Nothing refers to a body by key.
"""

from datetime import UTC, datetime, timedelta

from django.db import migrations

TABLE = "webhooks_webhookevent"
OLD = f"{TABLE}_unpartitioned"
RECEIVED_AT_INDEX = "webhooks_webhookevent_received_at_e6e0c7f0"
# Kept in step with webhooks.partitions (a migration does not import the app's code).
STORAGE = "autovacuum_vacuum_scale_factor = 0.05, autovacuum_vacuum_insert_scale_factor = 0.05"
DAYS_AHEAD = 7


def _partition_sql(day):
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC)
    return (
        f"CREATE TABLE {TABLE}_p{day:%Y%m%d} PARTITION OF {TABLE} "
        f"FOR VALUES FROM ('{start.isoformat()}') TO ('{(start + timedelta(days=1)).isoformat()}') "
        f"WITH ({STORAGE})"
    )


def partition(apps, schema_editor):
    run = schema_editor.execute
    run(f"ALTER TABLE {TABLE} RENAME TO {OLD}")
    run(f"ALTER TABLE {OLD} RENAME CONSTRAINT {TABLE}_pkey TO {OLD}_pkey")
    run(f"ALTER INDEX webhook_event_unprocessed RENAME TO {OLD}_unprocessed")
    run(f"ALTER INDEX {RECEIVED_AT_INDEX} RENAME TO {OLD}_received_at")
    run(
        f"CREATE TABLE {TABLE} (LIKE {OLD} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
        "PARTITION BY RANGE (received_at)"
    )
    run(f"ALTER TABLE {TABLE} ADD CONSTRAINT {TABLE}_pkey PRIMARY KEY (id, received_at)")
    run(f"CREATE INDEX {RECEIVED_AT_INDEX} ON {TABLE} (received_at)")
    run(f"CREATE INDEX webhook_event_unprocessed ON {TABLE} (id) WHERE processed_at IS NULL")
    run(f"CREATE TABLE {TABLE}_default PARTITION OF {TABLE} DEFAULT WITH ({STORAGE})")
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(f"SELECT DISTINCT (received_at AT TIME ZONE 'UTC')::date FROM {OLD}")
        days = {row[0] for row in cursor.fetchall()}
    today = datetime.now(UTC).date()
    days |= {today + timedelta(days=offset) for offset in range(DAYS_AHEAD + 1)}
    for day in sorted(days):
        run(_partition_sql(day))
    run(f"INSERT INTO {TABLE} SELECT * FROM {OLD}")
    run(f"DROP TABLE {OLD}")
    # The old identity's sequence went with the old table: a sequence of the column's own, from
    # past the highest id, so ids never repeat (Django's sequence reset finds it as a serial's).
    run(f"CREATE SEQUENCE {TABLE}_id_seq OWNED BY {TABLE}.id")
    run(f"SELECT setval('{TABLE}_id_seq', COALESCE((SELECT max(id) FROM {TABLE}), 0) + 1, false)")
    run(f"ALTER TABLE {TABLE} ALTER COLUMN id SET DEFAULT nextval('{TABLE}_id_seq')")


class Migration(migrations.Migration):
    # The copy and the swap are one transaction: a failure leaves the table as it was.
    atomic = True

    dependencies = [("webhooks", "0003_quarantine")]

    operations = [migrations.RunPython(partition, migrations.RunPython.noop, elidable=False)]
