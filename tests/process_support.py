"""Running Python code in an interpreter of its own, as the service's processes start."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping

from django.conf import settings


def run_python(
    code: str, *args: str, env: Mapping[str, str], timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`python -c code args...` in the project's folder; fails the test when it fails."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=settings.BASE_DIR,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
