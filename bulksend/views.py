"""The send endpoints: parse, call one function, serialize."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone
from django.utils.functional import cached_property
from django_filters.utils import translate_validation
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import generics, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from bulksend.business_accounts import business_accounts_body
from bulksend.creation import bulk_send_create
from bulksend.csv_recipients import CsvRecipients
from bulksend.csv_stream import StreamedCsvRecipients
from bulksend.dry_run import send_dry_run
from bulksend.export import messages_csv_response
from bulksend.filters import (
    PUBLIC_MESSAGE_STATUSES,
    BulkSendFilter,
    MessageFilter,
    sends_filter_of,
)
from bulksend.lifecycle import bulk_send_cancel_for_client, bulk_send_pause, bulk_send_unpause
from bulksend.models import BulkSend, BulkSendKind
from bulksend.parsers import (
    CSV_FORM_REQUEST,
    CSV_QUERY_PARAMETERS,
    CSV_REQUEST,
    RecipientsCsvParser,
    large_body_spool,
    send_bulk_request_data,
)
from bulksend.quota import with_queued_ahead
from bulksend.reads import (
    messages_page,
    messages_send,
    sends_count,
    sends_page,
    status_send,
)
from bulksend.retry import RetryScope, bulk_send_retry
from bulksend.serializers import (
    DRY_RUN,
    DRY_RUN_PARAMETER,
    EMPTY_RECIPIENTS,
    BulkSendDetailSerializer,
    BulkSendListItemSerializer,
    BulkSendMessageSerializer,
    BusinessAccountsSerializer,
    RetryAcceptedSerializer,
    RetryRequestSerializer,
    SendBulkAcceptedSerializer,
    SendBulkDryRunRequestSerializer,
    SendBulkDryRunSerializer,
    SendBulkRequestSerializer,
    SendMessageRequestSerializer,
    SendMessageResultSerializer,
    bulk_send_detail_body,
    bulk_send_list_item_body,
    bulk_send_message_body,
)
from bulksend.single import single_send
from messaging.models import Message
from mindo.errors import InvalidFieldsError
from mindo.exceptions import ContractError
from mindo.idempotency import idempotent
from mindo.models import ApiKeyScope
from mindo.pagination import PageByKeysPaginator, PageNumberPagination
from mindo.parsers import BoundedJSONParser
from mindo.renderers import OrjsonRenderer
from mindo.schema import DETAIL_BODY, ERROR_BODY, IDEMPOTENCY_KEY_PARAMETER
from mindo.tenancy import request_api_key, request_organization
from mindo.throttling import SEND_SCOPE, SINGLE_SCOPE


class SendBulkView(APIView):
    required_scope = ApiKeyScope.SEND
    throttle_scope = SEND_SCOPE
    # JSON as the contract has it; the recipients as CSV too (bulksend.csv_recipients).
    parser_classes = [BoundedJSONParser, RecipientsCsvParser, MultiPartParser]

    @extend_schema(
        operation_id="send_bulk",
        request={
            "application/json": SendBulkRequestSerializer,
            "text/csv": CSV_REQUEST,
            "multipart/form-data": CSV_FORM_REQUEST,
        },
        parameters=[IDEMPOTENCY_KEY_PARAMETER, *CSV_QUERY_PARAMETERS, DRY_RUN_PARAMETER],
        responses={
            200: OpenApiResponse(
                response=SendBulkDryRunSerializer,
                description="`?dry_run=true`: what the send would be, and a verdict for each "
                "recipient that would not be sent; nothing is created.",
            ),
            202: SendBulkAcceptedSerializer,
            400: OpenApiResponse(
                description="Field errors by name (and recipient index, or `line N` of a CSV)."
            ),
            401: ERROR_BODY,
            404: ERROR_BODY,
            409: ERROR_BODY,
            413: ERROR_BODY,
            429: ERROR_BODY,
        },
    )
    def post(self, request: Request) -> Response:
        large_body_spool(request)
        # A dry run creates nothing, an Idempotency-Key's record neither.
        if dry_run_requested(request):
            return send_bulk_dry_run(request)
        return self.accept(request)

    @idempotent(atomic=True)
    def accept(self, request: Request) -> Response:
        given, rows = send_bulk_request_data(request)
        serializer = SendBulkRequestSerializer(data=given, context={"request": request})
        valid = serializer.is_valid()
        if not valid or (rows is not None and rows.problems):
            errors = _by_line(serializer.errors if not valid else {}, rows)
            if errors == {"recipients": [EMPTY_RECIPIENTS]}:
                raise ContractError(EMPTY_RECIPIENTS, status.HTTP_400_BAD_REQUEST)
            return Response(errors, status=status.HTTP_400_BAD_REQUEST)
        data = serializer.validated_data
        api_key = request_api_key(request)
        try:
            accepted = bulk_send_create(
                organization=api_key.organization,
                created_by=api_key.user,
                phone_number_id=data["phone_number_id"],
                template_name=data["template_name"],
                language=data["language"],
                recipients=data["recipients"],
                send_at=data.get("send_at"),
                send_window=data.get("send_window"),
                callback_url=data.get("callback_url", ""),
            )
        except InvalidFieldsError as error:
            raise InvalidFieldsError(_by_line(error.errors, rows)) from None
        return Response(SendBulkAcceptedSerializer(accepted).data, status=status.HTTP_202_ACCEPTED)


def dry_run_requested(request: Request) -> bool:
    """`?dry_run=true` (or 1); false, 0 or absent: a real send; anything else is a 400."""
    value = request.query_params.get(DRY_RUN, "false").strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0", ""):
        return False
    raise InvalidFieldsError({DRY_RUN: ["Must be a valid boolean."]})


def send_bulk_dry_run(request: Request) -> Response:
    """send-bulk's checks and figures for this request, and every recipient's verdict
    (bulksend.dry_run); the send's own fields refused as send-bulk refuses them."""
    given, rows = send_bulk_request_data(request)
    serializer = SendBulkDryRunRequestSerializer(data=given, context={"request": request})
    if not serializer.is_valid():
        errors = _by_line(serializer.errors, rows)
        if errors == {"recipients": [EMPTY_RECIPIENTS]}:
            raise ContractError(EMPTY_RECIPIENTS, status.HTTP_400_BAD_REQUEST)
        return Response(errors, status=status.HTTP_400_BAD_REQUEST)
    data = serializer.validated_data
    result = send_dry_run(
        organization=request_organization(request),
        phone_number_id=data["phone_number_id"],
        template_name=data["template_name"],
        language=data["language"],
        recipients=data["recipients"],
        lines=rows.lines if rows is not None else None,
        line_problems=rows.problems if rows is not None else None,
    )
    return Response(SendBulkDryRunSerializer(result).data, status=status.HTTP_200_OK)


