"""Admin for organizations and their API keys.

An API key is shown in full exactly once, in the message that follows its creation: only its hash
is stored. After that an operator can rename it or revoke it, nothing else.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from mindo.api_keys import api_key_create, api_keys_revoke
from mindo.models import API_KEY_PREFIX, ApiKey, Membership, Organization, api_key_lookup

KEY_READONLY_FIELDS = ("masked", "organization", "user", "created_at", "last_used_at", "revoked_at")


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]
    readonly_fields = ["created_at"]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "member_count", "api_key_count", "created_at"]
    search_fields = ["name"]
    readonly_fields = ["created_at"]
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


class ApiKeyAddForm(forms.ModelForm):
    """Organization, user and name: the secret itself is generated on save."""

    class Meta:
        model = ApiKey
        fields = ["organization", "user", "name"]

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


class RevokedFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "Active"), ("revoked", "Revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "masked",
        "organization",
        "user",
        "is_active",
        "created_at",
        "last_used_at",
        "revoked_at",
    ]
    list_filter = [RevokedFilter, "organization"]
    list_select_related = ["organization", "user"]
    search_fields = ["name", "organization__name", "user__email"]
    search_help_text = "A key name, an organization, a user's email, or the key itself."
    actions = ["revoke_keys"]
    raw_id_fields = ["user"]

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> tuple[str, ...]:
        if obj is None:
            return ("organization", "user", "name")
        return ("name", *KEY_READONLY_FIELDS)

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        # Once created, a key keeps its owner: only its name changes, and revoking is an action.
        return () if obj is None else KEY_READONLY_FIELDS

    def get_form(
        self, request: HttpRequest, obj: ApiKey | None = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = ApiKeyAddForm
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
            # Only the name: a full save would write back the `revoked_at` read with the form and
            # could undo a revocation made in the meantime.
            obj.save(update_fields=["name"])
            return
        api_key, raw_key = api_key_create(
            organization=obj.organization, user=obj.user, name=obj.name
        )
        # The admin goes on with `obj` (its log entry, its redirect): make it the row just made.
        obj.pk = api_key.pk
        obj.lookup = api_key.lookup
        obj.key_hash = api_key.key_hash
        obj.created_at = api_key.created_at
        obj._state.adding = False
        obj._state.db = api_key._state.db
        messages.success(
            request,
            f"The new API key is {raw_key}. Copy it now: it is not stored and will not be "
            "shown again.",
        )

    @admin.display(description="active", boolean=True)
    def is_active(self, api_key: ApiKey) -> bool:
        return api_key.is_active

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = api_keys_revoke(queryset)
        seconds = f"{settings.API_KEY_CACHE_SECONDS:g}"
        self.message_user(
            request,
            f"Revoked {revoked} key(s); every web process refuses them within {seconds} s.",
            messages.SUCCESS,
        )
