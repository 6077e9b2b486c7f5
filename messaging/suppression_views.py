"""`/api/v1/suppressions/`: the organization's suppression list, read, added to, removed from.

Keys are camelCase, as the other `/api/v1/` endpoints outside the bulk pages (contact-lookup,
business-info). A phone is read in any spelling the contact lookup accepts and kept in E.164.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from messaging.models import Suppression, SuppressionSource
from messaging.suppression import suppression_add, suppression_remove
from mindo.errors import NotFoundError, field_error
from mindo.models import ApiKeyScope
from mindo.pagination import PageNumberPagination
from mindo.phones import phone_normalize
from mindo.schema import ERROR_BODY
from mindo.tenancy import request_organization

PHONE_INVALID = "Enter a valid phone number in international format, e.g. +5491112345678."
NOT_LISTED = "Numero {phone} no encontrado en la lista de supresion"


class SuppressionSerializer(serializers.ModelSerializer[Suppression]):
    createdAt = serializers.DateTimeField(source="created_at", read_only=True)

    class Meta:
        model = Suppression
        fields = ["phone", "source", "reason", "createdAt"]
        read_only_fields = ["source"]


class SuppressionCreateSerializer(serializers.Serializer[Any]):
    phone = serializers.CharField(max_length=40)
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")

    def validate_phone(self, value: str) -> str:
        phone = phone_normalize(value)
        if phone is None:
            raise serializers.ValidationError(PHONE_INVALID)
        return phone


def _phone_or_400(value: str) -> str:
    phone = phone_normalize(value)
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
            "`phone` (any spelling) filters to one."
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
