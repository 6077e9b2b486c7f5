"""Admin for Meta assets: business accounts, phone numbers and message templates."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from meta.graph import GraphRequestError
from templates_app.meta_updates import account_restriction_lift
from templates_app.models import (
    AccountEvent,
    MessageTemplate,
    PhoneNumber,
    WhatsAppBusinessAccount,
)
from templates_app.services import (
    RegistrationError,
    components_validate,
    currency_code_validate,
    tier_validate,
    variable_types_validate,
)
from templates_app.sync import SyncResult, sync_numbers, sync_templates


def _clean_tier(value: str) -> str:
    try:
        return tier_validate(value)
    except RegistrationError as error:
        raise forms.ValidationError(str(error)) from None


class PhoneNumberForm(forms.ModelForm):
    class Meta:
        model = PhoneNumber
        fields = [
            "business_account",
            "phone_number_id",
            "display_phone_number",
            "verified_name",
            "quality_rating",
            "messaging_limit_tier",
            "throughput_per_second",
            "is_primary",
        ]

    def clean_messaging_limit_tier(self) -> str:
        return _clean_tier(self.cleaned_data["messaging_limit_tier"])


class BusinessAccountForm(forms.ModelForm):
    # The token is a credential: the form never sends it back to the browser.
    access_token = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave blank to keep the current token.",
    )

    class Meta:
        model = WhatsAppBusinessAccount
        fields = ["organization", "waba_id", "name", "access_token", "messaging_limit_tier"]

    def clean_access_token(self) -> str:
        token: str = self.cleaned_data["access_token"]
        if not token and self.instance.pk is not None:
            return self.instance.access_token
        return token

    def clean_messaging_limit_tier(self) -> str:
        return _clean_tier(self.cleaned_data["messaging_limit_tier"])


class PhoneNumberInline(admin.TabularInline):
    model = PhoneNumber
    form = PhoneNumberForm
    extra = 0
    fields = [
        "phone_number_id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "messaging_limit_tier",
        "throughput_per_second",
        "is_primary",
    ]


@admin.register(WhatsAppBusinessAccount)
class WhatsAppBusinessAccountAdmin(admin.ModelAdmin):
    form = BusinessAccountForm
    # No access_token here: a list is the easiest place to leak a credential from.
    list_display = [
        "__str__",
        "waba_id",
        "organization",
        "messaging_limit_tier",
        "quota",
        "number_count",
        "restriction",
        "created_at",
    ]
    list_filter = ["messaging_limit_tier", "organization"]
    list_select_related = ["organization"]
    search_fields = ["=waba_id", "name", "organization__name"]
    fields = [
        "organization",
        "waba_id",
        "name",
        "access_token",
        "messaging_limit_tier",
        "restriction",
        "restricted_at",
    ]
    # Set and cleared by Meta's account_update (or the action below), never typed in.
    readonly_fields = ["created_at", "restriction", "restricted_at"]
    inlines = [PhoneNumberInline]
    actions = ["sync_templates_from_meta", "sync_numbers_from_meta", "lift_restriction"]

    @admin.action(description="Mark Meta's restriction lifted (its halted sends may resume)")
    def lift_restriction(
        self, request: HttpRequest, queryset: QuerySet[WhatsAppBusinessAccount]
    ) -> None:
        # Meta sends no event when a restriction expires or an appeal succeeds: the operator,
        # who sees it in WhatsApp Manager, says so here.
        lifted = sum(account_restriction_lift(account_id=account.pk) for account in queryset)
        self.message_user(
            request, f"Lifted the restriction of {lifted} accounts.", messages.SUCCESS
        )

    def _sync(
        self,
        request: HttpRequest,
        queryset: QuerySet[WhatsAppBusinessAccount],
        what: str,
        sync: Callable[[WhatsAppBusinessAccount], SyncResult],
    ) -> None:
        for account in queryset:
            try:
                result = sync(account)
            except GraphRequestError as error:
                self.message_user(
                    request, f"{account}: {what} not synced: {error.error.text}", messages.ERROR
                )
            else:
                self.message_user(request, f"{account}: {what} {result}.", messages.SUCCESS)

    @admin.action(description="Sync templates from the Graph API")
    def sync_templates_from_meta(
        self, request: HttpRequest, queryset: QuerySet[WhatsAppBusinessAccount]
    ) -> None:
        self._sync(request, queryset, "templates", sync_templates)

    @admin.action(description="Sync phone numbers from the Graph API")
    def sync_numbers_from_meta(
        self, request: HttpRequest, queryset: QuerySet[WhatsAppBusinessAccount]
    ) -> None:
        self._sync(request, queryset, "numbers", sync_numbers)

    def get_queryset(self, request: HttpRequest) -> QuerySet[WhatsAppBusinessAccount]:
        return super().get_queryset(request).annotate(number_total=Count("phone_numbers"))

    @admin.display(description="unique recipients / 24 h")
    def quota(self, account: WhatsAppBusinessAccount) -> str:
        try:
            limit = account.quota_total
        except ValueError:
            return "unknown tier"
        return "unlimited" if limit is None else f"{limit:,}"

    @admin.display(description="numbers", ordering="number_total")
    def number_count(self, account: Any) -> int:
        return int(account.number_total)


@admin.register(PhoneNumber)
class PhoneNumberAdmin(admin.ModelAdmin):
    form = PhoneNumberForm
    list_display = [
        "display_phone_number",
        "phone_number_id",
        "verified_name",
        "business_account",
        "business_account__organization",
        "quality_rating",
        "quality_updated_at",
        "messaging_limit_tier",
        "throughput_per_second",
        "is_primary",
        "created_at",
    ]
    list_filter = ["quality_rating", "messaging_limit_tier", "business_account__organization"]
    list_select_related = ["business_account__organization"]
    search_fields = ["=phone_number_id", "display_phone_number", "verified_name"]
    raw_id_fields = ["business_account"]
    readonly_fields = ["created_at", "quality_updated_at"]


class MessageTemplateForm(forms.ModelForm):
    class Meta:
        model = MessageTemplate
        fields = [
            "business_account",
            "name",
            "language",
            "category",
            "status",
            "meta_template_id",
            "components",
            "variable_types",
            "currency_code",
        ]

    def clean_components(self) -> list[dict[str, Any]]:
        try:
            return components_validate(self.cleaned_data["components"])
        except RegistrationError as error:
            raise forms.ValidationError(str(error)) from None

    def clean_currency_code(self) -> str:
        try:
            return currency_code_validate(self.cleaned_data["currency_code"].strip().upper())
        except RegistrationError as error:
            raise forms.ValidationError(str(error)) from None

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if "components" in cleaned and "variable_types" in cleaned:
            try:
                cleaned["variable_types"] = variable_types_validate(
                    cleaned["variable_types"], cleaned["components"]
                )
            except RegistrationError as error:
                self.add_error("variable_types", str(error))
        return cleaned


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    form = MessageTemplateForm
    list_display = [
        "name",
        "language",
        "category",
        "status",
        "quality_score",
        "parameter_format",
        "business_account",
        "updated_at",
    ]
    list_filter = ["status", "quality_score", "category", "parameter_format", "language"]
    list_select_related = ["business_account"]
    search_fields = ["name", "=meta_template_id"]
    raw_id_fields = ["business_account"]
    fields = [
        "business_account",
        "name",
        "language",
        "category",
        "status",
        "quality_score",
        "quality_updated_at",
        "meta_template_id",
        "components",
        "variable_types",
        "currency_code",
        "parameter_format",
        "variables",
        "buttons",
        "created_at",
        "updated_at",
    ]
    # Derived from the components on every save, so editing them by hand could only contradict.
    readonly_fields = [
        "parameter_format",
        "variables",
        "buttons",
        "quality_score",
        "quality_updated_at",
        "created_at",
        "updated_at",
    ]

    def save_model(
        self, request: HttpRequest, obj: MessageTemplate, form: Any, change: bool
    ) -> None:
        obj.set_components(obj.components)
        super().save_model(request, obj, form, change)


ACCOUNT_EVENT_COLUMNS: tuple[str, ...] = (
    "received_at",
    "occurred_at",
    "business_account",
    "field",
    "event",
    "severity",
    "summary",
    "sends_halted",
    "lifted",
)


@admin.register(AccountEvent)
class AccountEventAdmin(admin.ModelAdmin):
    """What Meta said of the business accounts (`account_update`, `account_alerts`), newest
    first, to read by account; kept as Meta sent them, so read-only."""

    list_display = ACCOUNT_EVENT_COLUMNS
    list_filter = ["field", "severity", "business_account"]
    list_select_related = ["business_account"]
    search_fields = ["event", "summary", "=business_account__waba_id"]
    date_hierarchy = "received_at"
    # Everything shown is read-only: kept as Meta sent it.
    readonly_fields = (*ACCOUNT_EVENT_COLUMNS, "details")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: AccountEvent | None = None) -> bool:
        return False
