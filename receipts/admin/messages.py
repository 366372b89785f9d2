from __future__ import annotations

from typing import cast

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html
from django.utils.timesince import timesince
from rangefilter.filters import DateRangeFilter

from receipts import actions, review
from receipts.logging import mask
from receipts.models import (
    REPLAYABLE_STATES,
    ApiClient,
    Message,
    MessageEvent,
    ReceiptEvent,
    ReviewQueue,
    ReviewResolution,
)
from receipts.status import FailureCategory
from receipts.suppression_admin import EscalationAdmin, RetryAdmin, SuppressionAdmin  # noqa: F401 - registers them


class ReadOnlyAdmin(admin.ModelAdmin):
    """Receipts are evidence: operators read them and act through actions, never edit them."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class TimelineInline(admin.TabularInline):
    model = MessageEvent
    extra = 0
    can_delete = False
    ordering = ["occurred_at", "id"]
    fields = [
        "occurred_at",
        "received_at",
        "source",
        "provider_code",
        "status",
        "engagement",
        "failure_category",
        "retryable",
        "applied",
        "unmapped",
        "description",
        "details",
        "raw",
    ]
    readonly_fields = cast(list[str], fields)  # all plain names (see receipts.suppression_admin.FieldGroups)
    verbose_name = "receipt"
    verbose_name_plural = "timeline (every receipt, raw and normalised)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class ResolutionInline(admin.TabularInline):
    model = ReviewResolution
    extra = 0
    can_delete = False
    fields = ["created_at", "user", "action", "review_reason", "failure_category", "note"]
    readonly_fields = cast(list[str], fields)  # all plain names (see receipts.suppression_admin.FieldGroups)
    verbose_name_plural = "review history (who settled what, when and why)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "provider",
        "provider_message_id",
        "channel",
        "to",
        "status",
        "assumed",
        "needs_review",
        "review_reason",
        "failure_category",
        "campaign",
        "crm_record_id",
        "updated_at",
    ]
    list_filter = [
        "status",
        "channel",
        "provider",
        "campaign",
        "needs_review",
        "review_reason",
        "failure_category",
        "assumed",
        "priority",
        ("created_at", DateRangeFilter),
        ("updated_at", DateRangeFilter),
    ]
    search_fields = ["to", "provider_message_id", "crm_record_id", "conversation_id", "correlation_id"]
    list_select_related = ["campaign"]
    show_full_result_count = False
    inlines = [ResolutionInline, TimelineInline]
    fieldsets = [
        (None, {"fields": ["provider", "channel", "provider_message_id", "to", "campaign", "priority"]}),
        (
            "Status",
            {
                "fields": [
                    "status",
                    "status_at",
                    "assumed",
                    "failure_category",
                    "retryable",
                    "provider_code",
                    "needs_review",
                    "review_reason",
                ]
            },
        ),
        (
            "Engagement",
            {"fields": ["read_count", "first_read_at", "click_count", "complained_at", "unsubscribed_at"]},
        ),
        ("CRM", {"fields": ["crm_record_id", "conversation_id", "correlation_id", "metadata"]}),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(MessageEvent)
class MessageEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "message_link",
        "source",
        "provider_code",
        "status",
        "engagement",
        "failure_category",
        "applied",
        "unmapped",
        "occurred_at",
        "received_at",
    ]
    list_filter = [
        "source",
        "status",
        "engagement",
        "failure_category",
        "applied",
        "unmapped",
        "message__provider",
        "message__channel",
        "message__campaign",
        "message__needs_review",
        ("occurred_at", DateRangeFilter),
        ("received_at", DateRangeFilter),
    ]
    search_fields = ["message__to", "message__provider_message_id", "message__crm_record_id", "provider_code"]
    list_select_related = ["message"]
    show_full_result_count = False

    @admin.display(description="message")
    def message_link(self, obj: MessageEvent) -> str:
        return format_html('<a href="../message/{}/change/">{}</a>', obj.message_id, obj.message.provider_message_id)


@admin.register(ReceiptEvent)
class ReceiptEventAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "provider",
        "source",
        "state",
        "attempts",
        "ref",
        "short_error",
        "received_at",
        "processed_at",
    ]
    list_filter = ["state", "provider", "source", ("received_at", DateRangeFilter)]
    search_fields = ["ref", "dedupe_key", "message_events__message__provider_message_id"]
    readonly_fields = [
        "provider",
        "source",
        "state",
        "dedupe_key",
        "content_type",
        "remote_addr",
        "ref",
        "error",
        "attempts",
        "received_at",
        "next_attempt_at",
        "orphan_until",
        "processed_at",
        "masked_body",
    ]
    exclude = ["body"]
    actions = ["replay"]
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Viewing the detail page needs "change"; every field is read-only.
        return request.user.is_staff

    @admin.display(description="error")
    def short_error(self, obj: ReceiptEvent) -> str:
        return obj.error[:80]

    @admin.display(description="body (addresses masked)")
    def masked_body(self, obj: ReceiptEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", mask(obj.body))

    @admin.action(description="Replay selected dead, rejected or unmatched events")
    def replay(self, request: HttpRequest, queryset: QuerySet[ReceiptEvent]) -> None:
        count = actions.replay_events(queryset)
        skipped = queryset.count() - count
        self.message_user(request, f"{count} event(s) queued again.", messages.SUCCESS)
        if skipped > 0:
            states = ", ".join(REPLAYABLE_STATES)
            self.message_user(request, f"{skipped} skipped: only {states} events replay.", messages.WARNING)


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ["name", "token_prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["token_prefix", "token_hash", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued by `manage.py create_api_client`, which shows the token once

    @admin.action(description="Revoke selected clients")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        from django.utils import timezone

        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} client(s) revoked.", messages.SUCCESS)


class SettleForm(forms.Form):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), required=False)


class MarkFailedForm(SettleForm):
    category = forms.ChoiceField(choices=FailureCategory.choices)


class ResolveForm(SettleForm):
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), help_text="Why is this settled?")


@admin.register(ReviewQueue)
class ReviewQueueAdmin(ReadOnlyAdmin):
    """The deliveries nobody can be sure of, and the operator's decisions on them."""

    list_display = [
        "id",
        "review_reason",
        "age",
        "provider",
        "provider_message_id",
        "campaign",
        "status",
        "assumed",
        "last_receipt",
        "last_receipt_at",
    ]
    list_filter = ["review_reason", "provider", "channel", "campaign", "status", ("created_at", DateRangeFilter)]
    search_fields = ["to", "provider_message_id", "crm_record_id"]
    list_select_related = ["campaign"]
    ordering = ["created_at"]
    actions = ["confirm_delivered", "mark_failed", "poll_again", "resolve"]
    inlines = [ResolutionInline, TimelineInline]
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

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.has_perm("receipts.change_message")

    @admin.display(description="age", ordering="created_at")
    def age(self, obj: ReviewQueue) -> str:
        return timesince(obj.created_at)

    @admin.display(description="last receipt")
    def last_receipt(self, obj: ReviewQueue) -> str:
        return getattr(obj, "last_code", "") or "-"

    @admin.display(description="last receipt at", ordering="last_at")
    def last_receipt_at(self, obj: ReviewQueue) -> object:
        return getattr(obj, "last_at", None)

    def _settle(self, request: HttpRequest, queryset: QuerySet, action: str, form_class: type | None, title: str):
        """Apply a decision; actions that need a category or a note ask for it on an intermediate page."""
        form = None
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
                }
                return TemplateResponse(request, "admin/receipts/reviewqueue/settle.html", context)
        data = form.cleaned_data if form else {}
        settlement = review.Settlement(action, note=data.get("note", ""), category=data.get("category", ""))
        count = review.settle(list(queryset.values_list("pk", flat=True)), settlement, request.user)
        self.message_user(request, f"{count} message(s): {ReviewResolution.Action(action).label}.", messages.SUCCESS)
        return None

    @admin.action(description="Confirm delivered", permissions=["change"])
    def confirm_delivered(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "confirm_delivered", SettleForm, "Confirm delivered")

    @admin.action(description="Mark failed (with a category)", permissions=["change"])
    def mark_failed(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "mark_failed", MarkFailedForm, "Mark failed")

    @admin.action(description="Poll again now", permissions=["change"])
    def poll_again(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "poll_again", None, "Poll again now")

    @admin.action(description="Resolve with a note", permissions=["change"])
    def resolve(self, request: HttpRequest, queryset: QuerySet) -> object:
        return self._settle(request, queryset, "resolve", ResolveForm, "Resolve with a note")
