"""Who exists for the sandbox: business accounts with their token, numbers and templates.

The catalog is filled as Meta's is: through the Graph API (`registry`), or from a document, the
form `--catalog FILE` and the state file hold:

    {"accounts": [{"waba_id": "1022...", "access_token": "...", "messaging_limit"?: "TIER_2K",
                   "phone_numbers": [{"phone_number_id", "display_phone_number", "verified_name",
                                      "quality_rating", "messaging_limit_tier"}],
                   "templates": [{"id", "name", "language", "category", "status",
                                  "parameter_format", "components"}]}]}

`messaging_limit` is the business portfolio's messaging limit, shared by its numbers since
October 2025; without one the portfolio has the highest tier of its numbers, as Meta set it when
limits moved from numbers to portfolios.

A template's rules (`templates.TemplateRules`) are worked out when it enters the catalog, so
checking a send costs dictionary look-ups. Only the event loop's thread changes a catalog.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from meta_sandbox.templates import (
    CATEGORIES,
    LANGUAGE,
    NAME,
    TemplateRuleError,
    TemplateRules,
    parameter_format_guess,
    template_rules,
)

APPROVED = "APPROVED"
TEMPLATE_STATUSES = (APPROVED, "PENDING", "REJECTED", "PAUSED", "DISABLED")


@dataclass(frozen=True, slots=True)
class CatalogNumber:
    phone_number_id: str
    waba_id: str
    display_phone_number: str
    verified_name: str = ""
    quality_rating: str = "GREEN"
    messaging_limit_tier: str = "TIER_1000"

    def listing(self, *, portfolio_limit: str | None) -> dict[str, Any]:
        """The number as Meta lists it: with the portfolio's messaging limit when `portfolio_limit`
        is given (versions since v24.0), else with the number's own tier, as older ones did."""
        listing: dict[str, Any] = {
            "id": self.phone_number_id,
            "display_phone_number": self.display_phone_number,
            "verified_name": self.verified_name,
            "quality_rating": self.quality_rating,
            "throughput": {"level": "STANDARD"},
        }
        if portfolio_limit is None:
            listing["messaging_limit_tier"] = self.messaging_limit_tier
        else:
            listing["whatsapp_business_manager_messaging_limit"] = portfolio_limit
        return listing

    def document(self) -> dict[str, Any]:
        fields = asdict(self)
        del fields["waba_id"]
        return fields


@dataclass(frozen=True, slots=True)
class CatalogTemplate:
    id: str
    waba_id: str
    name: str
    language: str
    category: str
    status: str
    parameter_format: str
    components: list[dict[str, Any]]
    rules: TemplateRules

    @classmethod
    def build(
        cls,
        *,
        id: str,
        waba_id: str,
        name: str,
        language: str,
        category: str,
        components: Any,
        parameter_format: str,
        status: str = APPROVED,
    ) -> CatalogTemplate:
        """A template that keeps Meta's rules; TemplateRuleError says which one it breaks."""
        if not NAME.fullmatch(name):
            raise TemplateRuleError(
                "name: lowercase letters, digits and underscores, at most 512 characters."
            )
        if not LANGUAGE.fullmatch(language):
            raise TemplateRuleError(f"language: {language!r} is not a language code such as es.")
        if category.upper() not in CATEGORIES:
            raise TemplateRuleError(f"category must be one of {', '.join(CATEGORIES)}.")
        if status.upper() not in TEMPLATE_STATUSES:
            raise TemplateRuleError(f"status must be one of {', '.join(TEMPLATE_STATUSES)}.")
        rules = template_rules(components, parameter_format.upper())
        return cls(
            id=id,
            waba_id=waba_id,
            name=name,
            language=language,
            category=category.upper(),
            status=status.upper(),
            parameter_format=rules.parameter_format,
            components=components,
            rules=rules,
        )

    @property
    def is_approved(self) -> bool:
        return self.status == APPROVED

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


def _tier_size(tier: str) -> float:
    """How many recipients a tier allows, to find the highest: unknown spellings count least."""
    if tier == "TIER_UNLIMITED":
        return math.inf
    match = re.fullmatch(r"TIER_(\d+)(K?)", tier)
    if match is None:
        return -1.0
    return int(match.group(1)) * (1000 if match.group(2) else 1)


@dataclass(slots=True)
class CatalogAccount:
    waba_id: str
    access_token: str
    # The portfolio's messaging limit; "" until one is set (see `portfolio_limit`).
    messaging_limit: str = ""
    numbers: dict[str, CatalogNumber] = field(default_factory=dict)
    # By (name, language), as Meta keys a template.
    templates: dict[tuple[str, str], CatalogTemplate] = field(default_factory=dict)

    @property
    def portfolio_limit(self) -> str:
        """The portfolio's messaging limit: the one set, else its numbers' highest tier (Meta's
        rule when it moved limits to portfolios), else the 250 of a new portfolio."""
        if self.messaging_limit:
            return self.messaging_limit
        tiers = [number.messaging_limit_tier for number in self.numbers.values()]
        return max(tiers, key=_tier_size, default="TIER_250")

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {"waba_id": self.waba_id, "access_token": self.access_token}
        if self.messaging_limit:
            document["messaging_limit"] = self.messaging_limit
        document["phone_numbers"] = [number.document() for number in self.numbers.values()]
        document["templates"] = [template.listing() for template in self.templates.values()]
        return document


