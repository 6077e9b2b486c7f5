from __future__ import annotations

from typing import Any

from rest_framework import serializers

from callbacks.models import URL_MAX_LENGTH, DeliveryAttempt, EventType, WebhookEndpoint


class EndpointCreateSerializer(serializers.Serializer[Any]):
    url = serializers.URLField(max_length=URL_MAX_LENGTH)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=EventType.values), allow_empty=False
    )
    batch_events = serializers.BooleanField(required=False, default=False)


class EndpointSerializer(serializers.ModelSerializer[WebhookEndpoint]):
    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "events",
            "enabled",
            "batch_events",
            "created_at",
            "disabled_at",
            "disabled_reason",
        ]


class EndpointCreatedSerializer(EndpointSerializer):
    """The answer to registering: the only one that shows the secret."""

    secret = serializers.CharField()

    class Meta(EndpointSerializer.Meta):
        fields = [*EndpointSerializer.Meta.fields, "secret"]


class SecretRotatedSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    secret = serializers.CharField()
    previous_secret_expires_at = serializers.DateTimeField()


class DeliveryAttemptSerializer(serializers.ModelSerializer[DeliveryAttempt]):
    class Meta:
        model = DeliveryAttempt
        fields = [
            "id",
            "event_ids",
            "attempted_at",
            "outcome",
            "status_code",
            "latency_ms",
            "response_excerpt",
            "error",
        ]


class TestEventSerializer(serializers.Serializer[Any]):
    event_id = serializers.UUIDField()


class ReplayRequestSerializer(serializers.Serializer[Any]):
    event_id = serializers.UUIDField(required=False)
    since = serializers.DateTimeField(required=False)

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("event_id" in attrs) == ("since" in attrs):
            raise serializers.ValidationError(
                {"event_id": ["Indique event_id o since (uno de los dos)."]}
            )
        return attrs


class ReplayedSerializer(serializers.Serializer[Any]):
    replayed = serializers.IntegerField()
