"""`manage.py register_template`: a message template of a business account, by its components."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from templates_app.models import (
    MessageTemplate,
    TemplateCategory,
    TemplateStatus,
    WhatsAppBusinessAccount,
)
from templates_app.services import template_register


def components_read(value: str) -> Any:
    """Meta's components as JSON, given inline or, as `@path`, in a file."""
    source = "--components"
    if value.startswith("@"):
        path = Path(value[1:])
        source = str(path)
        try:
            value = path.read_text(encoding="utf-8")
        except OSError as error:
            raise CommandError(
                f"Cannot read the components file {path}: {error.strerror}."
            ) from None
    return json_read(value, source)


def json_read(value: str, source: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise CommandError(f"{source} is not valid JSON: {error}.") from None


def template_summary(template: MessageTemplate) -> str:
    variables = (
        ", ".join(f"{spec['name']} ({spec['type']})" for spec in template.variable_specs) or "none"
    )
    buttons = ", ".join(
        f"{button['index']} {button['type']}"
        + (" (takes a variable)" if button["takes_variable"] else "")
        for button in template.buttons
    )
    return (
        f"template {template.name} ({template.language}) id {template.pk}, {template.category}, "
        f"{template.status}; {template.parameter_format} variables: {variables}; "
        f"buttons: {buttons or 'none'}"
    )


class Command(BaseCommand):
    help = (
        "Register (create or update) a message template of a business account from Meta's "
        "components JSON. Its variables, buttons and parameter format are derived from them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--waba-id", required=True, help="The template's business account.")
        parser.add_argument("--name", required=True, help="Template name, e.g. welcome_message.")
        parser.add_argument("--language", default="es", help="Template language (default es).")
        parser.add_argument(
            "--category", default=TemplateCategory.MARKETING, choices=TemplateCategory.values
        )
        parser.add_argument(
            "--status", default=TemplateStatus.APPROVED, choices=TemplateStatus.values
        )
        parser.add_argument(
            "--components",
            required=True,
            help="Meta's components as a JSON list, or @path to a file holding it.",
        )
        parser.add_argument(
            "--variable-types",
            help='Types of placeholders that are not TEXT, as JSON: {"total": "CURRENCY", '
            '"date": "DATE_TIME"} (left out: an existing template keeps its own).',
        )
        parser.add_argument(
            "--currency-code",
            help="ISO 4217 code of CURRENCY values that name none, e.g. ARS (left out: an "
            "existing template keeps its own).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        account = WhatsAppBusinessAccount.objects.filter(waba_id=options["waba_id"]).first()
        if account is None:
            raise CommandError(
                f"No business account with WABA id {options['waba_id']!r}; register it with "
                "`manage.py register_business_account`."
            )
        try:
            template = template_register(
                business_account=account,
                name=options["name"],
                language=options["language"],
                category=options["category"],
                status=options["status"],
                components=components_read(options["components"]),
                variable_types=(
                    None
                    if options["variable_types"] is None
                    else json_read(options["variable_types"], "--variable-types")
                ),
                currency_code=options["currency_code"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(f"Registered {template_summary(template)}.")
