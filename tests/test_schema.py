"""The OpenAPI document and its Swagger UI."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tests.spec_shapes import CONTACT_KEYS, CONTACT_LOOKUP_KEYS, DETAIL_KEYS, SEND_MESSAGE_KEYS

PATHS: dict[str, str | list[str]] = {
    "/api/v1/meta-templates/send/": "post",
    "/api/v1/meta-templates/send-bulk/": "post",
    "/api/v1/meta-templates/bulk-sends/": "get",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/": "get",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/": "get",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/cancel/": "post",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/pause/": "post",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/resume/": "post",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/messages/export/": "get",
    "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/retry/": "post",
    "/api/v1/meta-templates/messages/{wamid}/": "get",
    "/api/v1/contact-lookup/": "get",
    "/api/v1/business-info/": "get",
    "/api/v1/business-accounts/": "get",
    "/api/v1/suppressions/": ["get", "post"],
    "/api/v1/suppressions/{phone}/": "delete",
    "/api/v1/webhook-endpoints/": ("get", "post"),
    "/api/v1/webhook-endpoints/{endpoint_id}/": ("delete", "get"),
    "/api/v1/webhook-endpoints/{endpoint_id}/deliveries/": "get",
    "/api/v1/webhook-endpoints/{endpoint_id}/replay/": "post",
    "/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret/": "post",
    "/api/v1/webhook-endpoints/{endpoint_id}/test/": "post",
}


@pytest.fixture
def schema(client: Client, db: None) -> dict[str, Any]:
    response = client.get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow `$ref`s to the component they name."""
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = schema["components"]["schemas"][name]
    return node


def response_schema(schema: dict[str, Any], path: str, method: str, status: str) -> Any:
    content = schema["paths"][path][method]["responses"][status]["content"]
    return resolve(schema, content["application/json"]["schema"])


def test_it_is_an_openapi_3_document(schema: dict[str, Any]) -> None:
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"]


def test_it_lists_the_api_paths_with_their_methods(schema: dict[str, Any]) -> None:
    assert {path: sorted(ops) for path, ops in schema["paths"].items() if "/api/v1/" in path} == {
        path: sorted([method] if isinstance(method, str) else method)
        for path, method in PATHS.items()
    }


def test_it_describes_the_202_of_send_bulk_with_the_spec_fields(schema: dict[str, Any]) -> None:
    accepted = response_schema(schema, "/api/v1/meta-templates/send-bulk/", "post", "202")

    assert set(accepted["properties"]) == {
        "bulk_send_id",
        "task_id",
        "status",
        "template_name",
        "total_recipients",
        "unique_recipients",
        "estimated_time_minutes",
        "created_at",
        "whatsapp_phone_number",
        "quota_info",
    }
    number = resolve(schema, accepted["properties"]["whatsapp_phone_number"])
    assert set(number["properties"]) == {
        "id",
        "phone_number_id",
        "display_phone_number",
        "verified_name",
        "quality_rating",
        "messaging_limit_tier",
    }
    quota = resolve(schema, accepted["properties"]["quota_info"])
    assert set(quota["properties"]) == {
        "can_send",
        "quota_needed",
        "quota_available",
        "quota_total",
        "tier",
    }


def test_it_describes_the_send_bulk_request(schema: dict[str, Any]) -> None:
    body = schema["paths"]["/api/v1/meta-templates/send-bulk/"]["post"]["requestBody"]
    request = resolve(schema, body["content"]["application/json"]["schema"])

    assert set(request["properties"]) == {
        "phone_number_id",
        "template_name",
        "language",
        "recipients",
        "send_at",
        "send_window",
        "callback_url",  # optional: this send's events go to it too
    }
    assert set(request["required"]) == {"phone_number_id", "template_name", "recipients"}
    window_field = request["properties"]["send_window"]
    window = resolve(schema, window_field.get("allOf", [window_field])[0])
    assert set(window["properties"]) == {"start", "end"}


def test_it_describes_the_detail_with_the_spec_fields(schema: dict[str, Any]) -> None:
    detail = response_schema(
        schema, "/api/v1/meta-templates/bulk-sends/{bulk_send_id}/", "get", "200"
    )

    # Additions to the contract's fields, each present only when it says something: why a send
    # stopped or waits, a scheduled send's schedule, the links between a send and its retries,
    # and when a paused send was paused.
    additions = {"status_reason", "send_at", "send_window", "retry_of", "retries", "paused_at"}
    assert set(detail["properties"]) == {*DETAIL_KEYS, *additions}
    assert not additions & set(detail.get("required", []))


