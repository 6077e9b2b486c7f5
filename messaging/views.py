from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.lookup import message_get_by_wamid
from messaging.serializers import MessageLookupSerializer
from mindo.models import ApiKeyScope
from mindo.schema import ERROR_BODY
from mindo.tenancy import request_organization


class MessageByWamidView(APIView):
    required_scope = ApiKeyScope.READ

    @extend_schema(
        operation_id="message_by_wamid",
        responses={200: MessageLookupSerializer, 401: ERROR_BODY, 403: ERROR_BODY, 404: ERROR_BODY},
    )
    def get(self, request: Request, wamid: str) -> Response:
        lookup = message_get_by_wamid(organization=request_organization(request), wamid=wamid)
        return Response(MessageLookupSerializer(lookup).data)
