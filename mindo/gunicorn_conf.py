"""gunicorn's settings (`gunicorn -c python:mindo.gunicorn_conf mindo.wsgi`): its own logs follow
LOG_FORMAT like Django's do. Command-line flags still override what is set here.

gunicorn reads this before Django is set up, so `.env` is read here too, as mindo.settings does.
"""

from __future__ import annotations

import os
from pathlib import Path

import environ

from mindo.logging import gunicorn_logging_config

environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)

logconfig_dict = gunicorn_logging_config(
    log_format=os.environ.get("LOG_FORMAT", "plain"), level=os.environ.get("LOG_LEVEL", "INFO")
)
# With LOG_FORMAT=plain, Apache's combined format plus the time the request took.
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s "%(a)s" %(L)ss'
# A sync worker tells the arbiter it is alive only between requests, and the arbiter kills one
# silent for `timeout` seconds: 30 s (gunicorn's default) would cut a CSV export of a million
# messages to a slow client mid-file. Five minutes still ends a worker that is truly stuck.
timeout = 300
