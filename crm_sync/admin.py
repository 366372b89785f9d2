from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from rangefilter.filters import DateRangeFilter

from crm_sync import actions
from crm_sync.models import OutboxMessage
from receipts.admin.scale import LargeTableAdmin
from receipts.events import Kind


def humanize(delta: Any) -> str:
    if delta is None:
        return "-"
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class KindFilter(admin.SimpleListFilter):
    """The kinds there are, from the code: Django's own filter asks the table for its DISTINCT kinds on every
    page, a scan of the whole outbox."""

    title = "kind"
    parameter_name = "kind"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [(kind, kind.replace("_", " ")) for kind in Kind.ALL]

    def queryset(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> QuerySet[OutboxMessage]:
        return queryset.filter(kind=self.value()) if self.value() else queryset


@admin.register(OutboxMessage)
class OutboxMessageAdmin(LargeTableAdmin):
    """The CRM outbox: what is waiting, how late it is, what died, and a way to send it again."""

    list_display = [
        "id",
        "kind",
        "crm_record_id",
        "message_link",
        "state",
        "attempts",
        "next_attempt_at",
        "created_at",
        "sent_at",
        "short_error",
    ]
    list_filter = ["state", KindFilter, ("created_at", DateRangeFilter)]
    search_fields = ["=crm_record_id", "=idempotency_key", "=stream"]
    date_ordered = ("created_at",)  # indexed
    readonly_fields = [
        "idempotency_key",
        "kind",
        "crm_record_id",
        "message_link",
        "stream",
        "payload",
        "occurred_at",
        "created_at",
        "txid",
        "state",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
    ]
    exclude = ["message_id"]
    actions = ["retry"]
    show_full_result_count = False
    change_list_template = "admin/crm_sync/outboxmessage/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return request.user.is_staff  # the detail page needs it; every field is read-only

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        summary = actions.summary()
        extra_context = {
            **(extra_context or {}),
            "outbox": summary,
            "outbox_lag": humanize(summary.lag),
            "outbox_due_lag": humanize(summary.due_lag),
            "outbox_pause_left": humanize(summary.pause_left),
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="message")
    def message_link(self, obj: OutboxMessage) -> str:
        if obj.message_id is None:
            return "-"
        url = reverse("admin:receipts_message_change", args=[obj.message_id])
        return format_html('<a href="{}">{}</a>', url, obj.message_id)

    @admin.display(description="error")
    def short_error(self, obj: OutboxMessage) -> str:
        return obj.last_error[:80]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        # Not has_change_permission: every staff user passes that, to open the read-only detail page.
        return request.user.has_perm("crm_sync.change_outboxmessage")

    @admin.action(
        description="Retry selected changes now (dead ones with the changes held behind them)", permissions=["retry"]
    )
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboxMessage]) -> None:
        count = actions.retry(queryset)
        self.message_user(request, f"{count} change(s) queued to send now.", messages.SUCCESS)
