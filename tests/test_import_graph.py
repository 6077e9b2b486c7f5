"""The project's layering, read from the source: no import points up the stack.

    callbacks > webhooks > bulksend > messaging > templates_app > {meta, mindo}

A package may import the packages below it, never one above. `meta` (Meta's API itself) imports
no project package at all. `mindo` imports no app, except the root wiring modules that put the
apps together. The sandbox, a stand-in for Meta, imports no app and no `mindo`.

`callbacks` (customer callbacks) sits on top; the modules whose changes it reports record its
events in their own transaction, so they, and only they, import its outbox (`CALLBACK_HOOKS`).

Every import counts: at module level, inside functions, under `TYPE_CHECKING`, relative ones,
and `import_module("...")` / `import_string("...")` with a literal name.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Higher imports lower; equal ranks do not import each other (meta and mindo have their own rules).
RANKS = {
    "callbacks": 5,
    "webhooks": 4,
    "bulksend": 3,
    "messaging": 2,
    "templates_app": 1,
    "meta": 0,
    "mindo": 0,
}
APPS = ("callbacks", "webhooks", "bulksend", "messaging", "templates_app")
SANDBOX = "meta_sandbox"
PROJECT_PACKAGES = (*RANKS, SANDBOX)
# The modules that wire the apps into one service.
MINDO_WIRING = {"mindo.urls", "mindo.wsgi", "mindo.celery", "mindo.settings"}
DYNAMIC_IMPORTERS = {"import_module", "import_string"}
# The modules that record callback events in the transaction of their change, and what they use.
# bulksend.creation registers a send's `callback_url` in the send's own transaction.
CALLBACK_HOOKS = {
    "webhooks.processing",
    "bulksend.lifecycle",
    "bulksend.creation",
    "templates_app.meta_updates",
}
CALLBACK_OUTBOX = "callbacks.outbox"


@dataclass(frozen=True, slots=True)
class Import:
    module: str  # the importing module, dotted
    target: str  # the imported module or name, dotted
    path: str
    line: int

    @property
    def target_package(self) -> str:
        return self.target.split(".")[0]

    def __str__(self) -> str:
        return f"{self.path}:{self.line} imports {self.target}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join([*base, name] if name else base)


def imports_in(source: str, module: str, path: str, *, is_package: bool = False) -> list[Import]:
    """Every project import `source` makes, wherever it is written."""
    found: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            targets = [base]
        elif isinstance(node, ast.Call) and node.args:
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else None
            called = function.id if isinstance(function, ast.Name) else called
            argument = node.args[0]
            if (
                called in DYNAMIC_IMPORTERS
                and isinstance(argument, ast.Constant)
                and isinstance(argument.value, str)
            ):
                targets = [argument.value]
        found.extend(
            Import(module, target, path, node.lineno)
            for target in targets
            if target.split(".")[0] in PROJECT_PACKAGES
        )
    return found


def project_imports() -> Iterator[Import]:
    for package in PROJECT_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if ".venv" in path.parts:
                continue
            yield from imports_in(
                path.read_text(),
                module_name(path),
                str(path.relative_to(ROOT)),
                is_package=path.name == "__init__.py",
            )


def violations(imports: Iterator[Import] | list[Import]) -> list[str]:
    """What breaks the layering, one line per import, saying which rule."""
    broken: list[str] = []
    for found in imports:
        own, target = found.module.split(".")[0], found.target_package
        if own == target:
            continue
        if own == "meta":
            broken.append(f"{found}: meta imports no project package")
        elif own == SANDBOX:
            if target in APPS or target == "mindo":
                broken.append(f"{found}: the sandbox imports no app and no mindo")
        elif own == "mindo":
            if target in APPS and found.module not in MINDO_WIRING:
                wiring = ", ".join(sorted(MINDO_WIRING))
                broken.append(f"{found}: mindo imports apps only in {wiring}")
            elif target == SANDBOX:
                broken.append(f"{found}: mindo does not import the sandbox")
        elif target == SANDBOX:
            continue  # an app may serve the sandbox (a management command that runs it)
        elif found.module in CALLBACK_HOOKS and found.target.startswith(CALLBACK_OUTBOX):
            continue
        elif RANKS[target] >= RANKS[own] and target not in ("meta", "mindo"):
            broken.append(f"{found}: {own} may import only packages below it")
    return broken


def test_no_project_module_imports_a_package_above_its_own() -> None:
    imports = list(project_imports())

    assert imports, "no project module was read"
    assert violations(imports) == []


def test_the_sandbox_imports_no_app_and_no_mindo() -> None:
    imports = [found for found in project_imports() if found.module.split(".")[0] == SANDBOX]

    assert imports, "no sandbox module was read"
    assert violations(imports) == []


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        ("meta.graph", "from mindo import metrics", "meta imports no project package"),
        ("meta.graph", "def f():\n    import templates_app.models", "meta imports no project"),
        ("templates_app.sync", "from messaging.graph import X", "templates_app may import only"),
        ("messaging.status", "from bulksend import lifecycle", "messaging may import only"),
        ("bulksend.drain", "from webhooks.processing import x", "bulksend may import only"),
        ("mindo.health", "from bulksend.models import BulkSend", "mindo imports apps only"),
        ("meta_sandbox.catalog", "from templates_app import x", "the sandbox imports no app"),
        ("meta_sandbox.catalog", "from mindo.metrics import x", "the sandbox imports no app"),
        (
            "templates_app.models",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from messaging import m",
            "templates_app may import only",
        ),
        ("mindo.health", "import_string('webhooks.metrics.lag')", "mindo imports apps only"),
        ("meta.limits", "from . import graph\nfrom .graph import x", None),
        ("bulksend.drain", "from messaging.models import Message\nfrom meta import graph", None),
        ("mindo.urls", "from bulksend.views import x", None),
        ("bulksend.lifecycle", "from callbacks.outbox import x", None),
        ("bulksend.lifecycle", "from callbacks.models import X", "bulksend may import only"),
        ("bulksend.drain", "from callbacks.outbox import x", "bulksend may import only"),
        ("callbacks.outbox", "from webhooks.models import X", None),
        ("meta_sandbox.catalog", "from meta.components import PLACEHOLDER", None),
    ],
)
def test_the_rules_catch_an_import_that_points_up(
    module: str, source: str, rule: str | None
) -> None:
    found = violations(imports_in(source, module, f"{module.replace('.', '/')}.py"))

    if rule is None:
        assert found == []
    else:
        assert len(found) == 1
        assert rule in found[0]


def test_a_relative_import_is_read_from_its_package() -> None:
    [relative] = imports_in("from ..models import Message", "messaging.sandbox.graph", "x.py")

    assert relative.target == "messaging.models"
