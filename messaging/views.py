from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.contacts import contact_lookup, contact_lookup_by_user_id
from messaging.lookup import message_get_by_wamid
from messaging.models import Suppression, SuppressionSource
from messaging.serializers import (
    PHONE_INVALID,
    ContactLookupSerializer,
    MessageLookupSerializer,
    SuppressionCreateSerializer,
    SuppressionSerializer,
    contact_lookup_body,
    message_lookup_body,
)
from messaging.suppression import listed_recipient, suppression_add, suppression_remove
from mindo.errors import NotFoundError, field_error
from mindo.models import ApiKeyScope
from mindo.pagination import PageNumberPagination
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
        return Response(message_lookup_body(lookup))


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
            "exists; an unparsable phone is not found. A contact may be looked up by Meta's "
            "business-scoped `user_id` instead of `phone`."
        ),
        parameters=[
            OpenApiParameter(
                "phone",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=False,
                description=(
                    "Required unless `user_id` is given. E.164 with or without `+` (send `+` as "
                    "`%2B`), Argentina's `15`, spaces or dashes: `5492235961983`, "
                    "`+54 223 15-596-1983`."
                ),
            ),
            OpenApiParameter(
                "user_id",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                required=False,
                description=(
                    "Instead of `phone`: Meta's business-scoped user id, exactly as its webhooks "
                    "write it (`US.13491208655302741918`), for a contact who hides their number. "
                    "The contact then carries `userId` (and `phone` null when only the id is "
                    "known)."
                ),
            ),
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
        organization_id = request_organization(request).pk
        phone, user_id = request.query_params.get("phone"), request.query_params.get("user_id")
        if phone is None and user_id is not None:
            if not user_id.strip():
                raise field_error("user_id", PHONE_BLANK)
            lookup = contact_lookup_by_user_id(organization_id=organization_id, user_id=user_id)
            return Response(contact_lookup_body(lookup))
        if phone is None:
            raise field_error("phone", PHONE_REQUIRED)
        if not phone.strip():
            raise field_error("phone", PHONE_BLANK)
        lookup = contact_lookup(organization_id=organization_id, phone=phone)
        return Response(contact_lookup_body(lookup))


# `/api/v1/suppressions/`: the organization's suppression list. Keys are camelCase, as the other
# `/api/v1/` endpoints outside the bulk pages; a phone is read in any spelling the contact
# lookup accepts and kept in E.164.

NOT_LISTED = "Numero {phone} no encontrado en la lista de supresion"


def _phone_or_400(value: str) -> str:
    phone = listed_recipient(value)
    if phone is None:
        raise field_error("phone", PHONE_INVALID)
    return phone


class SuppressionListView(generics.ListAPIView[Suppression]):
    required_scope = ApiKeyScope.CONTACTS
    serializer_class = SuppressionSerializer
    pagination_class = PageNumberPagination

    def get_queryset(self) -> QuerySet[Suppression]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no request
            return Suppression.objects.none()
        listed = Suppression.objects.filter(organization=request_organization(self.request))
        phone = self.request.query_params.get("phone")
        if phone:
            listed = listed.filter(phone=_phone_or_400(phone))
        return listed.order_by("-created_at", "-id")

    @extend_schema(
        operation_id="suppressions_list",
        summary="List suppressed phones",
        description=(
            "Phones that get no MARKETING template from the organization, newest first; "
            "`phone` (any spelling) filters to one. An entry's `phone` may be a business-scoped "
            "user id instead (`AR.1502576394655843`: Meta named the user by it); every "
            "`phone` here, in the body or the path, takes one too."
        ),
        parameters=[OpenApiParameter("phone", OpenApiTypes.STR, OpenApiParameter.QUERY)],
        responses={200: SuppressionSerializer(many=True), 401: ERROR_BODY, 403: ERROR_BODY},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        operation_id="suppressions_add",
        summary="Add a phone to the suppression list",
        description=(
            "201 with the new entry; 200 with the entry as it was when the phone is listed already."
        ),
        request=SuppressionCreateSerializer,
        responses={
            200: SuppressionSerializer,
            201: SuppressionSerializer,
            400: OpenApiTypes.OBJECT,
            401: ERROR_BODY,
            403: ERROR_BODY,
        },
    )
    def post(self, request: Request) -> Response:
        asked = SuppressionCreateSerializer(data=request.data)
        asked.is_valid(raise_exception=True)
        entry, created = suppression_add(
            organization=request_organization(request),
            phone=asked.validated_data["phone"],
            source=SuppressionSource.API,
            reason=asked.validated_data["reason"],
        )
        return Response(
            SuppressionSerializer(entry).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class SuppressionDetailView(APIView):
    required_scope = ApiKeyScope.CONTACTS

    @extend_schema(
        operation_id="suppressions_remove",
        summary="Remove a phone from the suppression list",
        responses={
            204: None,
            400: OpenApiTypes.OBJECT,
            401: ERROR_BODY,
            403: ERROR_BODY,
            404: ERROR_BODY,
        },
    )
    def delete(self, request: Request, phone: str) -> Response:
        normalized = _phone_or_400(phone)
        if not suppression_remove(organization=request_organization(request), phone=normalized):
            raise NotFoundError(NOT_LISTED.format(phone=normalized))
        return Response(status=status.HTTP_204_NO_CONTENT)
