from __future__ import annotations

from django.urls import path

from messaging import views

urlpatterns = [
    # `path`: a wamid is base64 and may hold `/`, `+` and `=`, plain or URL-encoded.
    path("messages/<path:wamid>/", views.MessageByWamidView.as_view(), name="message-by-wamid"),
]
