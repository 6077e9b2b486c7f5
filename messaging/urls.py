from __future__ import annotations

from django.urls import path, register_converter

from messaging import views


class AnyTextConverter:
    """Any text, `/` and line breaks included (Django's `path` stops at a newline), so every wamid
    a client asks for reaches the view and gets the contract's 404 when nobody has it."""

    regex = r"[\s\S]*"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyTextConverter, "any_text")

urlpatterns = [
    # A wamid is base64 and may hold `/`, `+` and `=`, plain or URL-encoded.
    path("messages/<any_text:wamid>/", views.MessageByWamidView.as_view(), name="message-by-wamid"),
]
