"""Setting a key's scopes and expiry: `create_api_key`, the admin, and the migration that gave
every existing key every scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient

from mindo.api_keys import api_key_scopes_clean
from mindo.models import ApiKey, ApiKeyScope
from tests import factories
from tests.conftest import Tenant, TickingClock

BULK_SENDS_URL = "/api/v1/meta-templates/bulk-sends/"
BUSINESS_INFO_URL = "/api/v1/business-info/"
NO_SCOPE = {"error": "API Key no tiene acceso a este recurso"}
EXPIRED = {"error": "API Key expirada"}


def create_api_key(*args: str) -> tuple[ApiKey, str, str]:
    stdout, stderr = StringIO(), StringIO()
    call_command(
        "create_api_key", "--org", "Mindo", "--email", "ops@example.com", *args,
        stdout=stdout, stderr=stderr,
    )  # fmt: skip
    raw_key = stdout.getvalue().strip()
    api_key = next(key for key in ApiKey.objects.all() if key.matches(raw_key))
    return api_key, raw_key, stderr.getvalue()


def client_with(raw_key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_X_API_KEY=raw_key)
    return client


# --- create_api_key ------------------------------------------------------------------------------


def test_a_key_made_without_options_has_every_scope_and_no_expiry(tenant: Tenant) -> None:
    api_key, _, stderr = create_api_key()

    assert api_key.scopes == ["send", "read", "contacts", "account", "webhooks"]
    assert api_key.expires_at is None
    assert "scopes send, read, contacts, account, webhooks, never expires" in stderr


def test_create_api_key_limits_the_key_to_its_scopes(tenant: Tenant) -> None:
    api_key, raw_key, _ = create_api_key("--scopes", "account, read,account")

    assert api_key.scopes == ["read", "account"]
    assert client_with(raw_key).get(BULK_SENDS_URL).status_code == 200
    assert client_with(raw_key).get(BUSINESS_INFO_URL).status_code == 200
    refused = client_with(raw_key).post("/api/v1/meta-templates/send-bulk/", {}, format="json")
    assert (refused.status_code, refused.json()) == (403, NO_SCOPE)


def test_create_api_key_sets_an_expiry_at_a_moment(
    frozen_now: TickingClock, tenant: Tenant
) -> None:
    api_key, raw_key, stderr = create_api_key("--expires-at", "2026-02-01T09:30:00-03:00")

    assert api_key.expires_at == datetime(2026, 2, 1, 12, 30, tzinfo=UTC)
    assert "expires 2026-02-01T09:30:00-03:00" in stderr
    assert client_with(raw_key).get(BULK_SENDS_URL).status_code == 200
    frozen_now.current = datetime(2026, 2, 1, 12, 30, tzinfo=UTC)
    refused = client_with(raw_key).get(BULK_SENDS_URL)
    assert (refused.status_code, refused.json()) == (401, EXPIRED)


def test_create_api_key_reads_a_date_without_an_offset_as_utc(
    frozen_now: TickingClock, tenant: Tenant
) -> None:
    api_key, _, _ = create_api_key("--expires-at", "2026-03-01")

    assert api_key.expires_at == datetime(2026, 3, 1, tzinfo=UTC)


def test_create_api_key_sets_an_expiry_in_days(frozen_now: TickingClock, tenant: Tenant) -> None:
    api_key, _, _ = create_api_key("--expires-in-days", "30")

    assert api_key.expires_at is not None
    expected = datetime(2026, 1, 15, 12, tzinfo=UTC) + timedelta(days=30)
    assert expected < api_key.expires_at < expected + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scopes", "read,admin"], "Unknown scope\\(s\\): admin"),
        (["--scopes", " , "], "at least one scope"),
        (["--expires-at", "next week"], "is not an ISO 8601 date"),
        (["--expires-at", "2020-01-01"], "is not in the future"),
        (["--expires-in-days", "0"], "must be 1 or more"),
    ],
)
def test_create_api_key_refuses_bad_scopes_and_expiries(
    frozen_now: TickingClock, tenant: Tenant, args: list[str], message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        create_api_key(*args)

    assert ApiKey.objects.count() == 1  # the tenant's


def test_create_api_key_refuses_both_kinds_of_expiry(tenant: Tenant) -> None:
    with pytest.raises(CommandError):
        create_api_key("--expires-at", "2099-01-01", "--expires-in-days", "3")


def test_scopes_are_kept_in_their_own_order_without_repeats() -> None:
    assert api_key_scopes_clean(["account", "send", "account"]) == ["send", "account"]


# --- the admin -----------------------------------------------------------------------------------


def add_key_in_admin(admin_client: Client, tenant: Tenant, **fields: Any) -> Any:
    user = factories.make_user(tenant.organization)
    form = {"organization": tenant.organization.pk, "user": user.pk, "name": "admin key"}
    return admin_client.post("/admin/mindo/apikey/add/", {**form, **fields}, follow=True)


def test_the_admin_offers_every_scope_to_a_new_key(admin_client: Client, tenant: Tenant) -> None:
    form = admin_client.get("/admin/mindo/apikey/add/").context["adminform"].form

    assert form.fields["scopes"].initial() == list(ApiKeyScope.values)
    assert "expires_at" in form.fields


def test_the_admin_creates_a_key_with_scopes_and_an_expiry(
    admin_client: Client, tenant: Tenant
) -> None:
    response = add_key_in_admin(
        admin_client,
        tenant,
        scopes=["contacts", "read"],
        expires_at_0="2031-01-31",
        expires_at_1="23:59:00",
    )

    assert response.status_code == 200
    api_key = ApiKey.objects.get(name="admin key")
    assert api_key.scopes == ["read", "contacts"]
    assert api_key.expires_at == datetime(2031, 1, 31, 23, 59, tzinfo=UTC)


def test_the_admin_refuses_a_key_without_a_scope(admin_client: Client, tenant: Tenant) -> None:
    response = add_key_in_admin(admin_client, tenant, scopes=[])

    assert "scopes" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="admin key").exists()


def test_a_scope_removed_in_the_admin_is_refused_on_the_next_request(
    admin_client: Client, tenant: Tenant
) -> None:
    assert tenant.client.get(BUSINESS_INFO_URL).status_code == 200  # now cached

    admin_client.post(
        f"/admin/mindo/apikey/{tenant.api_key.pk}/change/",
        {"name": tenant.api_key.name, "scopes": ["send", "read"]},
    )

    refused = tenant.client.get(BUSINESS_INFO_URL)
    assert (refused.status_code, refused.json()) == (403, NO_SCOPE)


@pytest.mark.parametrize(
    ("state", "names"),
    [("active", ["live"]), ("expired", ["lapsed"]), ("revoked", ["revoked"])],
)
def test_the_admin_lists_keys_by_state(
    admin_client: Client, tenant: Tenant, state: str, names: list[str]
) -> None:
    ApiKey.objects.all().delete()
    past, future = datetime(2020, 1, 1, tzinfo=UTC), datetime(2099, 1, 1, tzinfo=UTC)
    for name, fields in [
        ("live", {"expires_at": future}),
        ("lapsed", {"expires_at": past}),
        ("revoked", {"revoked_at": past}),
    ]:
        api_key, _ = factories.make_api_key(tenant.organization)
        ApiKey.objects.filter(pk=api_key.pk).update(name=name, **fields)

    response = admin_client.get("/admin/mindo/apikey/", {"state": state})

    assert [key.name for key in response.context["cl"].result_list] == names


# --- the migration -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_gives_every_existing_key_every_scope_and_no_expiry() -> None:
    before, after = (
        ("mindo", "0001_initial"),
        ("mindo", "0002_organization_profile_and_api_key_scopes"),
    )
    executor = MigrationExecutor(connection)
    try:
        executor.migrate([before])
        old_state = executor.loader.project_state([before]).apps
        organization = old_state.get_model("mindo", "Organization").objects.create(name="Old")
        user = old_state.get_model("auth", "User").objects.create(username="old@example.com")
        old_state.get_model("mindo", "ApiKey").objects.create(
            organization=organization, user=user, name="old", lookup="abcdefgh", key_hash="0" * 64
        )

        executor = MigrationExecutor(connection)
        executor.migrate([after])
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())

    api_key = ApiKey.objects.get(name="old")
    # Every scope of its time, and `webhooks` from the migration that added it.
    assert api_key.scopes == ["send", "read", "contacts", "account", "webhooks"]
    assert api_key.expires_at is None
    assert api_key.organization.timezone == "UTC"
    assert api_key.organization.company_size is None
