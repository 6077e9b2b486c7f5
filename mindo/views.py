"""The business-info endpoint, and the JSON answers of Django's 404 and 500 handlers under /api/."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from django.views.defaults import server_error as django_server_error
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from mindo.exceptions import NOT_FOUND_BODY, SERVER_ERROR_BODY
from mindo.middleware import API_PREFIX, api_error_response
from mindo.models import ApiKeyScope, Organization
from mindo.serializers import BusinessInfoSerializer
from mindo.tenancy import request_organization


class BusinessInfoView(APIView):
    required_scope = ApiKeyScope.ACCOUNT

    @extend_schema(operation_id="business_info", responses={200: BusinessInfoSerializer})
    def get(self, request: Request) -> Response:
        # Read afresh: the key's organization may come from the key cache, up to
        # API_KEY_CACHE_SECONDS old, and an edit in the admin should show at once.
        organization = Organization.objects.get(pk=request_organization(request).pk)
        return Response(BusinessInfoSerializer(organization).data)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """API clients get the contract's JSON 404 for any unknown path, never an HTML page."""
    if request.path.startswith(API_PREFIX):
        return JsonResponse(NOT_FOUND_BODY, status=404)
    return page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """JSON for API clients when an error escapes everything else (a middleware's, say)."""
    if not request.path.startswith(API_PREFIX):
        return django_server_error(request)
    # Django calls this while handling the exception, so it is still at hand; Django logs it.
    error = sys.exc_info()[1]
    if error is None:
        return JsonResponse(SERVER_ERROR_BODY, status=500)
    return api_error_response(request, error, log=False)
