"""A template's send shape (`meta.template_message.TemplateShape`), built once per saved version.

The drainer asks for it once per batch; a worker uses a handful of templates, so a small dict
keyed by row and last change is all the caching needed: a saved edit makes a new entry.
"""

from __future__ import annotations

from typing import Any

from meta.template_message import TemplateShape, template_shape_build
from templates_app.models import MessageTemplate

SHAPE_CACHE_SIZE = 256

_shapes: dict[tuple[Any, ...], TemplateShape] = {}


def _build(template: MessageTemplate) -> TemplateShape:
    return template_shape_build(
        name=template.name,
        language=template.language,
        components=template.components,
        parameter_format=template.parameter_format,
        variable_types=template.variable_types,
        currency_code=template.currency_code,
    )


def template_shape(template: MessageTemplate) -> TemplateShape:
    """The template's shape, cached by row and last change."""
    if template.pk is None:
        return _build(template)
    key = (template.pk, template.updated_at, template.name, template.language)
    shape = _shapes.get(key)
    if shape is None:
        if len(_shapes) >= SHAPE_CACHE_SIZE:
            _shapes.clear()  # no LRU bookkeeping for a handful of templates
        shape = _shapes[key] = _build(template)
    return shape
