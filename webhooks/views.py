"""Meta's webhook endpoint: the subscription handshake (GET) and signed notifications (POST).

A plain Django view, not DRF: it has no API key, must read the raw bytes to check their
signature before parsing anything, and is on the hot path (one POST per status).
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from mindo.meta_signature import signature_is_valid
from webhooks.processing import NotJson, webhook_process

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Hub-Signature-256"


@method_decorator(csrf_exempt, name="dispatch")
class MetaWebhookView(View):
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        mode = request.GET.get("hub.mode")
        token = request.GET.get("hub.verify_token", "")
        if mode == "subscribe" and token and token == settings.META_VERIFY_TOKEN:
            return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
        return JsonResponse({"error": "Verification failed"}, status=403)

    def post(self, request: HttpRequest) -> HttpResponse:
        body = request.body
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature_is_valid(body, signature, settings.META_APP_SECRET):
            return JsonResponse({"error": "Invalid signature"}, status=403)
        try:
            event = webhook_process(body)
        except NotJson as error:
            return JsonResponse({"error": f"Body is not JSON: {error}"}, status=400)
        return JsonResponse({"received": True, "event_id": event.pk})