@dataclass(slots=True)
class Catalog:
    accounts: dict[str, CatalogAccount] = field(default_factory=dict)
    numbers: dict[str, CatalogNumber] = field(default_factory=dict)
    templates_by_id: dict[str, CatalogTemplate] = field(default_factory=dict)
    # An account without a token cannot be called: Meta would refuse every request.
    wabas_by_token: dict[str, set[str]] = field(default_factory=dict)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # --- changes -------------------------------------------------------------------------------

    def account_put(
        self, waba_id: str, access_token: str, messaging_limit: str | None = None
    ) -> CatalogAccount:
        """Create the account, or give it a new token (and portfolio limit, when given); its
        numbers and templates stay."""
        account = self.accounts.get(waba_id)
        if account is None:
            account = self.accounts[waba_id] = CatalogAccount(waba_id, access_token)
        else:
            self.wabas_by_token.get(account.access_token, set()).discard(waba_id)
            account.access_token = access_token
        if messaging_limit is not None:
            account.messaging_limit = messaging_limit
        if access_token:
            self.wabas_by_token.setdefault(access_token, set()).add(waba_id)
        return account

    def number_put(self, number: CatalogNumber) -> None:
        """Add or update a number; ValueError when it belongs to another account, as Meta's ids
        are unique."""
        existing = self.numbers.get(number.phone_number_id)
        if existing is not None and existing.waba_id != number.waba_id:
            raise ValueError(
                f"Phone number {number.phone_number_id} belongs to another business account."
            )
        self.accounts[number.waba_id].numbers[number.phone_number_id] = number
        self.numbers[number.phone_number_id] = number

    def template_put(self, template: CatalogTemplate) -> None:
        """Add a template, or replace the one of the same id or (name, language)."""
        account = self.accounts[template.waba_id]
        replaced = account.templates.get((template.name, template.language))
        if replaced is not None and replaced.id != template.id:
            self.templates_by_id.pop(replaced.id, None)
        account.templates[(template.name, template.language)] = template
        self.templates_by_id[template.id] = template

    def new_template_id(self) -> str:
        """A template id of Meta's length that no template of this catalog has."""
        while True:
            candidate = f"{10**15 + next(self._ids)}"
            if candidate not in self.templates_by_id:
                return candidate

    def merge(self, document: Mapping[str, Any]) -> None:
        """Add the accounts of a catalog document; ValueError names what is wrong."""
        accounts = document.get("accounts") if isinstance(document, Mapping) else None
        if not isinstance(accounts, list):
            raise ValueError('A catalog is {"accounts": [...]}.')
        for position, raw in enumerate(accounts):
            try:
                self._account_merge(raw, f"accounts[{position}]")
            except TemplateRuleError as error:
                raise ValueError(f"accounts[{position}]: {error}") from None

    # --- reading -------------------------------------------------------------------------------

    def template(self, waba_id: str, name: str, language: str) -> CatalogTemplate | None:
        account = self.accounts.get(waba_id)
        return None if account is None else account.templates.get((name, language))

    def token_knows(self, token: str) -> bool:
        return bool(self.wabas_by_token.get(token))

    def token_owns(self, token: str, waba_id: str) -> bool:
        return waba_id in self.wabas_by_token.get(token, ())

    def summary(self) -> dict[str, int]:
        return {
            "accounts": len(self.accounts),
            "phone_numbers": len(self.numbers),
            "templates": len(self.templates_by_id),
        }

    def document(self) -> dict[str, Any]:
        return {"accounts": [account.document() for account in self.accounts.values()]}

    # --- documents -----------------------------------------------------------------------------

    def _account_merge(self, raw: Any, where: str) -> None:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be an object.")
        waba_id = _text(raw, "waba_id", where)
        limit = raw.get("messaging_limit")
        if limit is not None and not isinstance(limit, str):
            raise ValueError(f"{where}: 'messaging_limit' is a tier such as TIER_2K.")
        self.account_put(waba_id, _text(raw, "access_token", where, ""), limit)
        for number in _objects(raw, "phone_numbers", where):
            self.number_put(
                CatalogNumber(
                    phone_number_id=_text(number, "phone_number_id", f"{where}.phone_numbers"),
                    waba_id=waba_id,
                    display_phone_number=_text(number, "display_phone_number", where, ""),
                    verified_name=_text(number, "verified_name", where, ""),
                    quality_rating=_text(number, "quality_rating", where, "GREEN"),
                    messaging_limit_tier=_text(number, "messaging_limit_tier", where, "TIER_1000"),
                )
            )
        for index, template in enumerate(_objects(raw, "templates", where)):
            components = template.get("components") or []
            parameter_format = template.get("parameter_format") or parameter_format_guess(
                components
            )
            self.template_put(
                CatalogTemplate.build(
                    id=_text(template, "id", where, "") or self.new_template_id(),
                    waba_id=waba_id,
                    name=_text(template, "name", f"{where}.templates[{index}]"),
                    language=_text(template, "language", where, "es"),
                    category=_text(template, "category", where, "MARKETING"),
                    status=_text(template, "status", where, APPROVED),
                    components=components,
                    parameter_format=str(parameter_format),
                )
            )


def _text(raw: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    value = raw.get(key, default)
    if value is None or isinstance(value, dict | list):
        raise ValueError(f"{where}: '{key}' is required.")
    return str(value)


def _objects(raw: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    items = raw.get(key) or []
    if not isinstance(items, list) or not all(isinstance(item, Mapping) for item in items):
        raise ValueError(f"{where}.{key} must be a list of objects.")
    return items
