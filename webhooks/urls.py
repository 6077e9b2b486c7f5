from __future__ import annotations

from django.urls import path

from webhooks.views import MetaWebhookView

urlpatterns = [path("meta/", MetaWebhookView.as_view(), name="meta-webhook")]
