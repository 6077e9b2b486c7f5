from __future__ import annotations

from django.urls import path

from bulksend import views

# Outside /meta-templates/, as the contract places it.
urlpatterns = [
    path("business-accounts/", views.BusinessAccountsView.as_view(), name="business-accounts"),
]
