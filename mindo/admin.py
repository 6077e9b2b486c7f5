"""Admin for organizations (and their profile) and their API keys.

An API key is shown in full exactly once, in the message that follows its creation: only its hash
is stored. After that an operator can rename it, change its scopes and expiry, or revoke it.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from mindo.api_keys import api_key_create, api_keys_forget, api_keys_revoke
from mindo.models import (
    API_KEY_PREFIX,
    ApiKey,
    ApiKeyScope,
    CompanyType,
    Membership,
    Organization,
    all_scopes,
    api_key_lookup,
)

KEY_READONLY_FIELDS = ("masked", "organization", "user", "created_at", "last_used_at", "revoked_at")
# An organization's profile, as business-info answers it.
PROFILE_FIELDS = (
    "email",
    "phone",
    "website",
    "address",
    "description",
    "timezone",
    "company_size",
    "company_types",
    "categories",
)
# What an operator may change on an existing key.
KEY_EDITABLE_FIELDS = ("name", "scopes", "expires_at")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]


class OrganizationForm(forms.ModelForm):
    """The profile business-info answers: types as checkboxes, the time zone from IANA's list,
    categories as a comma-separated list."""

    company_types = forms.MultipleChoiceField(
        choices=CompanyType.choices, widget=forms.CheckboxSelectMultiple, required=False
    )
    # Django 6 reads a website written without a scheme as https; so does this form already.
    website = forms.URLField(required=False, assume_scheme="https")
    timezone = forms.ChoiceField(choices=lambda: [(z, z) for z in sorted(available_timezones())])

    class Meta:
        model = Organization
        fields = ["name", *PROFILE_FIELDS]
        help_texts = {"categories": "Category names, separated by commas."}


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    form = OrganizationForm
    list_display = ["name", "company_size", "timezone", "member_count", "api_key_count"]
    list_filter = ["company_size"]
    search_fields = ["name", "email"]
    readonly_fields = ["created_at"]
    fieldsets = [
        (None, {"fields": ["name", "created_at"]}),
        ("Business profile", {"fields": PROFILE_FIELDS}),
    ]
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Organization]:
        return (
            super()
            .get_queryset(request)
            .annotate(
                member_total=Count("memberships", distinct=True),
                api_key_total=Count("api_keys", distinct=True),
            )
        )

    @admin.display(description="members", ordering="member_total")
    def member_count(self, organization: Any) -> int:
        return int(organization.member_total)

    @admin.display(description="API keys", ordering="api_key_total")
    def api_key_count(self, organization: Any) -> int:
        return int(organization.api_key_total)


class ApiKeyForm(forms.ModelForm):
    """Scopes as checkboxes (every one for a new key) and at least one of them."""

    scopes = forms.MultipleChoiceField(
        choices=ApiKeyScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=all_scopes,
        help_text="The endpoints the key may call.",
    )

    class Meta:
        model = ApiKey
        fields = list(KEY_EDITABLE_FIELDS)
        help_texts = {"expires_at": "Empty: the key never expires. In UTC."}


class ApiKeyAddForm(ApiKeyForm):
    """Organization, user, name, scopes and expiry: the secret itself is generated on save."""

    class Meta(ApiKeyForm.Meta):
        fields = ["organization", "user", *KEY_EDITABLE_FIELDS]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        organization = cleaned.get("organization")
        user = cleaned.get("user")
        if organization is not None and user is not None:
            membership = Membership.objects.filter(user=user).first()
            # A send made with the key is attributed to its user, who must be of the same
            # organization, or another organization's user would show up as `created_by`.
            if membership is None or membership.organization_id != organization.pk:
                raise forms.ValidationError(
                    f"{user} is not a member of {organization}. Add them to the organization "
                    "(Memberships, on the organization's page) first."
                )
        return cleaned


class KeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("expired", "Expired"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.in_force(now)  # type: ignore[attr-defined]
        if self.value() == "expired":
            return queryset.lapsed(now)  # type: ignore[attr-defined]
        if self.value() == "revoked":
            return queryset.revoked()  # type: ignore[attr-defined]
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "masked",
        "organization",
        "user",
        "in_force",
        "scope_list",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [KeyStateFilter, "organization"]
    list_select_related = ["organization", "user"]
    search_fields = ["name", "organization__name", "user__email"]
    search_help_text = "A key name, an organization, a user's email, or the key itself."
    actions = ["revoke_keys"]
    raw_id_fields = ["user"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("organization", "user", *KEY_EDITABLE_FIELDS)
        return (*KEY_EDITABLE_FIELDS, *KEY_READONLY_FIELDS)

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        # Once created, a key keeps its owner: its name, scopes and expiry change, and revoking
        # is an action.
        return () if obj is None else KEY_READONLY_FIELDS

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        kwargs["form"] = ApiKeyAddForm if obj is None else ApiKeyForm
        return super().get_form(request, obj, change, **kwargs)

    def has_delete_permission(self, request: HttpRequest, obj: ApiKey | None = None) -> bool:
        # Revoking keeps the record of who used which key and when; deleting would lose it.
        return False

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiKey], search_term: str
    ) -> tuple[QuerySet[ApiKey], bool]:
        term = search_term.strip()
        if term.startswith(API_KEY_PREFIX):
            # A pasted key (or its start) finds its row by the clear prefix, never by the secret.
            return queryset.filter(lookup=api_key_lookup(term)), False
        return super().get_search_results(request, queryset, search_term)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        if change:
            # Only what the form edits: a full save would write back the `revoked_at` read with
            # the form and could undo a revocation made in the meantime.
            obj.save(update_fields=list(KEY_EDITABLE_FIELDS))
            api_keys_forget(ApiKey.objects.filter(pk=obj.pk))
            return
        api_key, raw_key = api_key_create(
            organization=obj.organization,
            user=obj.user,
            name=obj.name,
            scopes=obj.scopes,
            expires_at=obj.expires_at,
        )
        # The admin goes on with `obj` (its log entry, its redirect): make it the row just made.
        obj.pk = api_key.pk
        obj.lookup = api_key.lookup
        obj.key_hash = api_key.key_hash
        obj.created_at = api_key.created_at
        obj.scopes = api_key.scopes
        obj._state.adding = False
        obj._state.db = api_key._state.db
        messages.success(
            request,
            f"The new API key is {raw_key}. Copy it now: it is not stored and will not be "
            "shown again.",
        )

    @admin.display(description="in force", boolean=True)
    def in_force(self, api_key: ApiKey) -> bool:
        return not api_key.is_expired(timezone.now())

    @admin.display(description="scopes")
    def scope_list(self, api_key: ApiKey) -> str:
        return ", ".join(api_key.scopes)

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = api_keys_revoke(queryset)
        seconds = f"{settings.API_KEY_CACHE_SECONDS:g}"
        self.message_user(
            request,
            f"Revoked {revoked} key(s); every web process refuses them within {seconds} s.",
            messages.SUCCESS,
        )
