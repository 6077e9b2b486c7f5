"""LOG_FORMAT=json: one JSON object per line, from Django, Celery and gunicorn alike."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from mindo.logging import logging_config
from tests.process_support import run_python

# Each runs in a fresh interpreter, so that logging is configured from the environment.
DJANGO_LINES = """
import logging, django
django.setup()
log = logging.getLogger("bulksend.drain")
log.info("batch of %s sent", 500, extra={"bulk_send_id": "65b06f9c", "rate": 79.5})
try:
    1 / 0
except ZeroDivisionError:
    log.exception("drain failed")
"""
CELERY_LINES = """
import logging, django
django.setup()
from mindo.celery import app
app.log.setup(loglevel="INFO")  # what `celery worker` and `celery beat` call at start
logging.getLogger("celery.worker").warning("worker ready")
"""
GUNICORN_LINES = """
import logging.config, sys
from mindo import gunicorn_conf
logging.config.dictConfig(gunicorn_conf.logconfig_dict)
atoms = {"h": "10.0.0.7", "m": "POST", "U": "/api/v1/meta-templates/send-bulk/", "q": "",
         "s": "202", "b": "512", "B": 512, "L": "0.031250", "a": "curl/8.5.0",
         "r": "POST /api/v1/meta-templates/send-bulk/ HTTP/1.1"}
logging.getLogger("gunicorn.access").info(gunicorn_conf.access_log_format, atoms)
logging.getLogger("gunicorn.error").info("Booting worker with pid: %s", 4242)
logging.getLogger("environ.environ").info("/app/.env not found")  # before Django's setup
"""


def run_json_logging(code: str) -> list[dict[str, Any]]:
    """The JSON objects `code` wrote, a line each, on stdout and stderr."""
    env = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused",
        "TEST_REDIS_URL": settings.REDIS_URL,
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    done = run_python(code, env=env)
    lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert lines, "nothing was logged"
    return [json.loads(line) for line in lines]  # fails on any line that is not JSON


def test_django_logs_one_json_object_per_line_with_the_extra_fields() -> None:
    info, error = run_json_logging(DJANGO_LINES)

    assert info["level"] == "INFO"
    assert info["logger"] == "bulksend.drain"
    assert info["message"] == "batch of 500 sent"
    assert (info["bulk_send_id"], info["rate"]) == ("65b06f9c", 79.5)
    assert info["timestamp"].endswith("+00:00")
    assert (error["level"], error["message"]) == ("ERROR", "drain failed")
    assert "ZeroDivisionError" in error["exception"]


def test_celery_logs_through_djangos_configuration() -> None:
    (line,) = run_json_logging(CELERY_LINES)

    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "celery.worker",
        "worker ready",
    )


def test_gunicorn_access_lines_carry_the_request_by_field() -> None:
    # Exactly these two: nothing below WARNING from other loggers before Django sets LOG_LEVEL.
    access, error = run_json_logging(GUNICORN_LINES)

    assert access["logger"] == "gunicorn.access"
    assert access["method"] == "POST"
    assert access["path"] == "/api/v1/meta-templates/send-bulk/"
    assert (access["status"], access["duration_seconds"]) == (202, 0.03125)
    assert access["remote_addr"] == "10.0.0.7"
    assert (error["logger"], error["message"]) == (
        "gunicorn.error",
        "Booting worker with pid: 4242",
    )


def test_an_unknown_log_format_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config(log_format="xml", level="INFO")
