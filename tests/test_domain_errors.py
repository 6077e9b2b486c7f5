"""Services refuse with the project's own errors; only the HTTP layer knows DRF and statuses."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from rest_framework.test import APIRequestFactory

from bulksend.creation import bulk_send_create
from bulksend.models import BulkSend
from bulksend.recipients import Recipient
from messaging.lookup import message_get_by_wamid
from messaging.models import Message
from mindo.errors import AccessDeniedError, DomainError, InvalidFieldsError, NotFoundError
from mindo.exceptions import exception_handler
from templates_app.models import TemplateStatus
from tests import factories
from tests.conftest import Tenant

ROOT = Path(__file__).resolve().parent.parent
APPS = ["bulksend", "messaging", "templates_app", "webhooks", "mindo", "meta", "meta_sandbox"]
# The HTTP layer: endpoints, their shapes and filters, and mindo's request handling. Nothing else
# may import DRF: a service that did could answer in HTTP terms.
HTTP_MODULE_NAMES = {"views.py", "serializers.py", "filters.py", "urls.py", "parsers.py"}
MINDO_HTTP_MODULES = {
    "authentication.py",
    "exceptions.py",
    "idempotency.py",
    "pagination.py",
    "parsers.py",
    "permissions.py",
    "query_params.py",
    "renderers.py",
    "schema.py",
    "tenancy.py",
    "throttling.py",
}
DRF_PACKAGES = ("rest_framework", "drf_spectacular", "django_filters")

WELCOME = {"name": "Juan", "code": "1234"}
BUTTON = {"button_0": "abc"}


def _send(tenant: Tenant, **fields: object) -> None:
    arguments: dict[str, object] = {
        "organization": tenant.organization,
        "created_by": None,
        "phone_number_id": tenant.number.phone_number_id,
        "template_name": tenant.template.name,
        "language": tenant.template.language,
        "recipients": [Recipient("+5491112345678", WELCOME, BUTTON)],
    }
    bulk_send_create(**{**arguments, **fields})  # type: ignore[arg-type]


def test_an_unknown_number_is_not_found(tenant: Tenant) -> None:
    with pytest.raises(NotFoundError, match="Numero de WhatsApp con ID '999' no encontrado"):
        _send(tenant, phone_number_id="999")
    assert BulkSend.objects.count() == 0


def test_another_organizations_number_is_not_found(tenant: Tenant, other_tenant: Tenant) -> None:
    with pytest.raises(NotFoundError):
        _send(tenant, phone_number_id=other_tenant.number.phone_number_id)


def test_an_unknown_template_is_not_found(tenant: Tenant) -> None:
    with pytest.raises(NotFoundError, match="Template 'nope' \\(language: es\\) no encontrado"):
        _send(tenant, template_name="nope")


def test_an_unapproved_template_is_a_field_error(tenant: Tenant) -> None:
    tenant.template.status = TemplateStatus.PAUSED
    tenant.template.save()

    with pytest.raises(InvalidFieldsError) as refused:
        _send(tenant)

    assert list(refused.value.errors) == ["template_name"]
    assert "only APPROVED templates can be sent" in refused.value.errors["template_name"][0]


def test_recipient_errors_go_by_field_and_index(tenant: Tenant) -> None:
    recipients = [
        Recipient("+5491112345678", WELCOME, BUTTON),
        Recipient("+5491187654321", {"name": "Ana"}, BUTTON),
    ]

    with pytest.raises(InvalidFieldsError) as refused:
        _send(tenant, recipients=recipients)

    assert list(refused.value.errors) == ["recipients"]
    assert list(refused.value.errors["recipients"]) == ["1"]
    assert list(refused.value.errors["recipients"]["1"]) == ["variables"]
    assert BulkSend.objects.count() == 0


def test_a_message_lookup_tells_unknown_from_foreign(tenant: Tenant, other_tenant: Tenant) -> None:
    send = factories.make_bulk_send(other_tenant.number, other_tenant.template)
    factories.make_message(send, wamid="wamid.OTHER")

    with pytest.raises(NotFoundError, match="Mensaje no encontrado"):
        message_get_by_wamid(organization=tenant.organization, wamid="wamid.NOBODY")
    with pytest.raises(AccessDeniedError, match="No tienes acceso a este mensaje"):
        message_get_by_wamid(organization=tenant.organization, wamid="wamid.OTHER")
    assert Message.objects.filter(wamid="wamid.OTHER").exists()


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (NotFoundError("Mensaje no encontrado"), 404, {"error": "Mensaje no encontrado"}),
        (AccessDeniedError("No tienes acceso"), 403, {"error": "No tienes acceso"}),
        (
            InvalidFieldsError({"recipients": {"3": {"phone": ["Bad."]}}}),
            400,
            {"recipients": {"3": {"phone": ["Bad."]}}},
        ),
    ],
)
def test_the_handler_answers_each_domain_error_with_the_contracts_body(
    db: None, error: DomainError, status: int, body: dict[str, object]
) -> None:
    request = APIRequestFactory().get("/api/v1/")

    response = exception_handler(error, {"request": request})

    assert response is not None
    assert (response.status_code, response.data) == (status, body)


def test_a_domain_error_the_handler_does_not_know_is_a_500(db: None) -> None:
    class UnmappedError(DomainError):
        pass

    request = APIRequestFactory().get("/api/v1/")

    response = exception_handler(UnmappedError("?"), {"request": request})

    assert response is not None
    assert response.status_code == 500


def _is_http_module(path: Path) -> bool:
    relative = path.relative_to(ROOT)
    if relative.parts[0] == "mindo" and len(relative.parts) == 2:
        return path.name in MINDO_HTTP_MODULES or path.name in HTTP_MODULE_NAMES
    return path.name in HTTP_MODULE_NAMES


def _drf_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        found += [f"{name} (line {node.lineno})" for name in names if name.startswith(DRF_PACKAGES)]
    return found


def test_only_the_http_layer_imports_drf() -> None:
    modules = [
        path
        for app in APPS
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts
    ]
    assert any(path.name == "creation.py" for path in modules)  # the walk found the services

    offenders = {
        str(path.relative_to(ROOT)): imports
        for path in modules
        if not _is_http_module(path) and (imports := _drf_imports(path))
    }

    assert offenders == {}
