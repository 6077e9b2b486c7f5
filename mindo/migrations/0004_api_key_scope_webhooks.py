import django.contrib.postgres.fields
from django.db import migrations, models

import mindo.models

OLDER_SCOPES = ["send", "read", "contacts", "account"]


def grant_webhooks_to_keys_with_every_scope(apps, schema_editor):
    """A key made with every scope before `webhooks` existed keeps every scope: the default of a
    key is all of them. A key limited to some scopes stays limited."""
    ApiKey = apps.get_model("mindo", "ApiKey")
    ApiKey.objects.filter(scopes__contains=OLDER_SCOPES).exclude(
        scopes__contains=["webhooks"]
    ).update(
        scopes=models.Func(models.F("scopes"), models.Value("webhooks"), function="array_append")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("mindo", "0003_idempotency_key"),
    ]

    operations = [
        migrations.AlterField(
            model_name="apikey",
            name="scopes",
            field=django.contrib.postgres.fields.ArrayField(
                base_field=models.CharField(
                    choices=[
                        ("send", "send (send, send-bulk)"),
                        ("read", "read (bulk sends, their messages, message lookup)"),
                        ("contacts", "contacts (contact-lookup)"),
                        ("account", "account (business-accounts, business-info)"),
                        ("webhooks", "webhooks (webhook-endpoints: status callbacks)"),
                    ],
                    max_length=16,
                ),
                default=mindo.models.all_scopes,
                size=None,
            ),
        ),
        migrations.RunPython(grant_webhooks_to_keys_with_every_scope, migrations.RunPython.noop),
    ]
