from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.contacts import contact_lookup
from messaging.lookup import message_get_by_wamid
from messaging.serializers import ContactLookupSerializer, MessageLookupSerializer
from mindo.errors import field_error
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


PHONE_REQUIRED = "This field is required."
PHONE_BLANK = "This field may not be blank."
PHONE_ERRORS = serializers.ListField(child=serializers.CharField())


class ContactLookupView(APIView):
    required_scope = ApiKeyScope.CONTACTS

    @extend_schema(
        operation_id="contact_lookup",
        summary="Look up contact",
        description=(
            "The contact with this phone in any of the organization's lists, whether they ever "
            "replied and their 24 h session window. Always 200: `found` says whether the contact "
            "exists; an unparsable phone is not found."
        ),
        parameters=[
            OpenApiParameter(
                "phone",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=True,
                description=(
                    "E.164 with or without `+` (send `+` as `%2B`), Argentina's `15`, spaces or "
                    "dashes: `5492235961983`, `+54 223 15-596-1983`."
                ),
            )
        ],
        responses={
            200: ContactLookupSerializer,
            400: inline_serializer(
                "PhoneRequired",
                fields={"phone": serializers.ListField(child=serializers.CharField())},
            ),
            401: ERROR_BODY,
            403: ERROR_BODY,
        },
    )
    def get(self, request: Request) -> Response:
        phone = request.query_params.get("phone")
        if phone is None:
            raise field_error("phone", PHONE_REQUIRED)
        if not phone.strip():
            raise field_error("phone", PHONE_BLANK)
        lookup = contact_lookup(organization_id=request_organization(request).pk, phone=phone)
        return Response(ContactLookupSerializer(lookup).data)
