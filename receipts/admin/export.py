"""CSV export of whatever a list shows: the same filters, search and order, every matching row (not one page),
streamed as it is read, so that a million rows cost a steady trickle of memory, not a million objects."""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path
from django.utils import timezone

from receipts.actions.suppression import spreadsheet_safe


class Echo:
    """A file for csv.writer that hands each line back instead of keeping it."""

    def write(self, value: str) -> str:
        return value


def csv_stream(
    name: str, header: list[str], rows: Iterable[Iterable[Any]], raw: frozenset[str] = frozenset()
) -> StreamingHttpResponse:
    """Text cells a spreadsheet would run as a formula get a leading quote, except in the ``raw`` columns (an
    E.164 number starts with "+", and an export must import again)."""
    writer = csv.writer(Echo())
    guarded = [name not in raw for name in header]

    def cell(value: Any, guard: bool) -> Any:
        if value is None:
            return ""
        if isinstance(value, datetime):
            return value.isoformat()
        return spreadsheet_safe(value) if guard and isinstance(value, str) else value

    def lines() -> Iterator[str]:
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([cell(value, guard) for value, guard in zip(row, guarded, strict=True)])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="{name}-{stamp}.csv"'
    return response


class CsvExport(admin.ModelAdmin):
    """Adds ``export/`` beside the changelist, and an "Export CSV" button that carries the list's query string.
    ``csv_fields`` are the columns (lookups through relations allowed)."""

    csv_fields: list[str] = []
    csv_raw: frozenset[str] = frozenset()  # columns written as they are (addresses)
    change_list_template = "admin/csv_change_list.html"

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_csv),
            name=f"{opts.app_label}_{opts.model_name}_export",
        )
        return [export, *super().get_urls()]

    def export_csv(self, request: HttpRequest) -> HttpResponseBase:
        if not self.has_view_or_change_permission(request):
            return HttpResponse(status=403)
        changelist = self.get_changelist_instance(request)
        rows: QuerySet = changelist.queryset.values_list(*self.csv_fields)
        name = str(self.model._meta.verbose_name_plural).replace(" ", "-")
        return csv_stream(name, self.csv_fields, rows.iterator(chunk_size=2000), self.csv_raw)
