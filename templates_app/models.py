"""Meta assets: business accounts, their phone numbers and their message templates."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from meta.components import (
    NAMED,
    POSITIONAL,
    TemplateButton,
    TemplateVariable,
    template_buttons,
    template_parameter_format,
    template_variable_specs,
    template_variables,
    unsendable_header_format,
)
from meta.limits import MAX_THROUGHPUT, tier_limit
from meta.parameters import TEXT
from meta.webhook_payload import PHONE_NUMBER_ID_MAX_LENGTH

# The tier an account or number has until an operator or Meta says otherwise (the contract's).
DEFAULT_TIER = "TIER_1000"


def default_throughput() -> int:
    return int(settings.DEFAULT_THROUGHPUT_PER_SECOND)


class WhatsAppBusinessAccount(models.Model):
    """A WABA. Its messaging-limit tier is the portfolio's: every number of it shares the quota."""

    organization = models.ForeignKey(
        "mindo.Organization", on_delete=models.CASCADE, related_name="business_accounts"
    )
    waba_id = models.CharField("WABA id", max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    # Kept in clear because every Graph call needs it; protect the database accordingly.
    access_token = models.TextField(blank=True)
    messaging_limit_tier = models.CharField(max_length=32, default=DEFAULT_TIER)
    # Set by an `account_update` that stops the account from sending templates (a restriction,
    # a ban); cleared by one that lifts it, or by an operator. Its sends stay halted meanwhile.
    restriction = models.TextField(blank=True)
    restricted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "WhatsApp business account"

    def __str__(self) -> str:
        return self.name or self.waba_id

    @property
    def quota_total(self) -> int | None:
        return tier_limit(self.messaging_limit_tier)

    @property
    def is_restricted(self) -> bool:
        return bool(self.restriction)


class QualityRating(models.TextChoices):
    GREEN = "GREEN"
    YELLOW = "YELLOW"
    RED = "RED"
    UNKNOWN = "UNKNOWN"


class PhoneNumber(models.Model):
    business_account = models.ForeignKey(
        WhatsAppBusinessAccount, on_delete=models.CASCADE, related_name="phone_numbers"
    )
    # Meta's id, unique across Meta, so one number belongs to one organization.
    phone_number_id = models.CharField(max_length=PHONE_NUMBER_ID_MAX_LENGTH, unique=True)
    display_phone_number = models.CharField(max_length=32)
    verified_name = models.CharField(max_length=200, blank=True)
    quality_rating = models.CharField(
        max_length=16, choices=QualityRating.choices, default=QualityRating.GREEN
    )
    messaging_limit_tier = models.CharField(max_length=32, default=DEFAULT_TIER)
    throughput_per_second = models.PositiveIntegerField(
        default=default_throughput,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_THROUGHPUT)],
    )
    # When Meta last reported the number's quality (`phone_number_quality_update`).
    quality_updated_at = models.DateTimeField(null=True, blank=True)
    # The account's primary number, set by an operator; with none set, the account's first
    # number (the oldest) is its primary (`primary_number_ids`).
    is_primary = models.BooleanField(
        "primary",
        default=False,
        help_text="The business account's primary number (at most one per account; with none "
        "marked, the oldest number is).",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["business_account"],
                condition=models.Q(is_primary=True),
                name="phone_number_one_primary_per_account",
                violation_error_message="A business account has at most one primary number.",
            ),
            models.CheckConstraint(
                condition=models.Q(
                    throughput_per_second__gte=1, throughput_per_second__lte=MAX_THROUGHPUT
                ),
                name="phone_number_throughput_between_1_and_1000",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.display_phone_number} ({self.phone_number_id})"


def primary_number_ids(numbers: list[PhoneNumber]) -> set[int]:
    """The ids of the primary numbers among `numbers` (whole accounts' numbers): per account,
    the one marked primary, else the oldest (lowest id)."""
    marked = {number.business_account_id for number in numbers if number.is_primary}
    primary = {number.pk for number in numbers if number.is_primary}
    first: dict[int, int] = {}
    for number in numbers:
        if number.business_account_id not in marked:
            account = number.business_account_id
            first[account] = min(first.get(account, number.pk), number.pk)
    return primary | set(first.values())


class TemplateStatus(models.TextChoices):
    APPROVED = "APPROVED"
    PENDING = "PENDING"
    REJECTED = "REJECTED"
    PAUSED = "PAUSED"
    DISABLED = "DISABLED"
    IN_APPEAL = "IN_APPEAL"
    PENDING_DELETION = "PENDING_DELETION"
    DELETED = "DELETED"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
    ARCHIVED = "ARCHIVED"


class TemplateCategory(models.TextChoices):
    MARKETING = "MARKETING"
    UTILITY = "UTILITY"
    AUTHENTICATION = "AUTHENTICATION"


