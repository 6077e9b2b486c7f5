"""The README's verification snippets, as a customer would paste them, accept a real delivery's
signature and refuse a tampered body (JavaScript with node, when the machine has it)."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from typing import Any

import pytest
from django.conf import settings

from callbacks.signing import secret_generate, signature_header

README = settings.BASE_DIR / "README.md"


def snippet(language: str) -> str:
    text = README.read_text()
    [block] = re.findall(rf"\n  ```{language}\n(.*?)\n  ```\n", text, flags=re.S)
    return "\n".join(line.removeprefix("  ") for line in block.splitlines())


def a_delivery() -> tuple[str, bytes, str]:
    secret = secret_generate()
    body = b'{"id":"e1","type":"message.status","data":{"status":"read"}}'
    return signature_header([secret_generate(), secret], int(time.time()), body), body, secret


def test_the_python_snippet_verifies_a_delivery() -> None:
    namespace: dict[str, Any] = {}
    exec(snippet("python"), namespace)
    check = namespace["mindo_signature_ok"]
    header, body, secret = a_delivery()

    assert check(header, body, secret)
    assert not check(header, body + b" ", secret)
    assert not check(header, body, secret_generate())
    old = signature_header([secret], int(time.time()) - 3600, body)
    assert not check(old, body, secret)


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_javascript_snippet_verifies_a_delivery() -> None:
    header, body, secret = a_delivery()
    program = snippet("javascript") + (
        "\nconst [header, body, secret] = process.argv.slice(1);"
        "\nconsole.log(JSON.stringify([mindoSignatureOk(header, Buffer.from(body), secret),"
        " mindoSignatureOk(header, Buffer.from(body + ' '), secret)]));"
    )
    done = subprocess.run(
        ["node", "-e", program, header, body.decode(), secret],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert done.stdout.strip() == "[true,false]"
