from __future__ import annotations

from django.urls import path

from messaging import suppression_views, views

urlpatterns = [
    path("contact-lookup/", views.ContactLookupView.as_view(), name="contact-lookup"),
    path("suppressions/", suppression_views.SuppressionListView.as_view(), name="suppressions"),
    path(
        "suppressions/<str:phone>/",
        suppression_views.SuppressionDetailView.as_view(),
        name="suppression",
    ),
]
