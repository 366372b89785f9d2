"""Admin: every alert, open and resolved (the rules are config/alerts.py). Read-only: an alert clears itself."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from receipts.models import Alert


class OpenFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "open"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "open"), ("no", "resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Alert]) -> QuerySet[Alert]:
        if self.value() == "yes":
            return queryset.filter(resolved_at=None)
        if self.value() == "no":
            return queryset.exclude(resolved_at=None)
        return queryset


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["title_link", "key", "fired_at", "resolved_at", "notified"]
    list_filter = [OpenFilter]
    search_fields = ["=key"]
    readonly_fields = ["key", "title", "detail", "link", "fired_at", "resolved_at", "notified"]

    @admin.display(description="alert")
    def title_link(self, obj: Alert) -> str:
        return format_html('<a href="{}">{}</a>', obj.link, obj.title) if obj.link else obj.title

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
