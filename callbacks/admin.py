from __future__ import annotations

from datetime import timedelta

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from callbacks.endpoints import endpoint_enable, endpoint_test_event, events_requeue
from callbacks.models import CallbackEvent, DeliveryAttempt, WebhookEndpoint
from callbacks.outbox import delivery_wake
from callbacks.signing import secret_generate


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin[WebhookEndpoint]):
    """Operators see why an endpoint was disabled, enable it again, send it a test event and
    replay what failed. Secrets stay hidden: the customer got them once."""

    list_display = [
        "url",
        "organization",
        "enabled",
        "events",
        "send_scoped",
        "failing_since",
        "disabled_reason",
    ]
    list_filter = ["enabled", "send_scoped"]
    search_fields = ["url", "organization__name"]
    # A send-scoped endpoint is a send's `callback_url`, made by the send, not by hand.
    readonly_fields = [
        "send_scoped",
        "created_at",
        "failing_since",
        "disabled_at",
        "disabled_reason",
    ]
    fields = [
        "organization",
        "url",
        "events",
        "enabled",
        "batch_events",
        *readonly_fields,
    ]
    actions = ["enable", "send_test_event", "replay_failed_last_3_days"]

    @admin.action(description="Enable the selected endpoints (their waiting events go out)")
    def enable(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_enable(endpoint)
        self.message_user(request, f"Enabled {queryset.count()} endpoints.")

    @admin.action(description="Send a test event to the selected endpoints")
    def send_test_event(self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]) -> None:
        for endpoint in queryset:
            endpoint_test_event(organization=endpoint.organization, endpoint_id=str(endpoint.pk))
        self.message_user(request, f"Queued a test event for {queryset.count()} endpoints.")

    @admin.action(description="Replay the failed events of the last 3 days")
    def replay_failed_last_3_days(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> None:
        since = timezone.now() - timedelta(days=3)
        replayed = events_requeue(
            CallbackEvent.objects.filter(
                endpoint__in=queryset, failed_at__isnull=False, created_at__gte=since
            )
        )
        transaction.on_commit(delivery_wake)
        self.message_user(request, f"Queued {replayed} failed events again.")

    def save_model(
        self, request: HttpRequest, obj: WebhookEndpoint, form: object, change: bool
    ) -> None:
        if not obj.secret:
            obj.secret = secret_generate()
        super().save_model(request, obj, form, change)


@admin.register(CallbackEvent)
class CallbackEventAdmin(admin.ModelAdmin[CallbackEvent]):
    list_display = ["created_at", "type", "endpoint", "attempts", "delivered_at", "failed_at"]
    list_filter = ["type", "created_at"]
    search_fields = ["=id", "endpoint__url"]
    show_full_result_count = False
    readonly_fields = [
        "id",
        "organization",
        "endpoint",
        "type",
        "body",
        "created_at",
        "next_attempt_at",
        "attempts",
        "delivered_at",
        "failed_at",
        "last_error",
    ]
    actions = ["replay"]

    @admin.action(description="Replay the selected events (deliver them again, same id)")
    def replay(self, request: HttpRequest, queryset: QuerySet[CallbackEvent]) -> None:
        replayed = events_requeue(queryset)
        transaction.on_commit(delivery_wake)
        self.message_user(request, f"Queued {replayed} events again.")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CallbackEvent | None = None) -> bool:
        return False


@admin.register(DeliveryAttempt)
class DeliveryAttemptAdmin(admin.ModelAdmin[DeliveryAttempt]):
    """The delivery log: each attempt's time, answer, latency and the answer's first bytes."""

    list_display = ["attempted_at", "endpoint", "outcome", "status_code", "latency_ms", "error"]
    list_filter = ["outcome"]
    search_fields = ["endpoint__url"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: DeliveryAttempt | None = None
    ) -> bool:
        return False