def _by_line(
    errors: Mapping[str, Any], rows: CsvRecipients | StreamedCsvRecipients | None
) -> dict[str, Any]:
    """Recipients' errors by CSV line when the recipients came as CSV, else as they are."""
    return dict(errors) if rows is None else rows.errors_by_line(errors)


def _send_key(bulk_send_id: str) -> uuid.UUID:
    """The id of a send in a URL; 404 for a malformed one, as for an unknown one."""
    try:
        return uuid.UUID(bulk_send_id)
    except ValueError:
        raise NotFound() from None


def _bulk_send_get(request: Request, bulk_send_id: str, sends: QuerySet[BulkSend]) -> BulkSend:
    """The caller's send among `sends` (which say what comes with it in the same query), or 404
    alike for a malformed id, an unknown one, another's or a single send's."""
    key = _send_key(bulk_send_id)
    organization_id = request_api_key(request).organization_id
    # One row at most (its key): no ORDER BY, which `first()` would add and Django would compile
    # on every read (the model's ordering), for nothing.
    found = list(
        sends.filter(organization_id=organization_id, pk=key, kind=BulkSendKind.BULK).order_by()[:1]
    )
    if not found:
        raise NotFound()
    return found[0]


def _read_send_get(
    request: Request, bulk_send_id: str, read: Callable[[int, uuid.UUID], BulkSend | None]
) -> BulkSend:
    """`_bulk_send_get` through one of bulksend.reads' compiled statements."""
    bulk_send = read(request_api_key(request).organization_id, _send_key(bulk_send_id))
    if bulk_send is None:
        raise NotFound()
    return bulk_send


