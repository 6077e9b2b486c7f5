"""The Celery application: tasks only wake work up, PostgreSQL says what is left to do."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")

app = Celery("mindo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
