"""Who exists for the sandbox: business accounts with their token, numbers and templates.

The document form is what `--catalog FILE` holds:

    {"accounts": [{"waba_id": "1022...", "access_token": "...",
                   "phone_numbers": [{"phone_number_id", "display_phone_number", "verified_name",
                                      "quality_rating", "messaging_limit_tier"}],
                   "templates": [{"id", "name", "language", "category", "status",
                                  "components"}]}]}

A template's expectations (its header and body variables, its buttons) are worked out once when
the catalog is built, so checking a send costs dictionary look-ups.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from meta.components import (
    NAMED,
    PLACEHOLDER,
    TemplateButton,
    template_buttons,
    template_parameter_format,
)

APPROVED = "APPROVED"
TEXT_HEADER = "TEXT"


def _component_variables(components: list[dict[str, Any]], kind: str) -> tuple[str, ...]:
    names: list[str] = []
    for component in components:
        if str(component.get("type", "")).upper() != kind:
            continue
        if kind == "HEADER" and str(component.get("format", TEXT_HEADER)).upper() != TEXT_HEADER:
            continue
        for name in PLACEHOLDER.findall(str(component.get("text", ""))):
            if name not in names:
                names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class CatalogNumber:
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    verified_name: str = ""
    quality_rating: str = "GREEN"
    messaging_limit_tier: str = "TIER_1000"

    def listing(self) -> dict[str, Any]:
        return {
            "id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "messaging_limit_tier": self.messaging_limit_tier,
            "throughput": {"level": "STANDARD"},
        }


@dataclass(frozen=True, slots=True)
class CatalogTemplate:
    id: str
    name: str
    language: str
    category: str
    status: str
    components: list[dict[str, Any]]
    parameter_format: str
    header_variables: tuple[str, ...]
    body_variables: tuple[str, ...]
    buttons: dict[int, TemplateButton]

    @classmethod
    def build(
        cls,
        *,
        id: str,
        name: str,
        language: str,
        category: str,
        status: str,
        components: list[dict[str, Any]],
        parameter_format: str | None = None,
    ) -> CatalogTemplate:
        return cls(
            id=id,
            name=name,
            language=language,
            category=category.upper(),
            status=status.upper(),
            components=components,
            parameter_format=parameter_format or template_parameter_format(components),
            header_variables=_component_variables(components, "HEADER"),
            body_variables=_component_variables(components, "BODY"),
            buttons={button["index"]: button for button in template_buttons(components)},
        )

    @property
    def is_named(self) -> bool:
        return self.parameter_format == NAMED

    @property
    def is_approved(self) -> bool:
        return self.status == APPROVED

    @property
    def has_media_header(self) -> bool:
        """An image, video, document or location header, whose parameter is not checked."""
        return any(
            str(c.get("type", "")).upper() == "HEADER"
            and str(c.get("format", TEXT_HEADER)).upper() != TEXT_HEADER
            for c in self.components
        )

    def listing(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "language": self.language,
            "status": self.status,
            "category": self.category,
            "parameter_format": self.parameter_format,
            "components": self.components,
        }


@dataclass(frozen=True, slots=True)
class CatalogAccount:
    waba_id: str
    access_token: str
    numbers: tuple[CatalogNumber, ...] = ()
    templates: tuple[CatalogTemplate, ...] = ()


@dataclass(slots=True)
class Catalog:
    """An immutable snapshot; a refresh builds a new one and swaps the reference."""

    accounts: dict[str, CatalogAccount] = field(default_factory=dict)
    numbers: dict[str, CatalogNumber] = field(default_factory=dict)
    templates: dict[tuple[str, str, str], CatalogTemplate] = field(default_factory=dict)
    wabas_by_token: dict[str, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, accounts: Iterable[CatalogAccount]) -> Catalog:
        catalog = cls()
        tokens: dict[str, set[str]] = {}
        for account in accounts:
            catalog.accounts[account.waba_id] = account
            # An account without a token cannot be called: Meta would refuse every request.
            if account.access_token:
                tokens.setdefault(account.access_token, set()).add(account.waba_id)
            for number in account.numbers:
                catalog.numbers[number.phone_number_id] = number
            for template in account.templates:
                catalog.templates[(account.waba_id, template.name, template.language)] = template
        catalog.wabas_by_token = {token: frozenset(ids) for token, ids in tokens.items()}
        return catalog

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> Catalog:
        """The catalog a `--catalog` document describes; ValueError names what is wrong."""
        accounts = document.get("accounts") if isinstance(document, Mapping) else None
        if not isinstance(accounts, list):
            raise ValueError('A catalog is {"accounts": [...]}.')
        return cls.of(_account_read(raw, position) for position, raw in enumerate(accounts))

    def token_knows(self, token: str) -> bool:
        return token in self.wabas_by_token

    def token_owns(self, token: str, waba_id: str) -> bool:
        return waba_id in self.wabas_by_token.get(token, frozenset())

    def summary(self) -> dict[str, int]:
        return {
            "accounts": len(self.accounts),
            "phone_numbers": len(self.numbers),
            "templates": len(self.templates),
        }


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None or isinstance(value, dict | list):
        raise ValueError(f"{where}: '{key}' is required.")
    return str(value)


def _account_read(raw: Any, position: int) -> CatalogAccount:
    where = f"accounts[{position}]"
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where} must be an object.")
    waba_id = _text(raw, "waba_id", where)
    numbers = tuple(
        CatalogNumber(
            phone_number_id=_text(number, "phone_number_id", f"{where}.phone_numbers"),
            waba_id=waba_id,
            display_phone_number=_text(number, "display_phone_number", where, ""),
            verified_name=_text(number, "verified_name", where, ""),
            quality_rating=_text(number, "quality_rating", where, "GREEN"),
            messaging_limit_tier=_text(number, "messaging_limit_tier", where, "TIER_1000"),
        )
        for number in raw.get("phone_numbers") or []
    )
    templates = []
    for index, template in enumerate(raw.get("templates") or []):
        components = template.get("components") or []
        if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
            raise ValueError(f"{where}.templates[{index}].components must be a list of objects.")
        templates.append(
            CatalogTemplate.build(
                id=_text(template, "id", where, f"{waba_id}{index:04d}"),
                name=_text(template, "name", f"{where}.templates[{index}]"),
                language=_text(template, "language", where, "es"),
                category=_text(template, "category", where, "MARKETING"),
                status=_text(template, "status", where, APPROVED),
                components=components,
                parameter_format=template.get("parameter_format"),
            )
        )
    return CatalogAccount(
        waba_id=waba_id,
        access_token=_text(raw, "access_token", where, ""),
        numbers=numbers,
        templates=tuple(templates),
    )