class BulkSendDetailView(APIView):
    required_scope = ApiKeyScope.READ

    @extend_schema(responses={200: BulkSendDetailSerializer, 401: ERROR_BODY, 404: DETAIL_BODY})
    def get(self, request: Request, bulk_send_id: str) -> Response:
        bulk_send = _read_send_get(request, bulk_send_id, status_send)
        return Response(bulk_send_detail_body(bulk_send))


class BulkSendControlView(APIView):
    """POST bulk-sends/{id}/<action>/: one lifecycle change, answered with the send's status
    body (as GET bulk-sends/{id}/ reads it once the change is done). `control_view` makes one
    per change."""

    required_scope = ApiKeyScope.SEND
    change: Callable[..., object]

    def post(self, request: Request, bulk_send_id: str) -> Response:
        bulk_send = _bulk_send_get(request, bulk_send_id, BulkSend.objects.only("pk"))
        type(self).change(bulk_send=bulk_send)
        sends = with_queued_ahead(BulkSend.objects.with_api_relations())
        return Response(BulkSendDetailSerializer(sends.get(pk=bulk_send.pk)).data)


def control_view(
    name: str, change: Callable[..., object], *, summary: str, description: str
) -> type[BulkSendControlView]:
    """The view of one lifecycle change, `change(bulk_send=...)`, documented as
    `bulk_send_<name>`."""
    view = type(f"BulkSend{name.title()}View", (BulkSendControlView,), {"change": change})
    schema = extend_schema(
        operation_id=f"bulk_send_{name}",
        summary=summary,
        description=description,
        request=None,
        responses={
            200: BulkSendDetailSerializer,
            401: ERROR_BODY,
            403: ERROR_BODY,
            404: DETAIL_BODY,
            409: ERROR_BODY,
            503: ERROR_BODY,
        },
    )
    return extend_schema_view(post=schema)(view)


BulkSendCancelView = control_view(
    "cancel",
    bulk_send_cancel_for_client,
    summary="Cancel a send",
    description="Every message not yet handed to Meta becomes `cancelled` and the send "
    "`CANCELLED`, with `status_reason`. Answers once no worker can send any more of it: nothing "
    "goes out after the answer (a message already with Meta settles as Meta says). Again on a "
    "cancelled send: the same answer; on a finished one: 409.",
)
BulkSendPauseView = control_view(
    "pause",
    bulk_send_pause,
    summary="Pause a send",
    description="No worker sends for the send until it is resumed (nothing goes out after the "
    "answer); its pending messages wait and its status stays `QUEUED` or `PROCESSING`, with "
    '`status_reason` `"paused"` and `paused_at`. Again on a paused send: the same answer; on a '
    "finished, cancelled or halted one: 409.",
)
BulkSendResumeView = control_view(
    "resume",
    bulk_send_unpause,
    summary="Resume a send",
    description="A paused send goes on (its estimate counts from now); one Meta halted (an "
    "invalid token, a blocked account, a template paused) restarts once the cause is fixed, or "
    "409 with what still holds it. A running send: the same answer, unchanged. A finished or "
    "cancelled one: 409.",
)


class CountedPagination(PageNumberPagination):
    """Takes the total from the view's `known_count` instead of running COUNT(*) over a send's
    messages, and a page's rows from its `page_reader(bottom, top)` (bulksend.reads' compiled
    statements); else reads a page of the queryset through its keys (deep pages of a
    100,000-message send skip index entries, not rows)."""

    def paginate_queryset(
        self, queryset: Any, request: Request, view: Any = None
    ) -> list[Any] | None:
        known_count = getattr(view, "known_count", None)
        reader = getattr(view, "page_reader", None)

        class KnownCountPaginator(PageByKeysPaginator):
            @cached_property
            def count(self) -> int:
                return known_count if known_count is not None else super().count

            def page_rows(self, bottom: int, top: int) -> Any:
                return reader(bottom, top) if reader is not None else super().page_rows(bottom, top)

        self.django_paginator_class = KnownCountPaginator
        return super().paginate_queryset(queryset, request, view)


