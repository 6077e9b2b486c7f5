"""Production (DJANGO_DEBUG false) refuses the development secrets; `check --deploy` is clean.

Each case runs `manage.py check` or gunicorn in a process of its own, with the project's real
settings (mindo.settings) and only the environment the case gives.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SECRET_VARIABLES = ("DJANGO_SECRET_KEY", "META_APP_SECRET", "META_VERIFY_TOKEN")
PUBLISHED = {
    "DJANGO_SECRET_KEY": "insecure-development-key-change-me",
    "META_APP_SECRET": "mindo-dev-app-secret",
    "META_VERIFY_TOKEN": "mindo-dev-verify-token",
}
# The README's "Production settings", with real-looking secrets.
PRODUCTION = {
    "DJANGO_SECRET_KEY": "q7Vh0-Zr2nKx9LwTf4YbPs8JcAe1MdUgRo6Hi3NlWkEpXy5Bt-QzCvOa_u2Dj",
    "META_APP_SECRET": "3f9c1e7a5b2d4086c1e9f7a3b5d20468",
    "META_VERIFY_TOKEN": "a-verify-token-of-our-own",
    "DJANGO_ALLOWED_HOSTS": "api.example.com",
    "DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS": "true",
    "DJANGO_SECURE_HSTS_PRELOAD": "true",
    "DJANGO_BEHIND_PROXY": "true",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://api.example.com",
}


def _environment(**variables: str) -> dict[str, str]:
    """This process's environment without any Django or Meta setting, plus `variables`.

    The secrets are always given (empty when unset): a developer's .env must not fill them in.
    """
    base = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "META_", "PYTEST"))
    }
    secrets = dict.fromkeys(SECRET_VARIABLES, "")
    return {
        **base,
        **secrets,
        "DJANGO_SETTINGS_MODULE": "mindo.settings",
        "PYTHONWARNINGS": "ignore",
        **variables,
    }


def _run(args: list[str], variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=_environment(**variables),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _manage(*args: str, **variables: str) -> subprocess.CompletedProcess[str]:
    return _run(["manage.py", *args], variables)


@pytest.mark.parametrize(
    "secrets",
    [pytest.param({}, id="unset"), pytest.param(PUBLISHED, id="published-defaults")],
)
def test_production_check_fails_naming_each_development_secret(secrets: dict[str, str]) -> None:
    result = _manage("check", DJANGO_DEBUG="false", **secrets)

    assert result.returncode != 0
    for variable in SECRET_VARIABLES:
        assert variable in result.stderr
    assert "mindo.E001" in result.stderr
    assert "mindo.E003" in result.stderr


def test_production_check_refuses_short_secrets_and_names_only_them() -> None:
    result = _manage(
        "check",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="short-but-not-the-default",
        META_APP_SECRET="0123456789abcdef",
        META_VERIFY_TOKEN=PRODUCTION["META_VERIFY_TOKEN"],
    )

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY is too weak" in result.stderr
    assert "META_APP_SECRET is too short" in result.stderr
    assert "META_VERIFY_TOKEN" not in result.stderr


def test_migrate_refuses_to_start_with_development_secrets() -> None:
    result = _manage("migrate", "--check", DJANGO_DEBUG="false")

    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY" in result.stderr


def test_deploy_check_is_clean_with_the_documented_production_settings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert result.stderr == ""


def test_development_runs_with_no_configuration() -> None:
    result = _manage("check", DJANGO_DEBUG="true")

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def _gunicorn(**variables: str) -> subprocess.CompletedProcess[str]:
    # --check-config loads the application as a worker would, then exits.
    return _run(["-m", "gunicorn", "--check-config", "mindo.wsgi"], variables)


def test_gunicorn_refuses_to_load_the_application_with_development_secrets() -> None:
    result = _gunicorn(DJANGO_DEBUG="false", META_APP_SECRET=PUBLISHED["META_APP_SECRET"])

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Refusing to start: set DJANGO_SECRET_KEY, META_APP_SECRET, META_VERIFY_TOKEN" in output


def test_gunicorn_loads_the_application_with_production_secrets() -> None:
    result = _gunicorn(**PRODUCTION)

    assert result.returncode == 0, result.stdout + result.stderr
