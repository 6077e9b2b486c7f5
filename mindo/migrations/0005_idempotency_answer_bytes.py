"""An Idempotency-Key keeps its answer's bytes, not jsonb: jsonb gives keys back in its own order
(by length, then bytes), so a replay was another body than the first answer.

Keys kept before this migration have only their jsonb body; they are rendered here as the API
renders JSON (compact, UTF-8), so they replay as they did before it.
"""

import json

from django.db import migrations, models

JSON = "application/json"
BATCH = 1000


def _rendered(body):
    # As the API's JSON renderer writes it: compact, non-ASCII as is, U+2028/9 escaped.
    text = json.dumps(body, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029").encode()


def _rows_rewrite(rows, fields, rewrite):
    """`rewrite` each row of `rows`, saving `fields` a batch at a time: keys are many (a day of
    them), their answers small."""
    model = rows.model
    batch = []
    for row in rows.iterator(chunk_size=BATCH):
        rewrite(row)
        batch.append(row)
        if len(batch) == BATCH:
            model.objects.bulk_update(batch, fields)
            batch = []
    model.objects.bulk_update(batch, fields)


def _kept_answers_as_bytes(apps, schema_editor):
    def rewrite(row):
        row.answer = _rendered(row.body)
        row.content_type = JSON

    IdempotencyKey = apps.get_model("mindo", "IdempotencyKey")
    rows = IdempotencyKey.objects.filter(body__isnull=False).only("id", "body")
    _rows_rewrite(rows, ["answer", "content_type"], rewrite)


def _kept_answers_as_json(apps, schema_editor):
    def rewrite(row):
        row.body = json.loads(bytes(row.answer))

    IdempotencyKey = apps.get_model("mindo", "IdempotencyKey")
    rows = IdempotencyKey.objects.filter(answer__isnull=False, content_type=JSON)
    _rows_rewrite(rows.only("id", "answer"), ["body"], rewrite)


class Migration(migrations.Migration):
    dependencies = [
        ("mindo", "0004_api_key_scope_webhooks"),
    ]

    operations = [
        migrations.AddField(
            model_name="idempotencykey",
            name="content_type",
            field=models.CharField(blank=True, db_default="", max_length=255),
        ),
        migrations.AddField(
            model_name="idempotencykey",
            name="answer",
            field=models.BinaryField(blank=True, null=True),
        ),
        migrations.RunPython(_kept_answers_as_bytes, _kept_answers_as_json),
        migrations.RemoveField(model_name="idempotencykey", name="body"),
        migrations.RenameField(model_name="idempotencykey", old_name="answer", new_name="body"),
    ]
