from __future__ import annotations

from django.urls import path

from callbacks import views

urlpatterns = [
    path("", views.EndpointListView.as_view(), name="webhook-endpoints"),
    path("<str:endpoint_id>/", views.EndpointDetailView.as_view(), name="webhook-endpoint"),
    path(
        "<str:endpoint_id>/deliveries/",
        views.EndpointDeliveriesView.as_view(),
        name="webhook-endpoint-deliveries",
    ),
    path(
        "<str:endpoint_id>/rotate-secret/",
        views.EndpointRotateSecretView.as_view(),
        name="webhook-endpoint-rotate-secret",
    ),
    path("<str:endpoint_id>/test/", views.EndpointTestView.as_view(), name="webhook-endpoint-test"),
    path(
        "<str:endpoint_id>/replay/",
        views.EndpointReplayView.as_view(),
        name="webhook-endpoint-replay",
    ),
]
