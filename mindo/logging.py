"""Log records as one JSON object per line, for `LOG_FORMAT=json` (Django, Celery and gunicorn).

Each line holds `timestamp` (ISO 8601, UTC), `level`, `logger` and `message`, then whatever the
call passed in `extra=` (`logger.info("...", extra={"bulk_send_id": ...})`), and `exception`
with the traceback when there is one. gunicorn's access lines carry the request's fields by name
instead of Apache's positional format.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

# Attributes every LogRecord has: anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}

# gunicorn's access atoms worth a field of their own, by the name the line gives them.
_ACCESS_FIELDS = {
    "h": "remote_addr",
    "m": "method",
    "U": "path",
    "q": "query",
    "s": "status",
    "B": "response_bytes",
    "L": "duration_seconds",
    "a": "user_agent",
}


def _access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {name: atoms.get(atom) for atom, name in _ACCESS_FIELDS.items()}
    with contextlib.suppress(TypeError, ValueError):
        fields["status"] = int(fields["status"])
        fields["duration_seconds"] = float(fields["duration_seconds"])
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per record; values JSON cannot hold are written as their `str()`."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "timestamp": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            line.update(_access_fields(record.args))
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


class RoutineTaskRunsFilter(logging.Filter):
    """Celery's INFO lines about a routine task's runs, demoted to DEBUG.

    A worker logs "received" and "succeeded" for every task it runs and beat "Sending due task"
    for every one it sends: for the housekeeping that beat runs every few seconds, that is a
    screenful a minute saying nothing. Those lines are kept only when their logger is enabled for
    DEBUG; the tasks log at INFO themselves when they did something.
    """

    def __init__(self, tasks: list[str]) -> None:
        super().__init__()
        self.tasks = frozenset(tasks)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not record.name.startswith("celery."):
            return True
        # The task's name is an argument of the line: `{"name": ...}` in the worker's, the
        # second of `(entry, task)` in beat's.
        args = record.args.values() if isinstance(record.args, Mapping) else record.args or ()
        if self.tasks.isdisjoint(arg for arg in args if isinstance(arg, str)):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)


PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
LOG_FORMATS = ("plain", "json")


def logging_config(
    *, log_format: str, level: str, routine_tasks: list[str] | None = None
) -> dict[str, Any]:
    """The `LOGGING` dict: every record to stderr, formatted as `log_format` says; Celery's lines
    about each run of `routine_tasks` at DEBUG (RoutineTaskRunsFilter)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {
            "plain": {"format": PLAIN_FORMAT},
            "json": {"()": "mindo.logging.JsonFormatter"},
        },
        "filters": {
            "routine_tasks": {
                "()": "mindo.logging.RoutineTaskRunsFilter",
                "tasks": routine_tasks or [],
            }
        },
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": log_format,
                "filters": ["routine_tasks"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
    }


def gunicorn_logging_config(*, log_format: str, level: str) -> dict[str, Any]:
    """gunicorn's own loggers (its errors and the access log) on the same formatter."""
    config = logging_config(log_format=log_format, level=level)
    config["handlers"]["access"] = {
        "class": "logging.StreamHandler",
        "formatter": log_format,
        "stream": "ext://sys.stdout",
    }
    config["loggers"] = {
        "gunicorn.error": {"level": level, "handlers": ["console"], "propagate": False},
        "gunicorn.access": {"level": "INFO", "handlers": ["access"], "propagate": False},
    }
    # Until Django sets LOG_LEVEL up in each worker, only warnings: importing the settings logs
    # at INFO (django-environ's "no .env"), which Django's own start would never show.
    config["root"]["level"] = "WARNING"
    return config
