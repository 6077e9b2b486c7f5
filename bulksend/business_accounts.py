"""`GET /api/v1/business-accounts/`: the key's company, its business accounts, their numbers with
the portfolio's 24 h quota, and their approved templates with typed variables (camelCase keys).

The body is built as plain dicts from rows, not models, and rendered with orjson: a company with
50 numbers and 500 templates is one request, and a serializer (or a model instance) per template
and variable would cost more than the queries it takes: the accounts, the numbers, the approved
templates' ids, names and last change, and one count of each account's window. A template's
variables list is read from its components once per saved version and kept by the process
(`_variables_of`), so the components of 500 templates are neither sent by PostgreSQL nor parsed
on every request; an edit changes `updated_at`, which makes a new entry.

Decisions the contract leaves open:
- `quota` is the portfolio's: every number of an account shows the same figures, those of the
  window `quota_info` counts (a recipient holds a place when sent to in the last 24 h or waiting
  in an active send). `uniqueNumbersSent24h` counts those places, `remaining` is
  `dailyLimit - uniqueNumbersSent24h` (never below 0), `usagePercentage` their ratio in percent
  (two decimals), `canSend` whether a new recipient fits. On an unlimited tier `dailyLimit`,
  `remaining` and `usagePercentage` are null and `canSend` is true.
- `messagingLimitTier` is the number's own, as the send endpoints show it.
- `isPrimary`: the number an operator marked, else the account's oldest number.
- `businessAccountId` is Mindo's id of the account, `businessName` its name (its WABA id when it
  has none); accounts, numbers and templates come in a stable order (by id; templates by name
  and language).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bulksend.quota import WindowUsage, window_usage
from meta.components import template_variable_specs
from mindo.models import ApiKey
from templates_app.models import (
    MessageTemplate,
    PhoneNumber,
    TemplateStatus,
    WhatsAppBusinessAccount,
    primary_number_ids,
)

VARIABLES_CACHE_SIZE = 8192

# (template id, updated_at) -> its `variables` list as the body shows it.
_variables: dict[tuple[int, datetime], list[dict[str, Any]]] = {}


def _quota(usage: WindowUsage) -> dict[str, Any]:
    return {
        "dailyLimit": usage.limit,
        "uniqueNumbersSent24h": usage.held,
        "remaining": usage.remaining,
        "usagePercentage": usage.usage_percentage,
        "canSend": usage.can_send,
    }


def _number(number: PhoneNumber, primary: bool, quota: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": number.pk,
        "phoneNumberId": number.phone_number_id,
        "displayPhoneNumber": number.display_phone_number,
        "verifiedName": number.verified_name,
        "isPrimary": primary,
        "messagingLimitTier": number.messaging_limit_tier,
        "quota": quota,
    }


def _variables_of(versions: list[tuple[int, datetime]]) -> dict[int, list[dict[str, Any]]]:
    """Each template's variables by id, given (id, updated_at): from the process's cache, the
    rest read from their components in one query (and cached)."""
    found: dict[int, list[dict[str, Any]]] = {}
    missing = []
    for version in versions:
        cached = _variables.get(version)
        if cached is None:
            missing.append(version[0])
        else:
            found[version[0]] = cached
    if not missing:
        return found
    if len(_variables) + len(missing) > VARIABLES_CACHE_SIZE:
        _variables.clear()  # no LRU bookkeeping: a full cache is rebuilt in one query
    rows = MessageTemplate.objects.filter(pk__in=missing).values_list(
        "pk", "updated_at", "components", "parameter_format", "variable_types"
    )
    for pk, updated_at, components, parameter_format, variable_types in rows:
        specs = template_variable_specs(
            components, parameter_format=parameter_format, variable_types=variable_types
        )
        found[pk] = _variables[(pk, updated_at)] = [
            {
                "name": spec["name"],
                "type": spec["type"],
                "position": spec["position"],
                "isRequired": spec["is_required"],
                "component": spec["component"],
            }
            for spec in specs
        ]
    return found


def business_accounts_body(api_key: ApiKey, *, now: datetime) -> dict[str, Any]:
    """The endpoint's body for `api_key`: its organization's assets only."""
    organization = api_key.organization
    accounts = list(
        WhatsAppBusinessAccount.objects.filter(organization=organization).order_by("pk")
    )
    numbers = list(
        PhoneNumber.objects.filter(business_account__organization=organization).order_by("pk")
    )
    templates = list(
        MessageTemplate.objects.filter(
            business_account__organization=organization, status=TemplateStatus.APPROVED
        )
        .order_by("name", "language", "pk")
        .values_list("pk", "updated_at", "business_account_id", "name", "language", "category")
    )
    variables = _variables_of([(pk, updated_at) for pk, updated_at, *_ in templates])
    primary = primary_number_ids(numbers)
    numbers_of: dict[int, list[dict[str, Any]]] = {account.pk: [] for account in accounts}
    templates_of: dict[int, list[dict[str, Any]]] = {account.pk: [] for account in accounts}
    quotas = {account.pk: _quota(window_usage(account, now)) for account in accounts}
    for number in numbers:
        account_id = number.business_account_id
        numbers_of[account_id].append(_number(number, number.pk in primary, quotas[account_id]))
    for pk, _, account_id, name, language, category in templates:
        if pk not in variables:  # deleted since it was listed
            continue
        templates_of[account_id].append(
            {
                "name": name,
                "language": language,
                "category": category,
                "variables": variables[pk],
            }
        )
    return {
        "companyName": organization.name,
        "apiKeyName": api_key.name,
        "businessAccounts": [
            {
                "businessAccountId": account.pk,
                "businessName": str(account),
                "phoneNumbers": numbers_of[account.pk],
                "templates": templates_of[account.pk],
            }
            for account in accounts
        ],
    }
