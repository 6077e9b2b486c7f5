from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mindo.settings")

django_application = get_wsgi_application()

# Imported after Django is set up: it uses the ORM.
from webhooks.fast_path import with_webhook_fast_path  # noqa: E402

application = with_webhook_fast_path(django_application)
