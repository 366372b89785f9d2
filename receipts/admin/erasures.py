"""Admin: erasure on request. An operator types the address; everything held about it goes, and the list keeps
one audit line per erasure, which names the address by its hash only."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from receipts.actions.retention import allow_again, erase_address
from receipts.logging import mask
from receipts.models import Erasure


class AddressForm(forms.Form):
    """An address typed by an operator, with its channel, a note and a confirmation (the subclass words them)."""

    address = forms.CharField(max_length=320, help_text="A phone number in any format, or an email address.")
    channel = forms.ChoiceField(
        choices=[("", "from the address (an @ means email)"), ("sms", "sms"), ("email", "email")], required=False
    )
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="The request: why, ticket.")
    confirm = forms.BooleanField()


class EraseForm(AddressForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["confirm"].label = "Erase for good"
        self.fields["confirm"].help_text = (
            "Its messages, contacts, suppressions and everything else that holds it are deleted; sends to it keep "
            "only their state. The address stays blocked until it is allowed again."
        )


class AllowForm(AddressForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["address"].help_text = "The erased address, typed again: only its hash is kept."
        self.fields["note"].help_text = "Why: the person asked."
        self.fields["confirm"].label = "Allow it again"
        self.fields[
            "confirm"
        ].help_text = "Sends to it and contacts with it are accepted again; the suppressions it had are restored."


@admin.register(Erasure)
class ErasureAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "created_at",
        "channel",
        "short_digest",
        "messages",
        "inbox_rows",
        "soft_bounces",
        "suppressions",
        "by",
        "lifted_at",
    ]
    list_filter = ["channel", ("lifted_at", admin.EmptyFieldListFilter)]
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

    def get_urls(self) -> list[Any]:
        allow = path("allow/", self.admin_site.admin_view(self.allow_view), name="receipts_erasure_allow")
        return [allow, *super().get_urls()]

    def allow_view(self, request: HttpRequest) -> HttpResponse:
        """Lift an erasure's block on purpose: the operator types the address again."""
        if not self.has_add_permission(request):
            raise PermissionDenied

        def allow(data: dict[str, Any], by: str) -> str:
            lifted = allow_again(data["address"], by=by, note=data["note"], channel=data["channel"] or None)
            if not lifted:
                raise ValueError("No erasure blocks this address.")
            restored = sorted({r for erasure in lifted for r in erasure.suppressed_for})
            return f"Allowed again; suppressions restored: {', '.join(restored) or 'none'}."

        return self.address_page(
            request,
            AllowForm,
            allow,
            title="Allow an erased address again",
            intro="An erased address stays blocked: nothing is sent to it and no contact is added with it. Allow it "
            "again only when the person asks to be contacted; the suppressions it had (an opt-out, a bounce) come "
            "back with it.",
            submit="Allow again",
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self.has_add_permission(request):
            return HttpResponseRedirect(reverse("admin:receipts_erasure_changelist"))

        def erase(data: dict[str, Any], by: str) -> str:
            erasure = erase_address(
                data["address"], requested_by=by, note=data["note"], channel=data["channel"] or None
            )
            others = "".join(f", {rows} {label}" for label, rows in erasure.others.items())
            return (
                f"Erased: {erasure.messages} message(s), {erasure.inbox_rows} raw inbox row(s), "
                f"{erasure.soft_bounces} soft bounce(s), {erasure.suppressions} suppression(s){others}."
            )

        return self.address_page(request, EraseForm, erase, title="Erase an address on request")

    def address_page(
        self,
        request: HttpRequest,
        form_class: type[forms.Form],
        act: Callable[[dict[str, Any], str], str],
        **page: str,
    ) -> HttpResponse:
        """A form about one typed address: on a valid POST, ``act`` (data, who) says what it did, or raises
        ValueError for the form to show (masked: it may quote the address)."""
        form = form_class(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                done = act(form.cleaned_data, f"operator:{request.user.get_username()}")
            except ValueError as exc:
                form.add_error("address", mask(str(exc)))
            else:
                self.message_user(request, done, messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:receipts_erasure_changelist"))
        context = {**self.admin_site.each_context(request), **page, "form": form, "opts": self.model._meta}
        return TemplateResponse(request, "admin/receipts/erasure/erase.html", context)
