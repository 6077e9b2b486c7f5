"""API paths without their trailing slash are served as the canonical path, never redirected."""

from __future__ import annotations

from typing import Any

from django.test import Client

from tests.conftest import Tenant
from tests.delivery_support import welcome_recipients

API = "/api/v1/meta-templates"

# What differs between two accepted sends of the same body.
PER_SEND = {"bulk_send_id", "task_id", "created_at"}


def send_bulk_body(tenant: Tenant, start: int) -> dict[str, Any]:
    return {
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": "welcome_message",
        "language": "es",
        "recipients": welcome_recipients(3, start=start),
    }


def test_send_bulk_without_the_slash_accepts_the_send_like_with_it(tenant: Tenant) -> None:
    with_slash = tenant.client.post(f"{API}/send-bulk/", send_bulk_body(tenant, 0), format="json")
    without = tenant.client.post(f"{API}/send-bulk", send_bulk_body(tenant, 10), format="json")

    assert (with_slash.status_code, without.status_code) == (202, 202)
    expected = {k: v for k, v in with_slash.json().items() if k not in PER_SEND}
    # The second send is queued behind the first: its estimate and quota figures count both.
    expected["quota_info"] = {**expected["quota_info"], "quota_available": 994}
    assert {k: v for k, v in without.json().items() if k not in PER_SEND} == expected


def test_reads_without_the_slash_answer_like_with_it(tenant: Tenant) -> None:
    sent = tenant.client.post(f"{API}/send-bulk", send_bulk_body(tenant, 0), format="json")
    send_id = sent.json()["bulk_send_id"]

    for path in ["bulk-sends", f"bulk-sends/{send_id}", f"bulk-sends/{send_id}/messages"]:
        with_slash = tenant.client.get(f"{API}/{path}/")
        without = tenant.client.get(f"{API}/{path}")
        assert (with_slash.status_code, without.status_code) == (200, 200), path
        assert without.json() == with_slash.json(), path


def test_an_unknown_path_without_the_slash_is_still_the_json_404(tenant: Tenant) -> None:
    response = tenant.client.post(f"{API}/no-such-thing", {}, format="json")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not found."}


def test_the_openapi_document_lists_only_the_canonical_paths(client: Client, db: None) -> None:
    paths = client.get("/api/schema/?format=json").json()["paths"]

    assert all(path.endswith("/") for path in paths if path.startswith("/api/v1/"))
