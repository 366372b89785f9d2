"""Admin: messages with their timelines, the raw inbox (replay), API clients. Evidence is read-only."""

from __future__ import annotations

import json
from typing import Any, cast
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from rangefilter.filters import DateRangeFilter

from receipts.actions import ingest, process
from receipts.admin.export import CsvExport
from receipts.admin.scale import AddressSearch, LargeTableAdmin
from receipts.logging import mask
from receipts.models import (
    REPLAYABLE_STATES,
    ApiClient,
    InboxState,
    Message,
    MessageEvent,
    ReceiptEvent,
    ReviewResolution,
)
from receipts.status import FINAL_STATUSES, Channel, ReviewReason

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


class ExactSearch(AddressSearch):
    """AddressSearch over a message: its address, provider message id, CRM record id, conversation id or correlation
    id. ``message_path`` is how the listed model reaches its message ("" for messages themselves)."""

    message_path = ""
    exact_fields = ("provider_message_id", "crm_record_id", "conversation_id", "correlation_id")
    address_fields = (("to", Channel.SMS), ("to", Channel.EMAIL))
    search_fields = ["to", "provider_message_id", "crm_record_id", "conversation_id", "correlation_id"]
    search_help_text = (
        "An exact phone number (any format), email, provider message id, CRM record id, conversation or correlation id."
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        if not term or not self.message_path:
            return super().get_search_results(request, queryset, search_term)
        messages_found = Message.objects.filter(self.matching(term)).values("pk")
        return queryset.filter(**{f"{self.message_path}__in": messages_found}), False


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


class MessagePage(admin.ModelAdmin):
    """The page of one message: its fields grouped, the status as a badge and the receipt that set it, why it
    needs review in words, the settle actions, its timeline with the raw receipts folded, links to the inbox rows,
    the address's suppressions and the CRM changes. Read-only."""

    change_form_template = "admin/receipts/message/change_form.html"
    inlines = [ResolutionInline]
    fieldsets = [
        (None, {"fields": ["provider", "channel", "provider_message_id", "to", "campaign", "priority"]}),
        (
            # The status itself heads the page (its own box, with the timeline under it): one "Status" header.
            "Failure and review",
            {
                "fields": [
                    "status_at",
                    "assumed_text",
                    "failure_category",
                    "retryable_text",
                    "provider_code",
                    "review_text",
                ]
            },
        ),
        (
            "Engagement",
            {
                "fields": [
                    "read_count",
                    "first_read_at",
                    "click_count",
                    "complained_at",
                    "unsubscribed_at",
                    "confirmed_at",
                    "confirmation",
                ]
            },
        ),
        ("CRM", {"fields": ["crm_record_id", "conversation_id", "correlation_id", "metadata"]}),
        ("Times", {"fields": ["created_at", "updated_at"]}),
    ]

    @admin.display(description="status", ordering="status")
    def status_badge(self, obj: Message) -> str:
        return status_badge(obj)

    @admin.display(description="assumed")
    def assumed_text(self, obj: Message) -> str:
        return "yes: no final receipt in time" if obj.assumed else "no"

    @admin.display(description="retryable")
    def retryable_text(self, obj: Message) -> str:
        return "yes" if obj.retryable else "no"

    @admin.display(description="review")
    def review_text(self, obj: Message) -> str:
        return f"needed: {obj.get_review_reason_display()}" if obj.needs_review else "not needed"

    def get_inline_instances(self, request: HttpRequest, obj: Message | None = None) -> list:
        # The review history only where there is one: no empty tables.
        if obj is None or not obj.resolutions.exists():
            return []
        return super().get_inline_instances(request, obj)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        message = self.get_object(request, object_id) if object_id.isascii() and object_id.isdigit() else None
        extra = {**(extra_context or {})}
        if message is not None:
            extra["summary"] = message_summary(request, message)
        return super().change_view(request, object_id, form_url, extra)


class MessageColumns(admin.ModelAdmin):
    """Columns of the message lists that fit 1280 px: what belongs together shares a cell, the second thing in
    small type under the first (the provider and its channel, the address and its CRM record, the status and why)."""

    @admin.display(description="provider", ordering="provider")
    def sent_via(self, obj: Message) -> str:
        return format_html('{}<span class="quiet">{}</span>', obj.get_provider_display(), obj.channel)

    @admin.display(description="to (CRM record)", ordering="to")
    def recipient(self, obj: Message) -> str:
        return format_html('{}<span class="quiet">{}</span>', obj.to, obj.crm_record_id or "")

    @admin.display(description="status", ordering="status")
    def status_detail(self, obj: Message) -> str:
        return format_html(
            '{}<span class="quiet">{}</span><span class="quiet">{}</span>',
            status_badge(obj),
            obj.failure_category,
            f"review: {obj.get_review_reason_display()}" if obj.needs_review else "",
        )


@admin.register(Message)
class MessageAdmin(ExactSearch, CsvExport, LargeTableAdmin, MessageColumns, MessagePage, ReadOnlyAdmin):
    csv_fields = MESSAGE_CSV
    csv_raw = frozenset({"to"})
    list_display = ["id", "provider_message_id", "sent_via", "recipient", "status_detail", "campaign", "updated_at"]
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
    date_ordered = ("created_at", "updated_at")  # both indexed


STATUS_COLOURS = {
    "delivered": "#2b83ba",
    "failed": "#d7191c",
    "rejected": "#d7191c",
    "bounced": "#d7191c",
    "expired": "#b2182b",
}
SETTLE_ACTIONS = [
    ("confirm_delivered", "Confirm delivered"),
    ("mark_failed", "Mark failed…"),
    ("poll_again", "Poll again now"),
    ("resolve", "Resolve with a note…"),
]
TIMELINE_LIMIT = 500


def status_badge(message: Message) -> str:
    colour = "#74add1" if message.assumed else STATUS_COLOURS.get(message.status, "#e08214")
    text = f"{message.status} (assumed)" if message.assumed else message.status
    return format_html(
        '<span class="badge" style="background:{};color:#fff;padding:1px 8px;border-radius:10px">{}</span>',
        colour,
        text,
    )


def message_summary(request: HttpRequest, message: Message) -> dict[str, Any]:
    """What the message page says above its fields: the status and the receipt that set it, why it needs review
    (a conflict in words), the settle actions, its timeline with the raw receipts folded, and links."""
    timeline = list(message.events.order_by("occurred_at", "id")[:TIMELINE_LIMIT])
    for entry in timeline:
        raw = json.dumps(entry.raw, indent=2, ensure_ascii=False, sort_keys=True) if entry.raw else ""
        entry.pretty = mask(raw)  # type: ignore[attr-defined]  # shown by the template
    applied = [e for e in timeline if e.applied and e.status]
    set_by = max(applied, key=lambda e: (e.occurred_at or e.received_at, e.pk)) if applied else None
    inbox_ids = ",".join(str(pk) for pk in sorted({e.receipt_event_id for e in timeline if e.receipt_event_id}))
    return {
        "colour": "#74add1" if message.assumed else STATUS_COLOURS.get(message.status, "#e08214"),
        "timeline": timeline,
        "set_by": set_by,
        "explanation": explain(message, timeline),
        "can_settle": request.user.has_perm("receipts.change_message"),
        "actions": SETTLE_ACTIONS,
        "links": {
            "inbox": list_url("receipts_receiptevent", id__in=inbox_ids or "0"),
            "suppressions": list_url("receipts_suppression", q=message.to),
            "crm": list_url("crm_sync_outboxmessage", message_id__exact=message.pk),
        },
    }


def list_url(model: str, **query: Any) -> str:
    return f"{reverse(f'admin:{model}_changelist')}?{urlencode(query)}"


def explain(message: Message, timeline: list[MessageEvent]) -> str:
    """Why a message needs review, in words."""
    if not message.needs_review:
        return ""
    if message.review_reason == ReviewReason.CONFLICTING_RECEIPTS:
        finals = [e for e in timeline if e.status in FINAL_STATUSES]
        said = "; ".join(
            f"{e.status} ({e.provider_code or 'no code'}) at {e.occurred_at or e.received_at:%Y-%m-%d %H:%M:%S %Z}"
            for e in finals
        )
        return (
            f"The provider sent final receipts that disagree: {said}. The one with the latest provider time holds "
            f"({message.status}). Confirm it, or mark the message failed, once you know which is true."
        )
    if message.review_reason == ReviewReason.NO_RECEIPT:
        return (
            "No final receipt came in time after sending, so delivery is assumed. Poll the provider again, or "
            "confirm or mark failed once you know."
        )
    if message.review_reason == ReviewReason.PROVIDER_UNKNOWN:
        return "The provider does not know this message id. Check it was sent with this id, then settle it."
    return f"Needs review: {message.get_review_reason_display()}."


@admin.register(MessageEvent)
class MessageEventAdmin(ExactSearch, CsvExport, LargeTableAdmin, ReadOnlyAdmin):
    message_path = "message"
    ordering = ["-id"]  # the model's (occurred_at, id) has no index: a sort of 25 million rows per page
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
        # No filters through the message (provider, channel, campaign): a join into 10 million messages for every
        # page of 25 million entries; filter those on Messages, whose page shows each timeline.
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

    def has_replay_permission(self, request: HttpRequest) -> bool:
        # Not has_change_permission: every staff user passes that, to open the read-only detail page.
        return request.user.has_perm("receipts.change_receiptevent")

    @admin.action(description="Replay selected dead, rejected or unmatched events", permissions=["replay"])
    def replay(self, request: HttpRequest, queryset: QuerySet[ReceiptEvent]) -> TemplateResponse:
        """Queue them again, process up to REPLAY_INLINE of them right away, and say what became of each."""
        selected = list(queryset.values_list("pk", flat=True))
        replayed = ingest.replay_events(queryset)
        process.process_these(replayed[:REPLAY_INLINE])
        outcomes = ReceiptEvent.objects.filter(pk__in=replayed[:REPLAY_INLINE]).order_by("id")
        context = {
            **self.admin_site.each_context(request),
            "title": "Replay: what became of each event",
            "opts": self.model._meta,
            "outcomes": [
                {"event": event, "outcome": OUTCOMES.get(event.state, event.state), "error": mask(event.error)}
                for event in outcomes
            ],
            "queued_only": max(len(replayed) - REPLAY_INLINE, 0),
            "skipped": len(selected) - len(replayed),
            "replayable": ", ".join(REPLAYABLE_STATES),
        }
        return TemplateResponse(request, "admin/receipts/receiptevent/replayed.html", context)


REPLAY_INLINE = 200  # events processed while the operator waits; the rest are left to the workers
OUTCOMES: dict[str, str] = {
    InboxState.PROCESSED: "processed: its receipts are on their messages' timelines",
    InboxState.ORPHAN: "waiting for its message to be registered (orphan)",
    InboxState.RECEIVED: "failed again; it will be tried again later (see the error)",
    InboxState.DEAD: "failed every attempt (dead)",
    InboxState.REJECTED: "rejected: the body is not this provider's format",
    InboxState.UNMATCHED: "no message matched it within the orphan window",
}


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    list_display = ["name", "token_prefix", "scopes", "created_at", "last_used_at", "revoked_at"]
    readonly_fields = ["token_prefix", "token_hash", "created_at", "last_used_at"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are issued by `manage.py create_api_client`, which shows the token once

    @admin.action(description="Revoke selected clients", permissions=["change"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiClient]) -> None:
        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} client(s) revoked.", messages.SUCCESS)