class BulkSendListView(generics.ListAPIView[BulkSend]):
    required_scope = ApiKeyScope.READ
    serializer_class = BulkSendListItemSerializer
    filterset_class = BulkSendFilter
    pagination_class = CountedPagination

    def get_queryset(self) -> QuerySet[BulkSend]:
        # For the schema only: the list is read by bulksend.reads' compiled statements.
        return BulkSend.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # The serializer's body, built without it (bulksend.serializers' plain bodies).
        organization_id = request_api_key(request).organization_id
        filters = sends_filter_of(request.query_params)
        self.known_count = sends_count(organization_id, filters)

        def page_rows(bottom: int, top: int) -> list[BulkSend]:
            return sends_page(organization_id, filters, bottom, top)

        self.page_reader = page_rows
        page = self.paginate_queryset([])
        assert page is not None, "the list is always paginated"
        return self.get_paginated_response([bulk_send_list_item_body(s) for s in page])


class BulkSendMessagesView(generics.ListAPIView[Message]):
    required_scope = ApiKeyScope.READ
    serializer_class = BulkSendMessageSerializer
    filterset_class = MessageFilter
    pagination_class = CountedPagination
    known_count: int | None = None
    page_reader: Callable[[int, int], list[Message]] | None = None

    def get_queryset(self) -> QuerySet[Message]:
        # For the schema only: a page is read by bulksend.reads' compiled statements.
        return Message.objects.none()

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # The serializer's body, built without it (bulksend.serializers' plain bodies).
        bulk_send = _read_send_get(request, self.kwargs["bulk_send_id"], messages_send)
        status_filter = _messages_status_filter(request)
        # The counters answer for the filter, with no COUNT(*) over the send's messages.
        count = self.known_count = bulk_send.message_count(status_filter)

        def page_rows(bottom: int, top: int) -> list[Message]:
            return messages_page(bulk_send, status_filter, bottom, top, count)

        self.page_reader = page_rows
        page = self.paginate_queryset([])
        assert page is not None, "the list is always paginated"
        variables = bulk_send.template.variables
        cancelled = bulk_send.is_cancelled
        return self.get_paginated_response(
            [bulk_send_message_body(m, variables, send_cancelled=cancelled) for m in page]
        )


def _messages_status_filter(request: Request) -> str | None:
    """`?status=` of a messages page, None when absent or empty (as django-filter reads it);
    MessageFilter's 400 when it is not a status a client sees."""
    status_filter = request.query_params.get("status") or None
    if status_filter is None or status_filter in PUBLIC_MESSAGE_STATUSES:
        return status_filter
    query = MessageFilter(request.query_params, queryset=Message.objects.none())
    if not query.is_valid():
        raise translate_validation(query.errors)
    return status_filter


class SendMessageView(APIView):
    """One template message, sent within the request (bulksend.single)."""

    required_scope = ApiKeyScope.SEND
    throttle_scope = SINGLE_SCOPE

    @extend_schema(
        operation_id="send_message",
        request=SendMessageRequestSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            200: SendMessageResultSerializer,
            202: OpenApiResponse(
                SendMessageResultSerializer,
                description="Meta may have taken the message but its answer never came: "
                "`status` is `pending`, and Meta's webhook settles it.",
            ),
            400: OpenApiResponse(
                description="Field errors by name, or Meta's refusal of the message "
                "(`error` and `meta_error`)."
            ),
            401: ERROR_BODY,
            404: ERROR_BODY,
            409: ERROR_BODY,
            429: ERROR_BODY,
            502: OpenApiResponse(description="Meta failed (`error` and `meta_error`)."),
            503: ERROR_BODY,
        },
    )
    @idempotent(atomic=False)
    def post(self, request: Request) -> Response:
        serializer = SendMessageRequestSerializer(data=request.data, context={"request": request})
        if not serializer.is_valid():
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        data = serializer.validated_data
        api_key = request_api_key(request)
        result = single_send(
            organization=api_key.organization,
            created_by=api_key.user,
            phone_number_id=data["phone_number_id"],
            template_name=data["template_name"],
            language=data["language"],
            recipient=data["recipient"],
            callback_url=data.get("callback_url", ""),
        )
        answer = status.HTTP_200_OK if result.settled else status.HTTP_202_ACCEPTED
        return Response(SendMessageResultSerializer(result).data, status=answer)


class BusinessAccountsView(APIView):
    required_scope = ApiKeyScope.ACCOUNT
    renderer_classes = [OrjsonRenderer]

    @extend_schema(
        operation_id="business_accounts",
        responses={200: BusinessAccountsSerializer, 401: ERROR_BODY, 403: ERROR_BODY},
    )
    def get(self, request: Request) -> Response:
        """The key's company, its business accounts and numbers (with the portfolio's 24 h
        quota) and their APPROVED templates with typed variables."""
        return Response(business_accounts_body(request_api_key(request), now=timezone.now()))


