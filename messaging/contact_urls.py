from __future__ import annotations

from django.urls import path

from messaging import views

urlpatterns = [
    path("contact-lookup/", views.ContactLookupView.as_view(), name="contact-lookup"),
    path("suppressions/", views.SuppressionListView.as_view(), name="suppressions"),
    path(
        "suppressions/<str:phone>/",
        views.SuppressionDetailView.as_view(),
        name="suppression",
    ),
]
