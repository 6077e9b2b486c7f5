"""The sandbox's knobs: the command's flags, `make_app`'s argument, `POST /_sandbox/config`."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from meta_sandbox.documented_errors import DOCUMENTED

# The service's development secret, so that `./dev up` webhooks verify with nothing set.
FALLBACK_APP_SECRET = "mindo-dev-app-secret"
# Where the catalog persists by default when run as `python -m meta_sandbox`.
DEFAULT_STATE_FILE = ".run/meta_sandbox.json"
SHARES = (
    *("delivered_share", "read_share", "error_share", "http_5xx_share"),
    *("slow_share", "timeout_share", "drop_share"),
)
SECONDS = ("delivered_after", "read_after", "slow_seconds", "timeout_seconds", "webhook_delay")
SECRET_FIELDS = frozenset(("app_secret",))
# What `POST /_sandbox/config` may change while the server runs. The catalog's files and the
# webhook batching are fixed at startup.
RUNTIME_FIELDS = frozenset(
    (
        *(*SHARES, *SECONDS, "rate_per_number", "fail_suffix", "seed", "webhook_url"),
        *("app_secret", "recipient_errors", "graph_date"),
    )
)


def default_app_secret() -> str:
    """`META_APP_SECRET` of the environment, as the service reads it, else the development one."""
    return os.environ.get("META_APP_SECRET") or FALLBACK_APP_SECRET


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Every behaviour of the sandbox; the flags of `python -m meta_sandbox` have the same names.

    Shares are probabilities drawn per send from one seeded generator. The transient faults are
    drawn in this order from one number, so their shares add up: `error_share` (HTTP 500, code
    131000), `http_5xx_share` (bare 502), `timeout_share` (no answer for `timeout_seconds`),
    `drop_share` (accepted, then the connection closed unanswered). `slow_share` is drawn apart
    and delays the answer of an accepted send by `slow_seconds`.
    """

    webhook_url: str | None = None
    app_secret: str = field(default_factory=default_app_secret)
    # Accepted sends allowed in any 1-second window per phone_number_id; 0 means no limit.
    rate_per_number: int = 80
    delivered_after: float = 1.0
    delivered_share: float = 1.0
    read_after: float = 3.0
    read_share: float = 0.5
    # Every status webhook leaves this much later than its event (its timestamp stays).
    webhook_delay: float = 0.0
    # Recipients whose digits end with this fail (131026) instead of being delivered; "" = none.
    fail_suffix: str = "9999"
    # Recipients (digits, as `to` carries them) answered with one of Meta's documented errors
    # instead of being accepted: {"5491150000001": 131048}. See `documented_errors`.
    recipient_errors: Mapping[str, int] = field(default_factory=dict)
    error_share: float = 0.0
    http_5xx_share: float = 0.0
    slow_share: float = 0.0
    slow_seconds: float = 2.0
    timeout_share: float = 0.0
    timeout_seconds: float = 60.0
    drop_share: float = 0.0
    seed: int | None = None
    # The day (ISO, UTC) that decides which Graph API versions are still served (`versions`);
    # None: today. Tests pin it so that a version's end does not change their outcome.
    graph_date: str | None = None
    # The catalog: what `state_file` kept from earlier runs (None: memory only), then the
    # accounts of `catalog` (a document, for tests) and of `catalog_file` added over it; the file
    # is read again when it changes (looked at every `refresh_seconds`).
    catalog: Mapping[str, Any] | None = None
    catalog_file: str | None = None
    state_file: str | None = None
    refresh_seconds: float = 5.0
    webhook_batch_size: int = 100
    webhook_concurrency: int = 8
    webhook_attempts: int = 5
    # Statuses due within this long of each other leave in one POST.
    webhook_linger: float = 0.02

    def public(self) -> dict[str, Any]:
        """The runtime settings, as `GET /_sandbox/config` shows them: all but the app secret,
        which may be set here and is never shown (it signs the webhooks the service trusts)."""
        return {name: getattr(self, name) for name in sorted(RUNTIME_FIELDS - SECRET_FIELDS)}


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, not {value!r}.")
    return float(value)


def config_validate(config: SandboxConfig) -> SandboxConfig:
    """`config` when every value is in range, else ValueError saying which one is not."""
    for name in SHARES:
        if not 0.0 <= _number(name, getattr(config, name)) <= 1.0:
            raise ValueError(f"{name} must be between 0 and 1.")
    for name in SECONDS:
        if _number(name, getattr(config, name)) < 0:
            raise ValueError(f"{name} may not be negative.")
    rate = config.rate_per_number
    if isinstance(rate, bool) or not isinstance(rate, int) or rate < 0:
        raise ValueError("rate_per_number must be a whole number, 0 for no limit.")
    if not isinstance(config.fail_suffix, str) or not (
        config.fail_suffix == "" or config.fail_suffix.isdigit()
    ):
        raise ValueError("fail_suffix must be digits, or empty to fail no recipient.")
    _recipient_errors_check(config.recipient_errors)
    seed = config.seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be a whole number.")
    if config.webhook_url is not None and not isinstance(config.webhook_url, str):
        raise ValueError("webhook_url must be a URL.")
    if not isinstance(config.app_secret, str):
        raise ValueError("app_secret must be a string.")
    if config.graph_date is not None:
        try:
            date.fromisoformat(str(config.graph_date))
        except ValueError:
            raise ValueError("graph_date must be a date such as 2026-11-30.") from None
    if config.webhook_batch_size < 1 or config.webhook_concurrency < 1:
        raise ValueError("webhook_batch_size and webhook_concurrency must be at least 1.")
    if config.webhook_attempts < 1:
        raise ValueError("webhook_attempts must be at least 1.")
    return config


def _recipient_errors_check(recipient_errors: Any) -> None:
    if not isinstance(recipient_errors, Mapping):
        raise ValueError("recipient_errors must map recipients' digits to error codes.")
    for recipient, code in recipient_errors.items():
        if not (isinstance(recipient, str) and recipient.isdigit()):
            raise ValueError(f"recipient_errors: {recipient!r} is not a recipient's digits.")
        if isinstance(code, bool) or code not in DOCUMENTED:
            raise ValueError(f"recipient_errors: {code!r} is not an error code Meta documents.")


def config_update(config: SandboxConfig, changes: Mapping[str, Any]) -> SandboxConfig:
    """A copy of `config` with `changes` (flag names, `-` or `_`), validated as a whole."""
    normalized = {str(key).replace("-", "_"): value for key, value in changes.items()}
    unknown = sorted(set(normalized) - RUNTIME_FIELDS)
    if unknown:
        raise ValueError(f"Not a runtime setting: {', '.join(unknown)}.")
    for name in ("webhook_url", "graph_date"):
        if normalized.get(name) == "":
            normalized[name] = None
    # Accept whole floats for integers: JSON clients often send 80.0.
    for name in ("rate_per_number", "seed"):
        value = normalized.get(name)
        if isinstance(value, float) and value.is_integer():
            normalized[name] = int(value)
    return config_validate(dataclasses.replace(config, **normalized))
