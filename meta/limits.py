"""Meta's limits on a business: how many unique recipients a portfolio may message in 24 h (its
messaging-limit tier) and how many messages a second a number may send (its throughput)."""

from __future__ import annotations

import math
import re

# Meta spells tiers `TIER_250`, `TIER_1K`, `TIER_10K`, `TIER_100K`, `TIER_UNLIMITED`; the
# contract's examples spell the 1,000 tier `TIER_1000`. Both spellings are read the same way.
# At most seven digits: Meta's largest tier is 100K, and a tier name must fit its 32-character
# column. Matched whole (`fullmatch`): a trailing newline is not part of a tier.
TIER_PATTERN = re.compile(r"TIER_(0|[1-9][0-9]{0,6})(K?)")
TIER_UNLIMITED = "TIER_UNLIMITED"
KNOWN_TIERS = [
    "TIER_50",
    "TIER_250",
    "TIER_1000",
    "TIER_1K",
    "TIER_2K",
    "TIER_10K",
    "TIER_100K",
    TIER_UNLIMITED,
]


def tier_limit(tier: str) -> int | None:
    """Unique recipients per moving 24 h window for `tier`; None when unlimited.

    An unknown spelling raises ValueError: guessing a quota would risk the number's quality.
    """
    if tier == TIER_UNLIMITED:
        return None
    match = TIER_PATTERN.fullmatch(tier)
    if match is None:
        raise ValueError(f"Unknown messaging limit tier {tier!r}")
    count, thousands = match.groups()
    return int(count) * (1000 if thousands else 1)


def known_tier(tier: object) -> str | None:
    """`tier` when it is a tier name `tier_limit` reads; None for anything else (Meta's
    TIER_NOT_SET, an unknown spelling, not text), which should change nothing."""
    if not isinstance(tier, str):
        return None
    try:
        tier_limit(tier)
    except ValueError:
        return None
    return tier


def highest_tier(tiers: list[str]) -> str | None:
    """The tier of `tiers` that allows the most recipients (unlimited above all); None when
    none is a tier we read. Meta gave each portfolio its numbers' highest tier when it moved
    messaging limits from numbers to portfolios (October 2025)."""
    known = [tier for tier in tiers if known_tier(tier) is not None]
    if not known:
        return None
    return max(known, key=lambda tier: math.inf if (n := tier_limit(tier)) is None else n)


def tier_for_limit(limit: int) -> str | None:
    """The tier name Meta uses for a daily limit of `limit` unique recipients.

    A negative count is no limit we can read, so None: the caller keeps the tier it has. Meta
    writes an unlimited portfolio as TIER_UNLIMITED; reading -1 (or any negative) as unlimited
    would let a bad or forged value lift the quota altogether.
    """
    if limit < 0:
        return None
    return f"TIER_{limit // 1000}K" if limit >= 1000 and limit % 1000 == 0 else f"TIER_{limit}"


# Meta reports a number's throughput as a level, not a rate: STANDARD numbers may send 80
# messages a second, HIGH ones 1,000, which is also the most any number may send.
STANDARD_THROUGHPUT = 80
HIGH_THROUGHPUT = 1000
MAX_THROUGHPUT = HIGH_THROUGHPUT
