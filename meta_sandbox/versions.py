"""Which Graph API versions the sandbox serves, and which fields each one answers.

Meta releases a version two or three times a year and serves each one for about two years after
the next one comes out. The dates below are those of Meta's changelog
(developers.facebook.com/docs/graph-api/changelog/versions, as of November 2026); a version
whose "available until" has passed is refused with Meta's "deprecated version" error (2635), a
version Meta never released with its "unknown path" error (2500).

Meta's own documentation says an expired version is answered as the oldest one still served;
the sandbox refuses it instead, so that a service pinned to an old version finds out here and
not from a changed answer in production.

Fields that changed with a version:
- `whatsapp_business_manager_messaging_limit` (the business portfolio's messaging limit) came
  with the portfolio-level limits of October 2025, with v24.0, the first version whose webhooks
  carry `max_daily_conversations_per_business`; the per-number `messaging_limit_tier` it
  deprecates is answered by the versions before it only.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime


@dataclass(frozen=True, slots=True)
class GraphVersion:
    name: str
    released: date
    # None: Meta has not set an end yet (the next version is not out, or not for long).
    available_until: date | None


VERSIONS = (
    GraphVersion("v17.0", date(2023, 5, 23), date(2025, 9, 12)),
    GraphVersion("v18.0", date(2023, 9, 12), date(2026, 1, 26)),
    GraphVersion("v19.0", date(2024, 1, 23), date(2026, 5, 21)),
    GraphVersion("v20.0", date(2024, 5, 21), date(2026, 9, 24)),
    GraphVersion("v21.0", date(2024, 10, 2), date(2027, 1, 21)),
    GraphVersion("v22.0", date(2025, 1, 21), date(2027, 5, 20)),
    GraphVersion("v23.0", date(2025, 5, 29), date(2027, 10, 8)),
    GraphVersion("v24.0", date(2025, 10, 8), date(2028, 2, 18)),
    GraphVersion("v25.0", date(2026, 2, 18), date(2028, 7, 29)),
    GraphVersion("v26.0", date(2026, 7, 29), None),
    GraphVersion("v27.0", date(2026, 11, 4), None),
)
BY_NAME = {version.name: version for version in VERSIONS}
# The first version that answers the portfolio's messaging limit instead of the number's.
PORTFOLIO_LIMIT_SINCE = (24, 0)

_VERSION = re.compile(r"v(\d+)(?:\.(\d+))?")


def version_number(name: str) -> tuple[int, int]:
    """(major, minor) of `v24.0`; `v24` is v24.0. ValueError for anything else."""
    match = _VERSION.fullmatch(name)
    if match is None:
        raise ValueError(f"{name!r} is not a Graph API version.")
    return int(match.group(1)), int(match.group(2) or 0)


def today(pinned: str | None) -> date:
    """The sandbox's date for version checks: `pinned` (ISO, from the config), else UTC today."""
    return date.fromisoformat(pinned) if pinned else datetime.now(UTC).date()


def latest_served(on: date) -> str:
    """The newest version released by `on`."""
    return max((v for v in VERSIONS if v.released <= on), key=lambda v: v.released).name


@dataclass(frozen=True, slots=True)
class VersionRefusal:
    """Why a version is not served: `expired` (Meta's 2635) or never released (2500)."""

    expired: bool
    latest: str


@functools.lru_cache(maxsize=256)  # on every Graph request: parse each (version, day) once
def version_refusal(name: str, on: date) -> VersionRefusal | None:
    """None when Meta serves `name` on `on`; else why not. `v24` is read as `v24.0`."""
    try:
        major, minor = version_number(name)
    except ValueError:
        return VersionRefusal(expired=False, latest=latest_served(on))
    version = BY_NAME.get(f"v{major}.{minor}")
    latest = latest_served(on)
    if version is None or version.released > on:
        # Older than the table: long expired. Newer, or a minor Meta never used: unknown.
        oldest = version_number(VERSIONS[0].name)
        return VersionRefusal(expired=(major, minor) < oldest, latest=latest)
    if version.available_until is not None and version.available_until <= on:
        return VersionRefusal(expired=True, latest=latest)
    return None


def answers_portfolio_limit(name: str) -> bool:
    """Whether a phone number read with version `name` has the portfolio's messaging limit
    (`whatsapp_business_manager_messaging_limit`) rather than the number's own tier."""
    return version_number(name) >= PORTFOLIO_LIMIT_SINCE
