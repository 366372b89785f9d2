"""Lists of millions of rows: counts that never read the whole table, pages that never skip rows with OFFSET.

``LargeTableAdmin`` is for the tables that grow with traffic (messages, timeline, inbox, suppressions, the CRM
outbox). Its changelist

- says how many rows match exactly when that is cheap, and "about N" from the planner when it is not
  (``receipts.db.count_cheaply``), never a ``COUNT(*)`` over 10 million rows;
- pages by key in its default order (newest first); within a date range of an indexed date, it lists newest first
  by that date (one index range) with OFFSET pages: "Older" asks for rows below the last id shown
  (``?before=<id>``), an index range, so the thousandth page costs what the first does. Sorted by another
  column, it pages with OFFSET, up to ``MAX_OFFSET_PAGE`` pages (deeper, filter or search instead);
- shows no facet counts (a COUNT per filter choice) and no "Show all".
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import ShowFacets
from django.contrib.admin.views.main import ORDER_VAR, PAGE_VAR, ChangeList
from django.core.paginator import InvalidPage, Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from receipts.addresses import normalize_address
from receipts.db import Count, count_cheaply

CURSOR_VAR = "before"
MAX_OFFSET_PAGE = 50


class LargeTableChangeList(ChangeList):
    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        # The cursor is not a filter: take it out before the changelist reads the query string as lookups.
        query = request.GET.copy()
        raw = query.pop(CURSOR_VAR, [""])[-1]
        self.cursor = int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 19 else None
        # What get_results (called by the base __init__) fills in.
        self.count: Count = Count(0, exact=True)
        self.keyset = False
        self.next_cursor: int | None = None
        self.previous_cursor: int | None = None
        self.at_first_page = True
        original, request.GET = request.GET, query  # type: ignore[assignment]
        try:
            super().__init__(request, *args, **kwargs)
        finally:
            request.GET = original

    def get_ordering(self, request: HttpRequest, queryset: QuerySet) -> list:
        """Newest first by id, except within a date range: then newest first by that date, so that one index
        answers both the range and the order (walking the ids down to a day a week ago read 730,000 rows)."""
        if ORDER_VAR not in self.params:
            for name in self.params:
                field = name.removesuffix("__range__gte").removesuffix("__range__lte")
                if field != name and field in getattr(self.model_admin, "date_ordered", ()):
                    return [f"-{field}", "-pk"]
        return super().get_ordering(request, queryset)

    def get_results(self, request: HttpRequest) -> None:
        self.count = count_cheaply(self.queryset)
        self.keyset = [str(o) for o in self.queryset.query.order_by] in (["-pk"], ["-id"], [f"-{self.opts.pk.name}"])
        self.result_count = self.count.value
        self.full_result_count = None
        self.show_full_result_count = False
        self.show_admin_actions = True
        self.can_show_all = False
        self.multi_page = self.count.value > self.list_per_page or not self.count.exact
        if self.keyset:
            self._keyset_page()
        else:
            self._offset_page()

    def _keyset_page(self) -> None:
        rows = self.queryset
        if self.cursor is not None:
            rows = rows.filter(pk__lt=self.cursor)
        page = list(rows[: self.list_per_page + 1])
        self.result_list = page[: self.list_per_page]
        self.at_first_page = self.cursor is None
        if len(page) > self.list_per_page:
            self.next_cursor = self.result_list[-1].pk
        if self.cursor is not None:
            # The previous page is the list_per_page rows just above this one, when there are that many.
            above = list(
                self.queryset.filter(pk__gte=self.cursor)
                .order_by("pk")
                .values_list("pk", flat=True)[: self.list_per_page + 1]
            )
            if len(above) > self.list_per_page:
                self.previous_cursor = above[self.list_per_page - 1] + 1
        self.paginator = Paginator(self.result_list, self.list_per_page)

    def _offset_page(self) -> None:
        if self.page_num > MAX_OFFSET_PAGE:
            self.page_num = MAX_OFFSET_PAGE
        paginator = Paginator(self.queryset, self.list_per_page)
        # The paginator's count is what we already know: no second COUNT, and page numbers stop where OFFSET stops
        # being cheap.
        paginator.count = min(self.count.value, self.list_per_page * MAX_OFFSET_PAGE)
        try:
            self.result_list = paginator.page(self.page_num).object_list
        except InvalidPage:
            self.result_list = paginator.page(1).object_list
            self.page_num = 1
        self.paginator = paginator
        self.at_first_page = self.page_num == 1

    def cursor_url(self, cursor: int | None) -> str:
        remove = [CURSOR_VAR, PAGE_VAR]
        return self.get_query_string({CURSOR_VAR: cursor} if cursor is not None else {}, remove=remove)

    @property
    def next_url(self) -> str | None:
        return self.cursor_url(self.next_cursor) if self.next_cursor is not None else None

    @property
    def previous_url(self) -> str | None:
        if self.at_first_page:
            return None
        return self.cursor_url(self.previous_cursor)

    @property
    def first_url(self) -> str:
        return self.cursor_url(None)

    @property
    def count_text(self) -> str:
        noun = self.opts.verbose_name if self.count.value == 1 and self.count.exact else self.opts.verbose_name_plural
        if self.count.exact:
            return f"{self.count.value:,} {noun}"
        return f"about {rounded(self.count.value):,} {noun}"


def rounded(estimate: int) -> int:
    """An estimate to two significant figures: the planner's figure is not good to the last digit."""
    if estimate < 100:
        return estimate
    scale = 10 ** (len(str(estimate)) - 2)
    return round(estimate / scale) * scale


class LargeTableAdmin(admin.ModelAdmin):
    """A changelist for a big table (see the module). Its ``search_fields`` are matched exactly, case and all
    (Django's ``=field`` is ``iexact``: ``UPPER(column)``, which no plain index serves)."""

    show_facets = ShowFacets.NEVER
    show_full_result_count = False
    list_max_show_all = 0
    # Indexed dates whose range filter orders the list by that date (see LargeTableChangeList.get_ordering).
    date_ordered: tuple[str, ...] = ()

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return LargeTableChangeList

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        fields = [f.lstrip("=^@") for f in self.get_search_fields(request)]
        if not term or not fields:
            return queryset, False
        found = Q()
        for field in fields:
            found |= Q(**{field: term})
        return queryset.filter(found), any("__" in f for f in fields)


class AddressSearch(admin.ModelAdmin):
    """Search that looks a term up where an index is: as an address (a phone number in any format, an email) by
    its normal form in ``address_fields``, and as itself in ``exact_fields``. Django's ``=field`` search is
    ``UPPER(column) = UPPER(term)``, which no index serves, and matched "(212) 205-6999" literally; ``icontains``
    over every column was a sequential scan per column at 10 million rows."""

    address_fields: tuple[tuple[str, str], ...] = ()  # (field, channel)
    exact_fields: tuple[str, ...] = ()

    def matching(self, term: str) -> Q:
        found = Q()
        for name in self.exact_fields:
            found |= Q(**{name: term})
        for name, channel in self.address_fields:
            try:
                found |= Q(**{name: normalize_address(channel, term)})
            except ValueError:
                continue
        return found

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str) -> tuple[QuerySet, bool]:
        term = search_term.strip()
        return (queryset.filter(self.matching(term)), False) if term else (queryset, False)
