"""Settings for the test suite: the real services, with Redis on a database of its own."""

from __future__ import annotations

import os

os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]

from mindo.settings import *  # noqa: F403

# No collected static files in tests: WhiteNoise would warn on every request.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405

# The suite runs as production does (DEBUG off), so it needs secrets that production accepts:
# tests import mindo.wsgi, which refuses the development ones.
SECRET_KEY = "tests-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"
META_APP_SECRET = "tests-only-app-secret-0123456789abcdef"
META_VERIFY_TOKEN = "tests-only-verify-token"
# The test client and the live servers speak plain HTTP.
SECURE_SSL_REDIRECT = False
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = False
