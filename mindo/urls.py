from __future__ import annotations

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from mindo.views import BusinessInfoView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/meta-templates/", include("bulksend.urls")),
    path("api/v1/meta-templates/", include("messaging.urls")),
    path("api/v1/", include("messaging.contact_urls")),
    path("api/v1/business-info/", BusinessInfoView.as_view(), name="business-info"),
    path("api/v1/", include("bulksend.account_urls")),
    path("api/v1/webhook-endpoints/", include("callbacks.urls")),
    path("webhooks/", include("webhooks.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

handler404 = "mindo.views.not_found"
handler500 = "mindo.views.server_error"