class ParameterFormat(models.TextChoices):
    NAMED = NAMED
    POSITIONAL = POSITIONAL


class MessageTemplate(models.Model):
    business_account = models.ForeignKey(
        WhatsAppBusinessAccount, on_delete=models.CASCADE, related_name="templates"
    )
    meta_template_id = models.CharField(max_length=64, blank=True)
    name = models.CharField(max_length=512)
    language = models.CharField(max_length=16, default="es")
    category = models.CharField(
        max_length=32, choices=TemplateCategory.choices, default=TemplateCategory.MARKETING
    )
    status = models.CharField(
        max_length=32, choices=TemplateStatus.choices, default=TemplateStatus.PENDING
    )
    components = models.JSONField(default=list, blank=True)
    parameter_format = models.CharField(
        max_length=16, choices=ParameterFormat.choices, default=ParameterFormat.POSITIONAL
    )
    # Derived from `components` whenever they are set (see `set_components`), so a send validates
    # its recipients without parsing Meta's structure again.
    variables = models.JSONField(default=list, blank=True, editable=False)
    buttons = models.JSONField(default=list, blank=True, editable=False)
    # Set by an operator: Meta's components carry examples, not types. Placeholder name ->
    # CURRENCY or DATE_TIME; the others are TEXT (`meta.components.template_variable_specs`).
    variable_types = models.JSONField(
        default=dict,
        blank=True,
        help_text='Placeholder name -> CURRENCY or DATE_TIME, e.g. {"total": "CURRENCY"}; '
        "the others are TEXT.",
    )
    # Meta's quality score of the template (`message_template_quality_update`) and when it came.
    quality_score = models.CharField(max_length=16, blank=True)
    quality_updated_at = models.DateTimeField(null=True, blank=True)
    currency_code = models.CharField(
        max_length=3,
        blank=True,
        help_text="ISO 4217 code of CURRENCY values that name none (e.g. ARS); blank: each "
        "value must name its currency.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["business_account", "name", "language"],
                name="template_unique_name_language_per_account",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.language})"

    def set_components(self, components: list[dict[str, Any]]) -> None:
        self.components = components
        self.variables = template_variables(components)
        self.buttons = list(template_buttons(components))
        self.parameter_format = template_parameter_format(components)

    @property
    def button_specs(self) -> dict[int, TemplateButton]:
        return {int(button["index"]): button for button in self.buttons}

    @property
    def unsendable_header(self) -> str | None:
        """LOCATION when the header needs what no variable carries."""
        return unsendable_header_format(self.components)

    @property
    def variable_specs(self) -> list[TemplateVariable]:
        """Every variable a send fills: name, type, position and component."""
        return template_variable_specs(
            self.components,
            parameter_format=self.parameter_format,
            variable_types=self.variable_types,
        )

    @property
    def typed_variables(self) -> dict[str, str]:
        """Variable name -> type, for the variables that are not plain text."""
        return {spec["name"]: spec["type"] for spec in self.variable_specs if spec["type"] != TEXT}

    @property
    def is_approved(self) -> bool:
        return self.status == TemplateStatus.APPROVED


# Template statuses in which Meta refuses to send the template (its errors 132015, 132016).
REFUSED_TEMPLATE_STATUSES = (TemplateStatus.PAUSED, TemplateStatus.DISABLED)


class AccountEventField(models.TextChoices):
    ACCOUNT_UPDATE = "account_update"
    ACCOUNT_ALERTS = "account_alerts"


class AccountEvent(models.Model):
    """An `account_update` or `account_alerts` Meta sent about a business account, kept for
    its operators (the admin lists them by account)."""

    business_account = models.ForeignKey(
        WhatsAppBusinessAccount, on_delete=models.CASCADE, related_name="events"
    )
    field = models.CharField(max_length=32, choices=AccountEventField.choices)
    # account_update: its `event`; account_alerts: its `alert_type`.
    event = models.CharField(max_length=64)
    # account_alerts: CRITICAL, WARNING, INFORMATIONAL; blank for account_update.
    severity = models.CharField(max_length=64, blank=True)
    # What else Meta said, in a line: a violation type, a ban state, restrictions, an alert's
    # description.
    summary = models.TextField(blank=True)
    # How many active sends the event halted, and whether it lifted the account's restriction.
    sends_halted = models.PositiveIntegerField(default=0)
    lifted = models.BooleanField(default=False)
    details = models.JSONField(default=dict)
    # When Meta says the event happened (the entry's `time`), and a digest of the whole event:
    # the same event posted again (Meta's retry, a replay) is kept once.
    occurred_at = models.DateTimeField(null=True, blank=True)
    fingerprint = models.CharField(max_length=64)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-received_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["business_account", "fingerprint"], name="account_event_once"
            )
        ]

    def __str__(self) -> str:
        return f"{self.field} {self.event}"
