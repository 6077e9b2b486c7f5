"""Settings, all from environment variables with defaults that work on a developer's machine.

Every variable read here is listed, with its default, in `.env.example` and in the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

from meta.graph_version import GRAPH_VERSION
from meta.limits import STANDARD_THROUGHPUT
from mindo.logging import logging_config

# Lets classes such as ModelAdmin take type parameters at run time, as the type checker wants.
django_stubs_ext.monkeypatch()

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# A local .env is a convenience for developers; real deployments set the environment itself.
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

# Off unless asked: a deployment that forgets it is production. `./dev up` turns it on.
DEBUG = env.bool("DJANGO_DEBUG", default=False)
# Published values that only let a fresh clone start. With DEBUG off they are refused, like a
# missing or weak secret: mindo/checks.py stops `manage.py` and the web server, naming each one.
DEVELOPMENT_SECRETS = {
    "DJANGO_SECRET_KEY": "insecure-development-key-change-me",
    "META_APP_SECRET": "mindo-dev-app-secret",
    "META_VERIFY_TOKEN": "mindo-dev-verify-token",
}
# An empty value (as in .env.example) counts as unset.
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="") or DEVELOPMENT_SECRETS["DJANGO_SECRET_KEY"]
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
# Behind a TLS-terminating proxy, pagination links must carry the public host and scheme.
if env.bool("DJANGO_BEHIND_PROXY", default=False):
    USE_X_FORWARDED_HOST = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# HTTPS only in production (`check --deploy` is clean with the README's production settings).
# Behind a TLS proxy set DJANGO_BEHIND_PROXY, so that Django sees which requests were HTTPS.
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
# Both bind every subdomain (and, preloaded, every browser) to HTTPS: the operator's decision.
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    # Swagger UI's files, served from this process: /api/docs/ works without internet.
    "drf_spectacular_sidecar",
    "mindo",
    "templates_app",
    "bulksend",
    "messaging",
    "webhooks",
    "callbacks",
]

MIDDLEWARE = [
    # First: health probes and metrics, reached by IP address too (see the module).
    "mindo.paths.OperatorPathsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's static files from gunicorn itself, with no web server in front.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Before CommonMiddleware: `/api/.../send-bulk` is served, not redirected (see the module).
    "mindo.paths.ApiSlashMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "mindo.middleware.ApiErrorMiddleware",
    "mindo.middleware.ApiRequestBodyMiddleware",
]

ROOT_URLCONF = "mindo.urls"
WSGI_APPLICATION = "mindo.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "mindo" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/mindo"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
# A kept connection is checked before each request's first query, by looking at its socket
# rather than with a round trip (mindo.postgresql).
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"]["ENGINE"] = "mindo.postgresql"
# `transaction` when a pooler in transaction mode (PgBouncer's pool_mode = transaction) stands
# between the service and PostgreSQL: a client's next transaction may run on another server
# connection, so nothing may rely on a session. The webhook applier then takes its lock per
# transaction instead of per session, and querysets' iterators read without server-side cursors.
DATABASE_POOLING = env.str("DATABASE_POOLING", default="session")
if DATABASE_POOLING not in ("session", "transaction"):
    raise ImproperlyConfigured(
        f"DATABASE_POOLING must be 'session' or 'transaction', not {DATABASE_POOLING!r}."
    )
DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASE_POOLING == "transaction"
# Statements of a cursor that binds on the server (mindo.postgresql's `prepared_cursor`, for a few
# large statements of a hot path) are prepared once they ran this many times on a connection;
# Django's own cursors bind on the client and never are. None behind a transaction pooler.
DATABASES["default"].setdefault("OPTIONS", {})["prepare_threshold"] = (
    None if DATABASE_POOLING == "transaction" else 2
)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=BASE_DIR / "staticfiles")

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")
# REDIS_URL names a node of a Redis Cluster (mindo.redisconn): the limiter, the sends' stop and
# liveness marks and the API's throttling use a cluster client. The broker cannot (see below).
REDIS_CLUSTER = env.bool("REDIS_CLUSTER", default=False)

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["mindo.authentication.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "mindo.permissions.ApiKeyScopePermission",
    ],
    "DEFAULT_PARSER_CLASSES": ["mindo.parsers.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "mindo.pagination.PageNumberPagination",
    "DEFAULT_THROTTLE_CLASSES": ["mindo.throttling.ApiKeyRateThrottle"],
    "DEFAULT_SCHEMA_CLASS": "mindo.schema.ApiKeyAutoSchema",
    "EXCEPTION_HANDLER": "mindo.exceptions.exception_handler",
    "UNAUTHENTICATED_USER": None,
}

SPECTACULAR_SETTINGS = {
    "TITLE": "Mindo bulk-send API",
    "DESCRIPTION": (
        "Send one approved WhatsApp template to many recipients and follow every message. "
        "Authenticate with the `X-API-Key` header."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {"CallbackEventTypeEnum": "callbacks.models.EventType"},
}

# The contract's limits, documented in the README.
BULK_SEND_MAX_RECIPIENTS = env.int("BULK_SEND_MAX_RECIPIENTS", default=1_000_000)
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=32 * 1024 * 1024)
# send-bulk's JSON and CSV bodies past 16 MiB are spooled to a temporary file and streamed, not
# held in memory (bulksend.json_stream): about 400 bytes a recipient at the maximum, so a full
# send with long variables still fits. Chunked bodies stay bounded by API_MAX_BODY_BYTES.
SEND_BULK_MAX_BODY_BYTES = env.int("SEND_BULK_MAX_BODY_BYTES", default=400 * 1024 * 1024)
API_PAGE_SIZE_MAX = env.int("API_PAGE_SIZE_MAX", default=100)
# Requests per API key (N/s, N/min, N/hour or N/day): POST send-bulk, reads, POST send/.
API_THROTTLE_SEND_RATE = env.str("API_THROTTLE_SEND_RATE", default="60/min")
API_THROTTLE_READ_RATE = env.str("API_THROTTLE_READ_RATE", default="1200/min")
# POST send/ (one message each): a key may keep a number at Meta's standard 80 messages a second.
API_THROTTLE_SINGLE_RATE = env.str("API_THROTTLE_SINGLE_RATE", default="6000/min")
# Writing last_used_at on every request would turn each read into a write.
API_KEY_LAST_USED_RESOLUTION_SECONDS = env.int("API_KEY_LAST_USED_RESOLUTION_SECONDS", default=60)
# A key that authenticated is not looked up again by the same process for this long, so a revoked
# key (or its user deactivated) keeps working up to this long (mindo.api_keys).
API_KEY_CACHE_SECONDS = env.float("API_KEY_CACHE_SECONDS", default=5.0)

# A number's messages per second unless its own row says otherwise (Meta's standard level).
DEFAULT_THROUGHPUT_PER_SECOND = env.int(
    "DEFAULT_THROUGHPUT_PER_SECOND", default=STANDARD_THROUGHPUT
)

# Delivery to Meta (bulksend.drain): see the README's configuration table for each one.
META_GRAPH_URL = env.str("META_GRAPH_URL", default="https://graph.facebook.com")
META_GRAPH_VERSION = env.str("META_GRAPH_VERSION", default=GRAPH_VERSION)
META_HTTP_TIMEOUT_SECONDS = env.float("META_HTTP_TIMEOUT_SECONDS", default=10.0)
META_HTTP_CONNECT_TIMEOUT_SECONDS = env.float("META_HTTP_CONNECT_TIMEOUT_SECONDS", default=3.0)
META_MAX_CONNECTIONS = env.int("META_MAX_CONNECTIONS", default=200)
# Off only against a sandbox, to measure the engine itself: then nothing paces the numbers.
DELIVERY_PACING = env.bool("DELIVERY_PACING", default=True)
DELIVERY_BATCH_SIZE = env.int("DELIVERY_BATCH_SIZE", default=500)
DELIVERY_CONCURRENCY = env.int("DELIVERY_CONCURRENCY", default=64)
DELIVERY_LEASE_SECONDS = env.int("DELIVERY_LEASE_SECONDS", default=120)
# How long a batch waits for an unreachable Redis (the limiter) before giving back what it has
# not sent; at most half of DELIVERY_LEASE_SECONDS is used.
DELIVERY_REDIS_WAIT_SECONDS = env.float("DELIVERY_REDIS_WAIT_SECONDS", default=60.0)
DELIVERY_CALLBACK_GRACE_SECONDS = env.int("DELIVERY_CALLBACK_GRACE_SECONDS", default=60)
# A message Meta may have taken (no answer came) is sent again only once Meta's webhooks for its
# number have come past it plus the grace without naming it. With no such evidence it waits this
# long, then fails as `unknown_outcome` (or goes out again when DELIVERY_RESEND_UNKNOWN is on,
# accepting a possible duplicate). See the README's delivery guarantee.
DELIVERY_UNKNOWN_AFTER_SECONDS = env.int("DELIVERY_UNKNOWN_AFTER_SECONDS", default=60 * 60)
DELIVERY_RESEND_UNKNOWN = env.bool("DELIVERY_RESEND_UNKNOWN", default=False)
DELIVERY_DRAIN_SECONDS = env.int("DELIVERY_DRAIN_SECONDS", default=60)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=5)
DELIVERY_RETRY_BASE_SECONDS = env.float("DELIVERY_RETRY_BASE_SECONDS", default=2.0)
DELIVERY_RETRY_MAX_SECONDS = env.float("DELIVERY_RETRY_MAX_SECONDS", default=300.0)

# A single send (POST send/) goes out within its request, so every wait in it is bounded: the
# number's permit, each call to Meta, and the retries of a retryable error (bulksend.single).
SINGLE_SEND_PERMIT_WAIT_SECONDS = env.float("SINGLE_SEND_PERMIT_WAIT_SECONDS", default=2.0)
SINGLE_SEND_META_TIMEOUT_SECONDS = env.float("SINGLE_SEND_META_TIMEOUT_SECONDS", default=5.0)
SINGLE_SEND_MAX_ATTEMPTS = env.int("SINGLE_SEND_MAX_ATTEMPTS", default=3)
SINGLE_SEND_RETRY_SECONDS = env.float("SINGLE_SEND_RETRY_SECONDS", default=0.25)

# Meta's webhooks: the token of the subscription handshake and the app secret that signs bodies.
META_VERIFY_TOKEN = (
    env.str("META_VERIFY_TOKEN", default="") or DEVELOPMENT_SECRETS["META_VERIFY_TOKEN"]
)
META_APP_SECRET = env.str("META_APP_SECRET", default="") or DEVELOPMENT_SECRETS["META_APP_SECRET"]
# Received webhook bodies are kept for operators this many days, then purged by beat.
WEBHOOK_EVENT_RETENTION_DAYS = env.int("WEBHOOK_EVENT_RETENTION_DAYS", default=14)
# Days ahead beat keeps the bodies' daily partitions created (webhooks.partitions).
WEBHOOK_PARTITION_DAYS_AHEAD = env.int("WEBHOOK_PARTITION_DAYS_AHEAD", default=7)
# A status for a wamid no message recorded within this long belongs to none of ours: purged.
DEFERRED_STATUS_RETENTION_HOURS = env.int("DEFERRED_STATUS_RETENTION_HOURS", default=48)

# Customer callbacks (the callbacks app): see the README's configuration table for each one.
# Off in production: a customer's URL may not reach loopback, private or metadata addresses.
# `./dev up` and the tests turn it on, their receivers listening on 127.0.0.1.
CALLBACKS_ALLOW_PRIVATE_HOSTS = env.bool("CALLBACKS_ALLOW_PRIVATE_HOSTS", default=False)
CALLBACKS_TIMEOUT_SECONDS = env.float("CALLBACKS_TIMEOUT_SECONDS", default=5.0)
# Requests in flight to one endpoint, and to all of them, from one worker process.
CALLBACKS_ENDPOINT_CONCURRENCY = env.int("CALLBACKS_ENDPOINT_CONCURRENCY", default=16)
CALLBACKS_MAX_CONNECTIONS = env.int("CALLBACKS_MAX_CONNECTIONS", default=200)
# Events a worker takes per round (in all, and of one endpoint), and how long a round may start
# new requests: an endpoint's posts not started by then wait for the next round.
CALLBACKS_CLAIM_SIZE = env.int("CALLBACKS_CLAIM_SIZE", default=1000)
CALLBACKS_CLAIM_PER_ENDPOINT = env.int("CALLBACKS_CLAIM_PER_ENDPOINT", default=500)
CALLBACKS_ROUND_SECONDS = env.float("CALLBACKS_ROUND_SECONDS", default=5.0)
# A taken event comes due again after this long if its worker died (longer than a round).
CALLBACKS_LEASE_SECONDS = env.int("CALLBACKS_LEASE_SECONDS", default=60)
CALLBACKS_RUN_SECONDS = env.float("CALLBACKS_RUN_SECONDS", default=50.0)
CALLBACKS_POLL_SECONDS = env.float("CALLBACKS_POLL_SECONDS", default=2.0)
# Events in one POST for an endpoint that opted into batches.
CALLBACKS_BATCH_SIZE = env.int("CALLBACKS_BATCH_SIZE", default=100)
# Retries: exponential backoff with jitter from the base to the maximum, for this long; then the
# event fails, and an endpoint whose every delivery failed this long is disabled.
CALLBACKS_RETRY_BASE_SECONDS = env.float("CALLBACKS_RETRY_BASE_SECONDS", default=10.0)
CALLBACKS_RETRY_MAX_SECONDS = env.float("CALLBACKS_RETRY_MAX_SECONDS", default=60 * 60.0)
CALLBACKS_RETRY_FOR_SECONDS = env.int("CALLBACKS_RETRY_FOR_SECONDS", default=3 * 24 * 60 * 60)

# REDIS_URL unless set, also when set empty (as a copied .env may leave it).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or REDIS_URL
if REDIS_CLUSTER and CELERY_BROKER_URL == REDIS_URL:
    # kombu has no Redis Cluster transport: the wake-ups need a plain Redis of their own.
    raise ImproperlyConfigured(
        "REDIS_CLUSTER needs CELERY_BROKER_URL: a plain Redis, not the cluster"
    )
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
# A task is acknowledged after it ran, so a worker that dies hands its task to another.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=14 * 60)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publishing must not hang a request when Redis is away: the send is already committed.
CELERY_BROKER_TRANSPORT_OPTIONS = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2}
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_BEAT_SCHEDULE = {
    "reap-bulk-sends": {
        "task": "bulksend.reap",
        "schedule": env.float("REAPER_INTERVAL_SECONDS", default=10.0),
    },
    "apply-webhook-events": {"task": "webhooks.apply_pending", "schedule": 2.0},
    "purge-webhook-events": {"task": "webhooks.purge_events", "schedule": 60 * 60},
    "ensure-webhook-partitions": {"task": "webhooks.ensure_partitions", "schedule": 60 * 60},
    "purge-idempotency-keys": {"task": "mindo.purge_idempotency_keys", "schedule": 60 * 60},
    # Delivers what no wake-up announced (a lost one, a retry come due); expires rather than pile
    # up while the callbacks worker is away.
    "deliver-callbacks": {
        "task": "callbacks.deliver",
        "schedule": CALLBACKS_POLL_SECONDS,
        "options": {"queue": "callbacks", "expires": 30},
    },
}
# Callbacks have a queue of their own: a slow customer never holds up the drain's workers.
CELERY_TASK_ROUTES = {"callbacks.*": {"queue": "callbacks"}}

# `json`: one JSON object per line (mindo.logging), for Django, Celery and gunicorn alike.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
LOGGING = logging_config(
    log_format=LOG_FORMAT,
    level=env.str("LOG_LEVEL", default="INFO"),
    # What beat runs is housekeeping: Celery's line for each of its runs goes to DEBUG.
    routine_tasks=sorted({entry["task"] for entry in CELERY_BEAT_SCHEDULE.values()}),
)

# Prometheus metrics at /metrics (mindo.metrics). With several processes (gunicorn workers, Celery
# children) each writes its samples to files in this directory, emptied before they start, and
# /metrics adds them up; empty: one process, samples in memory.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
if not PROMETHEUS_MULTIPROC_DIR:
    # prometheus_client turns multiprocess mode on when the variable exists at all, even empty.
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
# When set, /metrics wants `Authorization: Bearer <METRICS_TOKEN>`; empty: open to anyone.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# The apps' gauges read from the database at each scrape (mindo.metrics).
METRICS_DATABASE_COLLECTORS = [
    "webhooks.metrics.webhook_lag_collect",
    "bulksend.metrics.pending_collect",
    "bulksend.metrics.quota_collect",
]
