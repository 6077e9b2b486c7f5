from __future__ import annotations

from django.urls import path

from bulksend import views

urlpatterns = [
    path("send/", views.SendMessageView.as_view(), name="send-message"),
    path("send-bulk/", views.SendBulkView.as_view(), name="send-bulk"),
    path("bulk-sends/", views.BulkSendListView.as_view(), name="bulk-send-list"),
    path(
        "bulk-sends/<str:bulk_send_id>/",
        views.BulkSendDetailView.as_view(),
        name="bulk-send-detail",
    ),
    path(
        "bulk-sends/<str:bulk_send_id>/cancel/",
        views.BulkSendCancelView.as_view(),
        name="bulk-send-cancel",
    ),
    path(
        "bulk-sends/<str:bulk_send_id>/pause/",
        views.BulkSendPauseView.as_view(),
        name="bulk-send-pause",
    ),
    path(
        "bulk-sends/<str:bulk_send_id>/resume/",
        views.BulkSendResumeView.as_view(),
        name="bulk-send-resume",
    ),
    path(
        "bulk-sends/<str:bulk_send_id>/messages/",
        views.BulkSendMessagesView.as_view(),
        name="bulk-send-messages",
    ),
    path(
        "bulk-sends/<str:bulk_send_id>/retry/",
        views.BulkSendRetryView.as_view(),
        name="bulk-send-retry",
    ),
    path(
        "bulk-sends/<str:bulk_send_id>/messages/export/",
        views.BulkSendMessagesExportView.as_view(),
        name="bulk-send-messages-export",
    ),
]
