"""Settings for the test suite: the real services, with Redis on a database of its own.

TEST_REDIS_URL names the tests' Redis; by default REDIS_URL's server (from the environment or
.env) with database 15, so the tests never touch the development queue.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import environ

TEST_REDIS_DB = 15

environ.Env.read_env(Path(__file__).resolve().parent.parent / ".env", overwrite=False)
_server = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
_derived = _server._replace(path=f"/{TEST_REDIS_DB}", query="").geturl()
os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL") or _derived
# A test whose REDIS_URL is a cluster's gives its processes a plain broker of their own.
os.environ["CELERY_BROKER_URL"] = (
    os.environ.get("TEST_CELERY_BROKER_URL") or os.environ["REDIS_URL"]
)

from mindo.settings import *  # noqa: F403, E402

# No collected static files in tests: WhiteNoise would warn on every request.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405

# Tests call the API far faster than any client may; tests/test_throttling.py lowers these.
API_THROTTLE_SEND_RATE = "1000000/min"
API_THROTTLE_READ_RATE = "1000000/min"
API_THROTTLE_SINGLE_RATE = "1000000/min"
# The suite runs as production does (DEBUG off), so it needs secrets that production accepts:
# tests import mindo.wsgi, which refuses the development ones.
SECRET_KEY = "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
META_APP_SECRET = "tests-only-app-secret-0123456789abcdef"
META_VERIFY_TOKEN = "tests-only-verify-token"
# The test client and the live servers speak plain HTTP.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
# The tests' receivers listen on 127.0.0.1; tests/test_callbacks_ssrf.py turns it off.
CALLBACKS_ALLOW_PRIVATE_HOSTS = True