def test_it_documents_the_api_key_header(schema: dict[str, Any]) -> None:
    schemes = schema["components"]["securitySchemes"]

    assert {"type": "apiKey", "in": "header", "name": "X-API-Key"} in schemes.values()


def test_it_documents_the_error_statuses_of_send_bulk(schema: dict[str, Any]) -> None:
    responses = schema["paths"]["/api/v1/meta-templates/send-bulk/"]["post"]["responses"]

    assert {"202", "400", "401", "404", "413", "429"} <= set(responses)


def test_it_serves_the_swagger_ui(client: Client, db: None) -> None:
    response = client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger" in response.content.lower()


def test_it_describes_the_200_of_send_with_the_spec_fields(schema: dict[str, Any]) -> None:
    sent = response_schema(schema, "/api/v1/meta-templates/send/", "post", "200")
    assert list(sent["properties"]) == SEND_MESSAGE_KEYS
    body = schema["paths"]["/api/v1/meta-templates/send/"]["post"]["requestBody"]
    request = resolve(schema, body["content"]["application/json"]["schema"])
    assert set(request["required"]) == {"phone_number_id", "template_name", "recipient_phone"}


def test_it_describes_the_contact_lookup_with_the_pages_keys(schema: dict[str, Any]) -> None:
    found = response_schema(schema, "/api/v1/contact-lookup/", "get", "200")
    nullable_contact = found["properties"]["contact"]
    contact = resolve(schema, nullable_contact["allOf"][0])
    phone, user_id = schema["paths"]["/api/v1/contact-lookup/"]["get"]["parameters"]

    assert list(found["properties"]) == CONTACT_LOOKUP_KEYS
    assert list(contact["properties"]) == CONTACT_KEYS
    assert nullable_contact["nullable"] is True
    # The page's `phone`; Meta's business-scoped `user_id` may be given instead of it.
    assert (phone["name"], phone["in"], phone.get("required")) == ("phone", "query", None)
    assert (user_id["name"], user_id["in"], user_id.get("required")) == ("user_id", "query", None)


def test_every_endpoint_documents_the_key_checks_401_and_403(schema: dict[str, Any]) -> None:
    operations = [
        (path, method)
        for path, methods in PATHS.items()
        for method in ([methods] if isinstance(methods, str) else methods)
    ]
    for path, method in operations:
        responses = schema["paths"][path][method]["responses"]
        unauthorized = responses["401"]["content"]["application/json"]
        forbidden = responses["403"]["content"]["application/json"]

        assert resolve(schema, unauthorized["schema"])["properties"] == {
            "error": {"type": "string"}
        }
        assert [example["value"] for example in unauthorized["examples"].values()] == [
            {"error": "Este endpoint requiere autenticacion con API Key (header X-API-Key)"},
            {"error": "API Key expirada"},
        ], path
        assert [example["value"] for example in forbidden["examples"].values()] == [
            {"error": "API Key no tiene acceso a este recurso"}
        ], path
        assert "scope" in responses["403"]["description"], path


def test_the_message_lookups_own_403_stays_described(schema: dict[str, Any]) -> None:
    forbidden = schema["paths"]["/api/v1/meta-templates/messages/{wamid}/"]["get"]["responses"]

    assert "another organization" in forbidden["403"]["description"]


def test_business_info_documents_its_fields_and_sizes(schema: dict[str, Any]) -> None:
    info = response_schema(schema, "/api/v1/business-info/", "get", "200")

    assert list(info["properties"]) == [
        "id",
        "name",
        "email",
        "phone",
        "website",
        "address",
        "description",
        "timezone",
        "companySize",
        "companySizeDisplay",
        "companyTypes",
        "categories",
    ]
    size = info["properties"]["companySize"]
    sizes = resolve(schema, size["oneOf"][0]) if "oneOf" in size else resolve(schema, size)
    assert [value for value in sizes["enum"] if value] == [
        "MICRO",
        "SMALL",
        "MEDIUM",
        "LARGE",
        "ENTERPRISE",
    ]
