"""Admin: messages with their timelines, the raw inbox (replay), API clients. Evidence is read-only."""

from __future__ import annotations

from typing import cast

from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from rangefilter.filters import DateRangeFilter

from receipts.actions import ingest
from receipts.addresses import normalize_address
from receipts.admin.export import CsvExport
from receipts.admin.scale import LargeTableAdmin
from receipts.logging import mask
from receipts.models import (
    REPLAYABLE_STATES,
    ApiClient,
    Message,
    MessageEvent,
    ReceiptEvent,
    ReviewResolution,
)
from receipts.status import Channel

MESSAGE_CSV = [
    "id",
    "provider",
    "provider_message_id",
    "channel",
    "to",
    "status",
    "status_at",
    "assumed",
    "failure_category",
    "provider_code",
    "needs_review",
    "review_reason",
    "campaign__name",
    "crm_record_id",
    "priority",
    "read_count",
    "click_count",
    "created_at",
    "updated_at",
]


class ExactSearch(admin.ModelAdmin):
    """Search that recognises what was typed and looks it up where an index is: an address (a phone number in any
    format, an email) by its normal form, anything else as a provider message id, CRM record id, conversation id or
    correlation id, exactly. ``icontains`` over every column was a sequential scan per column at 10 million rows.
    ``message_path`` is how the listed model reaches its message ("" for messages themselves)."""

    message_path = ""
    search_fields = ["to", "provider_message_id", "crm_record_id", "conversation_id", "correlation_id"]
    search_help_text = (
        "An exact phone number (any format), email, provider message id, CRM record id, conversation or correlation id."
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term:
            return queryset, False
        found = Q(provider_message_id=term) | Q(crm_record_id=term) | Q(conversation_id=term) | Q(correlation_id=term)
        for channel in (Channel.SMS, Channel.EMAIL):
            try:
                found |= Q(to=normalize_address(channel, term))
            except ValueError:
                continue
        if self.message_path:
            return queryset.filter(**{f"{self.message_path}__in": Message.objects.filter(found).values("pk")}), False
        return queryset.filter(found), False


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
    readonly_fields = cast(list[str], fields)  # all plain names (see receipts.admin.suppressions.FieldGroups)
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
    readonly_fields = cast(list[str], fields)  # all plain names (see receipts.admin.suppressions.FieldGroups)
    verbose_name_plural = "review history (who settled what, when and why)"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ExactSearch, CsvExport, LargeTableAdmin, ReadOnlyAdmin):
    csv_fields = MESSAGE_CSV
    csv_raw = frozenset({"to"})
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
class MessageEventAdmin(ExactSearch, CsvExport, LargeTableAdmin, ReadOnlyAdmin):
    message_path = "message"
    csv_fields = [
        "id",
        "message_id",
        "message__provider",
        "message__provider_message_id",
        "source",
        "provider_code",
        "status",
        "engagement",
        "failure_category",
        "applied",
        "unmapped",
        "description",
        "occurred_at",
        "received_at",
    ]
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
    search_fields = ["message__to"]  # any: ExactSearch decides what a term means
    list_select_related = ["message"]
    show_full_result_count = False

    @admin.display(description="message")
    def message_link(self, obj: MessageEvent) -> str:
        return format_html('<a href="../message/{}/change/">{}</a>', obj.message_id, obj.message.provider_message_id)


@admin.register(ReceiptEvent)
class ReceiptEventAdmin(LargeTableAdmin, ReadOnlyAdmin):
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
    search_fields = ["=ref"]
    search_help_text = "An exact reference: the provider message id a receipt names."
    readonly_fields = [
        "provider",
        "source",
        "state",
        "dedupe_key",
        "content_type",
        "remote_addr",
        "ref",
        "masked_error",
        "attempts",
        "received_at",
        "next_attempt_at",
        "orphan_until",
        "processed_at",
        "masked_body",
    ]
    exclude = ["body", "error"]
    actions = ["replay"]
    show_full_result_count = False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Viewing the detail page needs "change"; every field is read-only.
        return request.user.is_staff

    @admin.display(description="error")
    def short_error(self, obj: ReceiptEvent) -> str:
        return mask(obj.error)[:80]

    @admin.display(description="error (addresses masked)")
    def masked_error(self, obj: ReceiptEvent) -> str:
        # Rows stored before errors were masked at write time may still quote an address.
        return mask(obj.error)

    @admin.display(description="body (addresses masked)")
    def masked_body(self, obj: ReceiptEvent) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>", mask(obj.body))

    @admin.action(description="Replay selected dead, rejected or unmatched events")
    def replay(self, request: HttpRequest, queryset: QuerySet[ReceiptEvent]) -> None:
        count = ingest.replay_events(queryset)
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
        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} client(s) revoked.", messages.SUCCESS)
