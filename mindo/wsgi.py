from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")

django_application = get_wsgi_application()

# Imported after Django is set up: they use the settings and the ORM.
from mindo.checks import production_secrets_ensure  # noqa: E402
from webhooks.fast_path import with_webhook_fast_path  # noqa: E402

# Gunicorn refuses to start rather than serve production with a development secret.
production_secrets_ensure()

application = with_webhook_fast_path(django_application)
