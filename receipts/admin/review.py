"""Admin: the review queue, where operators settle the deliveries nobody can be sure of
(``receipts.actions.review``)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.timesince import timesince
from django.utils.timezone import localtime
from rangefilter.filters import DateRangeFilter

from receipts.actions import review
from receipts.admin.export import CsvExport
from receipts.admin.messages import MESSAGE_CSV, ExactSearch, MessageColumns, MessagePage, ReadOnlyAdmin
from receipts.admin.scale import LargeTableAdmin
from receipts.models import REVIEW_ORDER, MessageEvent, ReviewQueue, ReviewResolution
from receipts.status import FailureCategory


class SettleForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False)


class MarkFailedForm(SettleForm):
    category = forms.ChoiceField(choices=FailureCategory.choices)


class ResolveForm(SettleForm):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="Why is this settled?")


@admin.register(ReviewQueue)
class ReviewQueueAdmin(ExactSearch, CsvExport, LargeTableAdmin, MessageColumns, MessagePage, ReadOnlyAdmin):
    """The deliveries nobody can be sure of, and the operator's decisions on them."""

    csv_fields = MESSAGE_CSV
    csv_raw = frozenset({"to"})

    list_display = [
        "id",
        "priority",
        "review_reason",
        "age",
        "sent_via",
        "provider_message_id",
        "campaign",
        "status_badge",
        "last_receipt",
    ]
    list_filter = ["review_reason", "provider", "channel", "campaign", "status", ("created_at", DateRangeFilter)]
    list_select_related = ["campaign"]
    ordering = [REVIEW_ORDER.asc(), "created_at"]  # type: ignore[list-item]  # critical first, then by age
    actions = ["confirm_delivered", "mark_failed", "poll_again", "resolve"]
    change_form_template = "admin/receipts/reviewqueue/change_form.html"
    show_full_result_count = False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ReviewQueue]:
        latest = MessageEvent.objects.filter(message=OuterRef("pk")).order_by("-received_at", "-id")
        return (
            super()
            .get_queryset(request)
            .filter(needs_review=True)
            .annotate(
                last_code=Subquery(latest.values("provider_code")[:1]),
                last_at=Subquery(latest.values("received_at")[:1]),
            )
        )

    # The page of a message under review is read-only, like every message page: the settle actions below (each
    # with its audit entry) are the only way to change anything. Operators who may settle may see the queue.
    def has_view_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return self.has_settle_permission(request) or request.user.has_perm("receipts.view_message")

    def has_settle_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("receipts.change_message")

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: ReviewQueue) -> str:
        return timesince(obj.created_at)

    @admin.display(description="last receipt (received)", ordering="last_at")
    def last_receipt(self, obj: ReviewQueue) -> str:
        at = getattr(obj, "last_at", None)
        return format_html(
            '{}<span class="quiet">{}</span>',
            getattr(obj, "last_code", "") or "-",
            date_format(localtime(at), "DATETIME_FORMAT") if at else "",
        )

    def _settle(self, request: HttpRequest, queryset: QuerySet, action: str, form_class: type | None, title: str):
        """Apply a decision; actions that need a category or a note ask for it on an intermediate page."""
        form = None
        back = back_to(request)
        if form_class is not None:
            form = form_class(request.POST if "apply" in request.POST else None)
            if not form.is_bound or not form.is_valid():
                context = {
                    **self.admin_site.each_context(request),
                    "title": title,
                    "queryset": queryset,
                    "messages_count": queryset.count(),
                    "form": form,
                    "action": action,
                    "opts": self.model._meta,
                    "back": back,
                }
                return TemplateResponse(request, "admin/receipts/reviewqueue/settle.html", context)
        data = form.cleaned_data if form else {}
        settlement = review.Settlement(action, note=data.get("note", ""), category=data.get("category", ""))
        count = review.settle(list(queryset.values_list("pk", flat=True)), settlement, request.user)
        self.message_user(request, f"{count} message(s): {ReviewResolution.Action(action).label}.", messages.SUCCESS)
        return HttpResponseRedirect(back) if back else None  # None: back to the queue

    @admin.action(description="Confirm delivered", permissions=["settle"])
    def confirm_delivered(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "confirm_delivered", SettleForm, "Confirm delivered")

    @admin.action(description="Mark failed (with a category)", permissions=["settle"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "mark_failed", MarkFailedForm, "Mark failed")

    @admin.action(description="Poll again now", permissions=["settle"])
    def poll_again(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "poll_again", None, "Poll again now")

    @admin.action(description="Resolve with a note", permissions=["settle"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "resolve", ResolveForm, "Resolve with a note")


def back_to(request: HttpRequest) -> str:
    """Where a decision made from a message's page goes back to (``back`` in the form): that page, on this site
    only; empty for the queue's own bulk actions."""
    back = request.POST.get("back", "")
    safe = url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return back if back.startswith("/") and safe else ""
