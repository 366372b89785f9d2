"""Admin: the retry decisions and sends, and the escalations operators acknowledge."""

from __future__ import annotations

from typing import Any, cast

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from rangefilter.filters import DateRangeFilter

from receipts.actions import escalation
from receipts.admin.messages import ExactSearch
from receipts.admin.scale import LargeTableAdmin
from receipts.admin.suppressions import FieldGroups
from receipts.models import Escalation, Retry


def message_link(message_id: int | None) -> str:
    if not message_id:
        return "-"
    url = reverse("admin:receipts_message_change", args=[message_id])
    return format_html('<a href="{}">{}</a>', url, message_id)


@admin.register(Retry)
class RetryAdmin(ExactSearch, LargeTableAdmin):
    list_display = ["id", "failed_message", "number", "state", "failure_category", "due_at", "new", "note"]
    list_filter = ["state", "failure_category", ("created_at", DateRangeFilter)]
    search_fields = ["message__to"]  # any: ExactSearch decides what a term means
    message_path = "message"
    ordering = ["-id"]
    list_select_related = ["message"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="failed message")
    def failed_message(self, obj: Retry) -> str:
        return message_link(obj.message_id)

    @admin.display(description="sent as")
    def new(self, obj: Retry) -> str:
        return message_link(obj.new_message_id)


class AcknowledgedFilter(admin.SimpleListFilter):
    title = "acknowledged"
    parameter_name = "acknowledged"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("no", "open"), ("yes", "acknowledged")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> QuerySet[Escalation]:
        if self.value() == "no":
            return queryset.filter(acknowledged_at=None)
        if self.value() == "yes":
            return queryset.exclude(acknowledged_at=None)
        return queryset


@admin.register(Escalation)
class EscalationAdmin(ExactSearch, LargeTableAdmin):
    list_display = [
        "id",
        "raised_at",
        "message_id_link",
        "whom",
        "crm_record_id",
        "status",
        "reason",
        "fallback",
        "acknowledged_at",
    ]
    list_filter = [AcknowledgedFilter, "status", ("raised_at", DateRangeFilter)]
    search_fields = ["message__to"]  # any: ExactSearch decides what a term means
    message_path = "message"
    ordering = ["-id"]
    list_select_related = ["message"]
    readonly_fields = [
        "what_to_do",
        "message_id_link",
        "raised_at",
        "deadline",
        "status",
        "failure_category",
        "reason",
        "acknowledged_at",
        "acknowledged_by",
        "note",
        "fallback",
    ]
    fields = cast(FieldGroups, readonly_fields)
    actions = ["acknowledge"]
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="message")
    def message_id_link(self, obj: Escalation) -> str:
        return message_link(obj.message_id)

    @admin.display(description="CRM record")
    def crm_record_id(self, obj: Escalation) -> str:
        return obj.message.crm_record_id

    @admin.display(description="whom to reach")
    def whom(self, obj: Escalation) -> str:
        return obj.message.to

    @admin.display(description="what to do")
    def what_to_do(self, obj: Escalation) -> str:
        if obj.acknowledged_at:
            who = obj.acknowledged_by or "someone"
            return f"Done: acknowledged at {obj.acknowledged_at:%Y-%m-%d %H:%M:%S %Z} by {who}."
        record = f" (CRM record {obj.message.crm_record_id})" if obj.message.crm_record_id else ""
        how = "Call" if obj.message.channel == "sms" else "Reach"
        planned = f"Done on its own: {obj.fallback}; see that it got through. " if obj.fallback else ""
        return (
            f"{planned}{how} {obj.message.to}{record}: the critical message did not get through. Then, in the list "
            'of escalations, select this one and choose "Acknowledge", so that nobody calls twice.'
        )

    @admin.action(description="Acknowledge (the fallback is taken care of)", permissions=["change"])
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[Escalation]) -> None:
        count = escalation.acknowledge(list(queryset.values_list("pk", flat=True)), request.user)
        self.message_user(request, f"{count} escalation(s) acknowledged.", messages.SUCCESS)
