"""Meta's webhook endpoint: the subscription handshake (GET) and signed notifications (POST).

A plain Django view, not DRF: it has no API key and must read the raw bytes to check their
signature before parsing anything. In production gunicorn serves the POST through the WSGI fast
path (webhooks.fast_path); both answer with webhooks.receiving.webhook_answer.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from webhooks.processing import webhook_events_apply_pending
from webhooks.receiving import webhook_answer


class AppliedAfterAnswer(JsonResponse):
    """Applies the stored bodies once the server has sent the answer: the WSGI server calls
    `close()` after the last byte, so Meta never waits for the applying."""

    def close(self) -> None:
        super().close()
        webhook_events_apply_pending()


@method_decorator(csrf_exempt, name="dispatch")
class MetaWebhookView(View):
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        mode = request.GET.get("hub.mode")
        token = request.GET.get("hub.verify_token", "")
        if mode == "subscribe" and token and token == settings.META_VERIFY_TOKEN:
            return HttpResponse(request.GET.get("hub.challenge", ""), content_type="text/plain")
        return JsonResponse({"error": "Verification failed"}, status=403)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # The same answer as the fast path's, read from the same WSGI environ: one limit, one
        # error contract, chunked bodies included.
        received = webhook_answer(request.META)
        response_class = AppliedAfterAnswer if received.stored else JsonResponse
        return response_class(received.body, status=received.status)
