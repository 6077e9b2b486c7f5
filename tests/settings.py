"""Settings for the test suite: the real services, with Redis on a database of its own."""

from __future__ import annotations

import os

os.environ["REDIS_URL"] = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ["CELERY_BROKER_URL"] = os.environ["REDIS_URL"]

from mindo.settings import *  # noqa: F403

# No collected static files in tests: WhiteNoise would warn on every request.
MIDDLEWARE = [m for m in MIDDLEWARE if m != "whitenoise.middleware.WhiteNoiseMiddleware"]  # noqa: F405

# Tests call the API far faster than any client may; tests/test_throttling.py lowers these.
API_THROTTLE_SEND_RATE = "1000000/min"
API_THROTTLE_READ_RATE = "1000000/min"
