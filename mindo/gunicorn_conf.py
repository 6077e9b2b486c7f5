"""gunicorn's settings (`gunicorn -c python:mindo.gunicorn_conf mindo.wsgi`): its own logs follow
LOG_FORMAT like Django's do, and a worker collects garbage between requests (mindo.worker_gc).
Command-line flags still override what is set here.

gunicorn reads this before Django is set up, so `.env` is read here too, as mindo.settings does.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import environ

from mindo.logging import gunicorn_logging_config
from mindo.worker_gc import worker_gc_after_request, worker_gc_start

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


def post_worker_init(worker: Any) -> None:
    """The application is loaded in this worker: what it holds is frozen for the collector."""
    worker_gc_start()


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """The answer is written: collect what the request left behind, while no client waits."""
    worker_gc_after_request()
