"""Admin for contact lists and the contact form: adding contacts by hand and importing a CSV."""

from __future__ import annotations

import io
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from messaging.contact_import import contacts_import
from messaging.models import Contact, ContactList, ContactSource
from mindo.phones import phone_normalize

# Errors listed on the page after an import; the rest are counted.
ERRORS_SHOWN = 50


class ContactForm(forms.ModelForm):
    """A contact by hand: any spelling of the phone is stored as E.164, the list must be one of
    the contact's organization, and a new contact's source is `admin`."""

    class Meta:
        model = Contact
        fields = ["organization", "contact_list", "phone", "name", "email", "source"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["contact_list"].required = True
        self.fields["source"].initial = ContactSource.ADMIN

    def clean_phone(self) -> str:
        phone = phone_normalize(self.cleaned_data["phone"])
        if phone is None:
            raise forms.ValidationError("Enter a phone number, e.g. +5492235961983.")
        return phone

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        organization, contact_list = cleaned.get("organization"), cleaned.get("contact_list")
        if organization and contact_list and contact_list.organization_id != organization.pk:
            self.add_error("contact_list", "Pick a list of the contact's organization.")
        return cleaned


class ContactImportForm(forms.Form):
    file = forms.FileField(
        help_text="CSV, UTF-8, with a header row: phone (required), full_name, email."
    )


@admin.register(ContactList)
class ContactListAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "is_default", "contact_count", "created_at"]
    list_filter = ["organization"]
    list_select_related = ["organization"]
    search_fields = ["name"]
    readonly_fields = ["is_default", "created_at"]
    actions = ["import_contacts"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContactList]:
        return super().get_queryset(request).annotate(contact_total=Count("contacts"))

    @admin.display(description="contacts", ordering="contact_total")
    def contact_count(self, contact_list: ContactList) -> int:
        return int(getattr(contact_list, "contact_total", 0))

    @admin.action(description="Import contacts from a CSV file into the selected list")
    def import_contacts(
        self, request: HttpRequest, queryset: QuerySet[ContactList]
    ) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one list to import into.", messages.ERROR)
            return None
        contact_list = queryset.get()
        return HttpResponseRedirect(
            reverse("admin:messaging_contactlist_import", args=[contact_list.pk])
        )

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "<int:list_id>/import/",
                self.admin_site.admin_view(self.import_view),
                name="messaging_contactlist_import",
            )
        ]
        return own + super().get_urls()

    def import_view(self, request: HttpRequest, list_id: int) -> HttpResponse:
        contact_list = get_object_or_404(ContactList, pk=list_id)
        if not self.has_change_permission(request, contact_list):
            return HttpResponse(status=403)
        form = ContactImportForm(request.POST or None, request.FILES or None)
        report = None
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            lines = io.TextIOWrapper(upload.file, encoding="utf-8-sig", newline="")
            try:
                report = contacts_import(contact_list=contact_list, lines=lines)
            except UnicodeDecodeError:
                form.add_error("file", "The file is not UTF-8 text.")
            else:
                level = messages.WARNING if report.errors else messages.SUCCESS
                self.message_user(request, f"{contact_list.name}: {report.summary()}", level)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Import contacts into {contact_list.name}",
            "contact_list": contact_list,
            "form": form,
            "report": report,
            "errors_shown": report.errors[:ERRORS_SHOWN] if report else [],
        }
        return TemplateResponse(request, "admin/messaging/contactlist/import.html", context)
