"""`/api/v1/webhook-endpoints/`: an organization's callback endpoints, their delivery log, a test
event, a secret's rotation and replays. Thin: parse, call one function of `endpoints`, serialize.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from callbacks import endpoints
from callbacks.models import DeliveryAttempt
from callbacks.serializers import (
    DeliveryAttemptSerializer,
    EndpointCreatedSerializer,
    EndpointCreateSerializer,
    EndpointSerializer,
    ReplayedSerializer,
    ReplayRequestSerializer,
    SecretRotatedSerializer,
    TestEventSerializer,
)
from mindo.models import ApiKeyScope
from mindo.pagination import PageNumberPagination
from mindo.schema import ERROR_BODY
from mindo.tenancy import request_organization


class EndpointListView(APIView):
    required_scope = ApiKeyScope.WEBHOOKS

    @extend_schema(
        operation_id="webhook_endpoints_list", responses={200: EndpointSerializer(many=True)}
    )
    def get(self, request: Request) -> Response:
        rows = endpoints.endpoints_of(request_organization(request))
        return Response(EndpointSerializer(rows, many=True).data)

    @extend_schema(
        operation_id="webhook_endpoints_create",
        request=EndpointCreateSerializer,
        responses={201: EndpointCreatedSerializer, 400: ERROR_BODY, 401: ERROR_BODY},
    )
    def post(self, request: Request) -> Response:
        incoming = EndpointCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        endpoint = endpoints.endpoint_create(
            organization=request_organization(request), **incoming.validated_data
        )
        return Response(EndpointCreatedSerializer(endpoint).data, status=status.HTTP_201_CREATED)


class EndpointDetailView(APIView):
    required_scope = ApiKeyScope.WEBHOOKS

    @extend_schema(
        operation_id="webhook_endpoints_retrieve",
        responses={200: EndpointSerializer, 404: ERROR_BODY},
    )
    def get(self, request: Request, endpoint_id: str) -> Response:
        endpoint = endpoints.endpoint_get(
            organization=request_organization(request), endpoint_id=endpoint_id
        )
        return Response(EndpointSerializer(endpoint).data)

    @extend_schema(operation_id="webhook_endpoints_delete", responses={204: None, 404: ERROR_BODY})
    def delete(self, request: Request, endpoint_id: str) -> Response:
        endpoints.endpoint_delete(
            organization=request_organization(request), endpoint_id=endpoint_id
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class EndpointDeliveriesView(generics.ListAPIView[DeliveryAttempt]):
    """The endpoint's delivery log, newest attempt first."""

    required_scope = ApiKeyScope.WEBHOOKS
    serializer_class = DeliveryAttemptSerializer
    pagination_class = PageNumberPagination

    def get_queryset(self) -> QuerySet[DeliveryAttempt]:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no request
            return DeliveryAttempt.objects.none()
        endpoint = endpoints.endpoint_get(
            organization=request_organization(self.request),
            endpoint_id=self.kwargs["endpoint_id"],
        )
        return DeliveryAttempt.objects.filter(endpoint=endpoint).order_by("-id")

    @extend_schema(operation_id="webhook_endpoints_deliveries")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)


class EndpointRotateSecretView(APIView):
    required_scope = ApiKeyScope.WEBHOOKS

    @extend_schema(
        operation_id="webhook_endpoints_rotate_secret",
        request=None,
        responses={200: SecretRotatedSerializer, 404: ERROR_BODY},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        endpoint = endpoints.endpoint_rotate_secret(
            organization=request_organization(request), endpoint_id=endpoint_id
        )
        return Response(SecretRotatedSerializer(endpoint).data)


class EndpointTestView(APIView):
    required_scope = ApiKeyScope.WEBHOOKS

    @extend_schema(
        operation_id="webhook_endpoints_test",
        request=None,
        responses={202: TestEventSerializer, 404: ERROR_BODY},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        event = endpoints.endpoint_test_event(
            organization=request_organization(request), endpoint_id=endpoint_id
        )
        return Response({"event_id": str(event.pk)}, status=status.HTTP_202_ACCEPTED)


class EndpointReplayView(APIView):
    required_scope = ApiKeyScope.WEBHOOKS

    @extend_schema(
        operation_id="webhook_endpoints_replay",
        request=ReplayRequestSerializer,
        responses={202: ReplayedSerializer, 400: ERROR_BODY, 404: ERROR_BODY},
    )
    def post(self, request: Request, endpoint_id: str) -> Response:
        incoming = ReplayRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        replayed = endpoints.events_replay(
            organization=request_organization(request),
            endpoint_id=endpoint_id,
            event_id=incoming.validated_data.get("event_id"),
            since=incoming.validated_data.get("since"),
        )
        return Response({"replayed": replayed}, status=status.HTTP_202_ACCEPTED)
