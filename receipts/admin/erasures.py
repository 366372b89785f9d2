"""Admin: erasure on request. An operator types the address; everything held about it goes, and the list keeps
one audit line per erasure, which names the address by its hash only."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from receipts.actions.retention import erase_address
from receipts.logging import mask
from receipts.models import Erasure


class EraseForm(forms.Form):
    address = forms.CharField(max_length=320, help_text="A phone number in any format, or an email address.")
    channel = forms.ChoiceField(
        choices=[("", "from the address (an @ means email)"), ("sms", "sms"), ("email", "email")], required=False
    )
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="The request: why, ticket.")
    confirm = forms.BooleanField(
        label="Erase for good",
        help_text="Its messages with their timelines, the raw bodies that carry it and its soft bounces are deleted. "
        "Suppressions stay: lift them first if the request covers them.",
    )


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    list_display = ["id", "created_at", "channel", "short_digest", "messages", "inbox_rows", "soft_bounces", "by"]
    list_filter = ["channel"]
    search_fields = ["=requested_by"]
    readonly_fields = [f.name for f in Erasure._meta.fields]

    @admin.display(description="address (sha256)")
    def short_digest(self, obj: Erasure) -> str:
        return f"{obj.address_sha256[:16]}…"

    @admin.display(description="requested by", ordering="requested_by")
    def by(self, obj: Erasure) -> str:
        return obj.requested_by

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:receipts_erasure_changelist"))
        form = EraseForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                erasure = erase_address(
                    data["address"],
                    requested_by=f"operator:{request.user.get_username()}",
                    note=data["note"],
                    channel=data["channel"] or None,
                )
            except ValueError as exc:
                form.add_error("address", mask(str(exc)))
            else:
                self.message_user(
                    request,
                    f"Erased: {erasure.messages} message(s), {erasure.inbox_rows} raw inbox row(s), "
                    f"{erasure.soft_bounces} soft bounce(s).",
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:receipts_erasure_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "Erase an address on request",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/receipts/erasure/erase.html", context)
