"""A send's messages in id order come from one index, (bulk_send, id), which replaces the
foreign key's own index on bulk_send alone: every query that used that one can use this one,
and a COPY still maintains the same number of indexes.

The new index is built first, and concurrently, so messages stay writable while it is built and
no moment is left without an index on bulk_send.
"""

import django.db.models.deletion
from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run in a transaction

    dependencies = [
        ("bulksend", "0001_initial"),
        ("messaging", "0006_webhook_progress"),
        ("templates_app", "0002_more_template_statuses"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="message",
            index=models.Index(fields=["bulk_send", "id"], name="message_send_id"),
        ),
        migrations.AlterField(
            model_name="message",
            name="bulk_send",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="messages",
                to="bulksend.bulksend",
            ),
        ),
    ]