class BulkSendMessagesExportView(APIView):
    """A send's messages as one CSV file, streamed (bulksend.export)."""

    required_scope = ApiKeyScope.READ

    @extend_schema(
        operation_id="bulk_send_messages_export",
        summary="Export a send's messages as CSV",
        description=(
            "Every message of the send (or those with `status`), oldest first, as CSV with a "
            "header row: `message_id, phone, status, wamid, variables, button_variables, "
            "attempts, created_at, sent_at, delivered_at, read_at, failed_at, error_code, "
            "error_message, pricing_category, pricing_type, user_id` (`user_id`: a message to a "
            "business-scoped user id, its `phone` empty). Variables are JSON objects; "
            "moments are UTC, ISO 8601. Streamed: a million rows take seconds and no memory on "
            "the server."
        ),
        parameters=[
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                OpenApiParameter.QUERY,
                enum=[str(status) for status in PUBLIC_MESSAGE_STATUSES],
                description="Only messages a client sees with this status.",
            )
        ],
        responses={
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The CSV file."),
            400: OpenApiResponse(description="`status` is not a message status."),
            401: ERROR_BODY,
            403: ERROR_BODY,
            404: DETAIL_BODY,
        },
    )
    def get(self, request: Request, bulk_send_id: str) -> StreamingHttpResponse:
        bulk_send = _bulk_send_get(request, bulk_send_id, BulkSend.objects.only("pk", "status"))
        query = MessageFilter(request.query_params, queryset=Message.objects.none())
        if not query.is_valid():
            raise ValidationError(query.errors)
        return messages_csv_response(
            bulk_send.pk,
            query.form.cleaned_data.get("status") or None,
            send_cancelled=bulk_send.is_cancelled,
        )


class BulkSendRetryView(APIView):
    """A new send of the recipients a send did not reach (bulksend.retry)."""

    required_scope = ApiKeyScope.SEND
    throttle_scope = SEND_SCOPE

    @extend_schema(
        operation_id="bulk_send_retry",
        summary="Retry a send's failed or unsent recipients",
        description=(
            "A new send (its `retry_of` is this send; this send's status body lists it in "
            "`retries`) of the recipients `scope` chooses, with the variables they had, through "
            "the same quota and pacing as send-bulk. A recipient whose message reached `sent` in "
            "this send or any send of its retry chain is never taken, nor one with a message "
            "still pending anywhere in the chain. `pending` and `all_unsent` are a 409 while "
            "the send may still send its pending messages (QUEUED or PROCESSING); a send Meta "
            "halted is cancelled first. Asked again while its retry is unfinished, the answer is "
            "that retry (200), not a new one."
        ),
        request=RetryRequestSerializer,
        parameters=[IDEMPOTENCY_KEY_PARAMETER],
        responses={
            200: OpenApiResponse(
                response=RetryAcceptedSerializer, description="The unfinished retry made before."
            ),
            202: RetryAcceptedSerializer,
            400: OpenApiResponse(description="Field errors by name."),
            401: ERROR_BODY,
            403: ERROR_BODY,
            404: DETAIL_BODY,
            409: OpenApiResponse(
                response=ERROR_BODY,
                description="Nobody to retry; the send may still send what `scope` would take; "
                "or the Idempotency-Key was used with another request.",
            ),
            429: ERROR_BODY,
        },
    )
    @idempotent(atomic=True)
    def post(self, request: Request, bulk_send_id: str) -> Response:
        bulk_send = _bulk_send_get(request, bulk_send_id, BulkSend.objects.all())
        serializer = RetryRequestSerializer(data=request.data)
        if not serializer.is_valid():
            return Response(serializer.errors, status=status.HTTP_400_BAD_REQUEST)
        data = serializer.validated_data
        outcome = bulk_send_retry(
            bulk_send=bulk_send,
            created_by=request_api_key(request).user,
            scope=RetryScope(data["scope"]),
            error_codes=data.get("error_codes"),
        )
        answer = status.HTTP_202_ACCEPTED if outcome.created else status.HTTP_200_OK
        return Response(RetryAcceptedSerializer(outcome.accepted).data, status=answer)
