"""The Celery application: tasks only wake work up, PostgreSQL says what is left to do."""

from __future__ import annotations

import logging.config
import os
from typing import Any

from celery import Celery
from celery.signals import setup_logging

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")

app = Celery("mindo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@setup_logging.connect
def _logging_from_django(**kwargs: Any) -> None:
    """Workers and beat log through Django's LOGGING (LOG_FORMAT, LOG_LEVEL) rather than Celery's
    own setup: with a receiver here, Celery leaves the root logger alone."""
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
