"""`GET /api/v1/business-accounts/`: the key's company, its business accounts, their numbers with
the portfolio's 24 h quota, and their approved templates with typed variables (camelCase keys).

The body is built as plain dicts: a company with 50 numbers and 500 templates is one request, and
a serializer per template and variable would cost more than the four queries it takes:
the accounts, the numbers, the approved templates (only the columns the body shows), and one
count of each account's window.

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
from mindo.models import ApiKey
from templates_app.models import (
    MessageTemplate,
    PhoneNumber,
    TemplateStatus,
    WhatsAppBusinessAccount,
    primary_number_ids,
)

TEMPLATE_COLUMNS = (
    "business_account_id",
    "name",
    "language",
    "category",
    "components",
    "parameter_format",
    "variable_types",
)


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


def _template(template: MessageTemplate) -> dict[str, Any]:
    return {
        "name": template.name,
        "language": template.language,
        "category": template.category,
        "variables": [
            {
                "name": spec["name"],
                "type": spec["type"],
                "position": spec["position"],
                "isRequired": spec["is_required"],
                "component": spec["component"],
            }
            for spec in template.variable_specs
        ],
    }


def business_accounts_body(api_key: ApiKey, *, now: datetime) -> dict[str, Any]:
    """The endpoint's body for `api_key`: its organization's assets only."""
    organization = api_key.organization
    accounts = list(
        WhatsAppBusinessAccount.objects.filter(organization=organization).order_by("pk")
    )
    numbers = list(
        PhoneNumber.objects.filter(business_account__organization=organization).order_by("pk")
    )
    templates = (
        MessageTemplate.objects.filter(
            business_account__organization=organization, status=TemplateStatus.APPROVED
        )
        .only(*TEMPLATE_COLUMNS)
        .order_by("name", "language", "pk")
    )
    primary = primary_number_ids(numbers)
    numbers_of: dict[int, list[dict[str, Any]]] = {account.pk: [] for account in accounts}
    templates_of: dict[int, list[dict[str, Any]]] = {account.pk: [] for account in accounts}
    quotas = {account.pk: _quota(window_usage(account, now)) for account in accounts}
    for number in numbers:
        account_id = number.business_account_id
        numbers_of[account_id].append(_number(number, number.pk in primary, quotas[account_id]))
    for template in templates:
        templates_of[template.business_account_id].append(_template(template))
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
