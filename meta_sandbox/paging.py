"""Graph API cursor paging: `?limit=N&after=CURSOR`, cursors opaque to the client."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from aiohttp import web

from meta_sandbox import errors

DEFAULT_LIMIT = 25
MAX_LIMIT = 1000


def _cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"position:{position}".encode()).decode()


def _position(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise errors.invalid_parameter("The after cursor is not valid.") from None
    prefix, _, number = text.partition(":")
    if prefix != "position" or not number.isdigit():
        raise errors.invalid_parameter("The after cursor is not valid.")
    return int(number)


def page_of(request: web.Request, items: list[dict[str, Any]]) -> dict[str, Any]:
    """`{"data": [...], "paging": {"cursors": {"before", "after"}, "next"?}}`, as Meta pages."""
    raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
    if not raw_limit.isdigit() or int(raw_limit) < 1:
        raise errors.invalid_parameter("limit must be a positive number.")
    limit = min(int(raw_limit), MAX_LIMIT)
    after = request.query.get("after")
    start = _position(after) + 1 if after else 0
    data = items[start : start + limit]
    page: dict[str, Any] = {"data": data}
    if data:
        last = start + len(data) - 1
        page["paging"] = {"cursors": {"before": _cursor(start), "after": _cursor(last)}}
        if last + 1 < len(items):
            page["paging"]["next"] = str(
                request.url.update_query({"limit": str(limit), "after": _cursor(last)})
            )
    return page
