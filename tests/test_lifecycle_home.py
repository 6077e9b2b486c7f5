"""A send's status, counters, times and reason change in bulksend/lifecycle.py only: no other
module may update those fields through the ORM or write the sends' table in SQL."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("mindo", "templates_app", "messaging", "bulksend", "webhooks", "meta")
HOME = ROOT / "bulksend" / "lifecycle.py"
LIFECYCLE_FIELDS = {
    "status",
    "status_reason",
    "started_at",
    "completed_at",
    "halted_at",
    "halt_reason",
    "pending_count",
    "sent_count",
    "delivered_count",
    "read_count",
    "failed_count",
    "cancelled_count",
}


def source_files() -> list[Path]:
    files = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" not in path.parts:
                files.append(path)
    return files


def names_in(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def send_state_writes(tree: ast.AST) -> list[int]:
    """Lines that update a send's lifecycle fields: `BulkSend...update(status=...)`, or SQL that
    updates the sends' table."""
    lines = []
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"update", "bulk_update"}
            and "BulkSend" in names_in(node.func.value)
            and (
                {keyword.arg for keyword in node.keywords} & LIFECYCLE_FIELDS
                or node.func.attr == "bulk_update"
            )
        ):
            lines.append(node.lineno)
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = " ".join(node.value.split()).upper()
            if "UPDATE {SENDS}" in text or "UPDATE BULKSEND_BULKSEND" in text:
                lines.append(node.lineno)
    return lines


def test_only_the_lifecycle_module_changes_a_sends_state() -> None:
    offenders = {
        str(path.relative_to(ROOT)): lines
        for path in source_files()
        if path != HOME and (lines := send_state_writes(ast.parse(path.read_text())))
    }

    assert offenders == {}


def test_the_check_sees_a_write_outside_the_lifecycle_module() -> None:
    orm = ast.parse("BulkSend.objects.filter(pk=1).update(status='FAILED')")
    sql = ast.parse('SQL = """UPDATE {sends} b SET sent_count = 1"""')
    other_fields = ast.parse("BulkSend.objects.filter(pk=1).update(task_id='x')")
    messages = ast.parse("Message.objects.filter(pk=1).update(status='failed')")

    assert send_state_writes(orm) == [1]
    assert send_state_writes(sql) == [1]
    assert send_state_writes(other_fields) == []
    assert send_state_writes(messages) == []


def test_the_lifecycle_module_is_where_the_writes_are() -> None:
    assert send_state_writes(ast.parse(HOME.read_text()))
