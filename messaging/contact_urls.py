from __future__ import annotations

from django.urls import path

from messaging import views

urlpatterns = [
    path("contact-lookup/", views.ContactLookupView.as_view(), name="contact-lookup"),
]
