"""Reading a template send and checking its parameters against the template, as Meta does.

Checked: the text header's and the body's parameter counts (a named template also needs each
parameter's `parameter_name`, and the same names as the template), and the buttons: each button
whose template takes a variable it cannot do without (a URL with a placeholder, a copy code) must
receive it, with the parameter type of its kind. Media headers are not checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from messaging.sandbox import errors
from messaging.sandbox.catalog import CatalogTemplate

# Meta's limit for biz_opaque_callback_data.
MAX_CALLBACK_DATA = 512
# A button's `sub_type` and the parameter type its variable takes.
BUTTON_KINDS = {"URL": ("url", "text"), "QUICK_REPLY": ("quick_reply", "payload")}
BUTTON_KINDS["COPY_CODE"] = ("copy_code", "coupon_code")
TEXT_LIKE = {"text", "currency", "date_time"}


@dataclass(frozen=True, slots=True)
class TemplateSend:
    to: str
    wa_id: str
    name: str
    language: str
    components: list[dict[str, Any]]
    callback_data: str | None


def send_read(document: Any) -> TemplateSend:
    """The send a request body describes, or Meta's 100 for a body of the wrong shape."""
    if not isinstance(document, dict):
        raise errors.invalid_parameter("The request body must be a JSON object.")
    if document.get("messaging_product") != "whatsapp":
        raise errors.invalid_parameter("The parameter messaging_product is required.")
    to = document.get("to")
    if not isinstance(to, str):
        raise errors.invalid_parameter("The parameter to is required.")
    wa_id = "".join(ch for ch in to if ch.isdigit())
    if not wa_id:
        raise errors.invalid_parameter("The parameter to is required.")
    if document.get("type", "text") != "template":
        raise errors.invalid_parameter("The sandbox only sends messages of type template.")
    template = document.get("template")
    if not isinstance(template, dict):
        raise errors.invalid_parameter("The parameter template is required.")
    name, language = template.get("name"), template.get("language")
    code = language.get("code") if isinstance(language, dict) else None
    if not isinstance(name, str) or not name or not isinstance(code, str) or not code:
        raise errors.invalid_parameter("template.name and template.language.code are required.")
    components = template.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise errors.invalid_parameter("template.components must be a list of objects.")
    callback = document.get("biz_opaque_callback_data")
    if callback is not None and not (
        isinstance(callback, str) and len(callback) <= MAX_CALLBACK_DATA
    ):
        raise errors.invalid_parameter(
            f"biz_opaque_callback_data must be a string of at most {MAX_CALLBACK_DATA} characters."
        )
    return TemplateSend(to, wa_id, name, code, components, callback)


def _parameters(component: dict[str, Any], where: str) -> list[dict[str, Any]]:
    parameters = component.get("parameters", [])
    if not isinstance(parameters, list) or not all(isinstance(p, dict) for p in parameters):
        raise errors.invalid_parameter(f"{where}: parameters must be a list of objects.")
    return parameters


def _check_text_parameters(
    template: CatalogTemplate, where: str, expected: tuple[str, ...], given: list[dict[str, Any]]
) -> None:
    if len(given) != len(expected):
        raise errors.parameter_count_mismatch(
            f"{where}: number of localizable_params ({len(given)}) does not match the expected "
            f"number of params ({len(expected)})"
        )
    for parameter in given:
        kind = parameter.get("type")
        if kind not in TEXT_LIKE:
            raise errors.parameter_not_valid(f"{where}: parameter type {kind!r} is not valid.")
        if kind == "text" and not isinstance(parameter.get("text"), str):
            raise errors.parameter_missing(f"{where}: a text parameter needs its text.")
    if template.is_named:
        names = [parameter.get("parameter_name") for parameter in given]
        if not all(isinstance(name, str) and name for name in names):
            raise errors.parameter_count_mismatch(
                f"{where}: a named template needs the parameter_name of every parameter"
            )
        if sorted(str(name) for name in names) != sorted(expected):
            raise errors.parameter_count_mismatch(
                f"{where}: parameter names {sorted(str(n) for n in names)} do not match the "
                f"template's {sorted(expected)}"
            )


def _check_button(template: CatalogTemplate, component: dict[str, Any]) -> int:
    raw_index = component.get("index")
    if isinstance(raw_index, bool) or not str(raw_index).isdigit():
        raise errors.invalid_parameter('button: index must be a number such as "0".')
    index = int(str(raw_index))
    spec = template.buttons.get(index)
    if spec is None:
        raise errors.parameter_not_valid(f"button: the template has no button at index {index}.")
    sub_type, parameter_type = BUTTON_KINDS.get(spec["type"], (spec["type"].lower(), ""))
    if str(component.get("sub_type", "")).lower() != sub_type:
        raise errors.parameter_not_valid(f"button {index}: sub_type must be {sub_type!r}.")
    parameters = _parameters(component, f"button {index}")
    if len(parameters) > 1 or (parameters and not spec["takes_variable"]):
        raise errors.parameter_count_mismatch(
            f"buttons: number of parameters ({len(parameters)}) does not match the expected "
            f"number of params ({int(spec['takes_variable'])}) for the button at index {index}"
        )
    if parameters:
        parameter = parameters[0]
        if parameter.get("type") != parameter_type:
            raise errors.parameter_not_valid(
                f"button {index}: the parameter type must be {parameter_type!r}."
            )
        value = parameter.get(parameter_type)
        if not isinstance(value, str) or not value:
            raise errors.parameter_missing(f"button {index}: the {parameter_type} is missing.")
    elif spec["requires_variable"]:
        raise _missing_button(index, spec["type"])
    return index


def _missing_button(index: int, kind: str) -> errors.MetaError:
    return errors.parameter_count_mismatch(
        f"buttons: the {kind} button at index {index} requires a parameter"
    )


def send_check(template: CatalogTemplate, components: list[dict[str, Any]]) -> None:
    """Meta's 132000 (or 131008/131009/100) when the parameters do not fit the template."""
    seen: set[str] = set()
    buttons: set[int] = set()
    for component in components:
        kind = str(component.get("type", "")).lower()
        if kind in ("header", "body"):
            if kind in seen:
                raise errors.invalid_parameter(f"template.components has two {kind}s.")
            seen.add(kind)
            parameters = _parameters(component, kind)
            if kind == "body" or not template.has_media_header:
                expected = template.body_variables if kind == "body" else template.header_variables
                _check_text_parameters(template, kind, expected, parameters)
        elif kind == "button":
            index = _check_button(template, component)
            if index in buttons:
                raise errors.invalid_parameter(f"button {index} is given twice.")
            buttons.add(index)
        else:
            raise errors.invalid_parameter(f"Unknown component type {kind!r}.")
    # A component the template needs parameters for but the send left out counts as zero given.
    if "header" not in seen and template.header_variables:
        _check_text_parameters(template, "header", template.header_variables, [])
    if "body" not in seen and template.body_variables:
        _check_text_parameters(template, "body", template.body_variables, [])
    for index, spec in template.buttons.items():
        if spec["requires_variable"] and index not in buttons:
            raise _missing_button(index, spec["type"])
