"""Reading a template's components and Meta's limits: plain functions, no database."""

from __future__ import annotations

from typing import Any

import pytest

from meta.components import (
    BODY,
    HEADER,
    header_format,
    media_header_format,
    placeholders,
    template_buttons,
    template_parameter_format,
    template_variables,
)
from meta.limits import known_tier, tier_for_limit, tier_limit

TEXT_HEADER: list[dict[str, Any]] = [
    {"type": "HEADER", "format": "TEXT", "text": "Pedido {{order}}"},
    {"type": "BODY", "text": "Hola {{name}}, tu pedido {{order}} llega el {{date}}."},
]


def test_variables_come_in_the_order_meta_fills_them_header_first_each_name_once() -> None:
    assert template_variables(TEXT_HEADER) == ["order", "name", "date"]
    assert placeholders(TEXT_HEADER, HEADER) == ("order",)
    assert placeholders(TEXT_HEADER, BODY) == ("name", "order", "date")


def test_a_header_without_a_format_is_a_text_header() -> None:
    components = [{"type": "header", "text": "Hola {{1}}"}, {"type": "body", "text": "{{2}}"}]

    assert header_format(components) == "TEXT"
    assert media_header_format(components) is None
    assert template_variables(components) == ["1", "2"]
    assert template_parameter_format(components) == "POSITIONAL"


@pytest.mark.parametrize("media", ["IMAGE", "VIDEO", "DOCUMENT", "LOCATION"])
def test_a_media_header_takes_no_text_variable_and_says_which_media(media: str) -> None:
    components = [
        {"type": "HEADER", "format": media.lower(), "text": "{{ignored}}"},
        {"type": "BODY", "text": "Hola {{name}}"},
    ]

    assert media_header_format(components) == media
    assert placeholders(components, HEADER) == ()
    # A media header is one variable of its format, holding the media's URL; a location none.
    media_variables = [] if media == "LOCATION" else [f"header_{media.lower()}"]
    assert template_variables(components) == [*media_variables, "name"]
    assert template_parameter_format(components) == "NAMED"


def test_a_template_without_a_header_has_no_header_format() -> None:
    assert header_format([{"type": "BODY", "text": "Hola"}]) is None


def test_a_url_button_takes_a_variable_only_when_its_url_has_a_placeholder() -> None:
    buttons = template_buttons(
        [
            {
                "type": "BUTTONS",
                "buttons": [
                    {"type": "URL", "url": "https://x.example/static"},
                    {"type": "url", "url": "https://x.example/{{1}}"},
                    {"type": "QUICK_REPLY", "text": "Si"},
                ],
            }
        ]
    )

    assert [(b["type"], b["takes_variable"], b["requires_variable"]) for b in buttons] == [
        ("URL", False, False),
        ("URL", True, True),
        ("QUICK_REPLY", True, False),
    ]


@pytest.mark.parametrize(
    ("tier", "read"),
    [
        ("TIER_1K", "TIER_1K"),
        ("TIER_1000", "TIER_1000"),
        ("TIER_UNLIMITED", "TIER_UNLIMITED"),
        ("TIER_NOT_SET", None),
        ("TIER_10K\n", None),
        (10000, None),
        (None, None),
    ],
)
def test_known_tier_passes_only_tiers_the_quota_can_read(tier: object, read: str | None) -> None:
    assert known_tier(tier) == read


def test_a_limit_and_its_tier_name_read_back_the_same() -> None:
    for limit in (50, 250, 1000, 2000, 10_000, 100_000):
        tier = tier_for_limit(limit)
        assert tier is not None
        assert tier_limit(tier) == limit
    assert tier_for_limit(-1) is None
