"""Lists of millions of rows: key-based pages ("Older"/"Newer") instead of OFFSET, and counts that say "about"
when counting would read too much (receipts.admin.scale)."""

from __future__ import annotations

import re
from html import unescape
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from receipts import db
from receipts.admin.messages import MessageAdmin
from receipts.admin.scale import rounded
from tests.conftest import is_postgres, register

pytestmark = pytest.mark.django_db

LIST = "/admin/receipts/message/"


@pytest.fixture
def thirty(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    monkeypatch.setattr(MessageAdmin, "list_per_page", 10)
    return [register(provider_message_id=f"page-{i:02}", to=f"+1555000{i:04}").pk for i in range(25)]


def ids_on(response: Any) -> list[int]:
    return [int(pk) for pk in re.findall(r'href="/admin/receipts/message/(\d+)/change/', response.content.decode())]


def link(response: Any, css_class: str) -> str | None:
    found = re.search(rf'<a href="([^"]*)" class="{css_class}"', response.content.decode())
    return unescape(found.group(1)) if found else None


def test_older_and_newer_walk_every_row_once_newest_first(admin_client: Client, thirty: list[int]) -> None:
    pages: list[list[int]] = []
    response = admin_client.get(LIST)
    assert link(response, "previous-page") is None  # the first page has nothing newer
    while True:
        assert response.status_code == 200
        pages.append(ids_on(response))
        older = link(response, "next-page")
        if older is None:
            break
        response = admin_client.get(f"{LIST}{older}")
    assert [len(p) for p in pages] == [10, 10, 5]
    assert [pk for page in pages for pk in page] == sorted(thirty, reverse=True)

    # Back from the last page: "Newer" shows the page before it, "Newest" the first.
    newer = link(response, "previous-page")
    assert newer is not None
    assert ids_on(admin_client.get(f"{LIST}{newer}")) == pages[1]
    assert ids_on(admin_client.get(f"{LIST}{link(response, 'first-page')}")) == pages[0]


def test_pages_keep_the_filter_and_never_use_offset(admin_client: Client, thirty: list[int]) -> None:
    response = admin_client.get(f"{LIST}?channel__exact=sms")
    older = link(response, "next-page")
    assert older is not None
    assert "channel__exact=sms" in older
    assert "before=" in older
    with CaptureQueriesContext(connection) as queries:
        second = admin_client.get(f"{LIST}{older}")
    assert ids_on(second) == sorted(thirty, reverse=True)[10:20]
    listing = [q["sql"] for q in queries.captured_queries if 'FROM "receipts_message"' in q["sql"]]
    assert listing
    assert not [sql for sql in listing if "OFFSET" in sql]


@pytest.mark.parametrize("cursor", ["abc", "-5", "99999999999999999999999", "1e3", "٣"])
def test_a_cursor_that_is_not_an_id_shows_the_first_page(admin_client: Client, thirty: list[int], cursor: str) -> None:
    response = admin_client.get(f"{LIST}?before={cursor}")
    assert response.status_code == 200
    assert ids_on(response) == sorted(thirty, reverse=True)[:10]


def test_a_small_list_is_counted_exactly(admin_client: Client, thirty: list[int]) -> None:
    response = admin_client.get(LIST)
    assert '<span class="result-count">25 messages</span>' in response.content.decode()
    assert "about" not in re.sub(r"<[^>]+>", "", response.content.decode()).split("result-count")[-1][:40]


@pytest.mark.skipif(not is_postgres(), reason="the planner's estimate is PostgreSQL's (SQLite always counts)")
def test_when_counting_would_read_too_much_the_list_says_about(
    admin_client: Client, thirty: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "EXACT_COUNT_UP_TO", 0)  # every estimate is "too many" to count
    response = admin_client.get(LIST)
    assert response.status_code == 200
    shown = re.search(r'<span class="result-count">about ([\d,]+) messages</span>', response.content.decode())
    assert shown is not None
    assert ids_on(response) == sorted(thirty, reverse=True)[:10]
    assert link(response, "next-page") is not None


@pytest.mark.skipif(not is_postgres(), reason="statement_timeout is PostgreSQL's")
def test_a_count_over_its_time_budget_falls_back_to_the_estimate(
    thirty: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from receipts.models import Message

    slow = Message.objects.extra(where=["pg_sleep(0.01) IS NOT NULL"])  # 10 ms a row: 250 ms for 25 rows
    monkeypatch.setattr(db, "EXACT_COUNT_BUDGET_MS", 50)
    count = db.count_cheaply(slow)
    assert not count.exact
    # The connection is usable afterwards and its timeout is back to the default.
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == "0"
    assert db.count_cheaply(Message.objects.all()) == db.Count(25, exact=True)


@pytest.mark.parametrize(("estimate", "shown"), [(7, 7), (123, 120), (9_876_543, 9_900_000), (1_060, 1_100)])
def test_an_estimate_is_shown_to_two_figures(estimate: int, shown: int) -> None:
    assert rounded(estimate) == shown


def test_sorted_by_another_column_pages_stop_where_offset_stops_being_cheap(
    admin_client: Client, thirty: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    from receipts.admin import scale

    monkeypatch.setattr(scale, "MAX_OFFSET_PAGE", 2)
    by_updated = MessageAdmin.list_display.index("updated_at")
    response = admin_client.get(f"{LIST}?o={by_updated}")
    assert response.status_code == 200
    html = response.content.decode()
    assert f"?o={by_updated}&amp;p=2" in html
    assert "p=3" not in html
    deep = admin_client.get(f"{LIST}?o={by_updated}&p=50")
    assert deep.status_code == 200
    assert len(ids_on(deep)) == 10


def test_csv_export_carries_every_row_the_filtered_list_matches(admin_client: Client, thirty: list[int]) -> None:
    from receipts.models import Message

    Message.objects.filter(pk__in=thirty[:3]).update(provider_code="=HYPERLINK(1)")
    listing = admin_client.get(f"{LIST}?channel__exact=sms").content.decode()
    assert 'href="export/?channel__exact=sms"' in listing
    response = admin_client.get(f"{LIST}export/?channel__exact=sms")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 25  # every match, not one page of 10
    assert [int(r["id"]) for r in rows] == sorted(thirty, reverse=True)
    assert rows[-1]["to"] == "+15550000000"  # an address as it is, to import again
    assert {r["provider_code"] for r in rows if r["provider_code"]} == {"'=HYPERLINK(1)"}  # never a formula
    none = admin_client.get(f"{LIST}export/?channel__exact=email")
    assert len(list(csv.reader(io.StringIO(b"".join(none.streaming_content).decode())))) == 1  # the header


@pytest.mark.parametrize(
    "url",
    [
        "/admin/crm_sync/outboxmessage/?q=003XX0000001",
        "/admin/receipts/receiptevent/?q=abc-1",
        "/admin/receipts/suppression/?q=operator:ann",
        "/admin/receipts/escalation/?q=%2B15550001111",
        "/admin/receipts/retry/?q=crm-1",
        "/admin/receipts/messageevent/?q=crm-1",
    ],
)
def test_searches_on_big_tables_are_exact_so_an_index_serves_them(admin_client: Client, url: str) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(url)
    assert response.status_code == 200
    sql = " ".join(q["sql"] for q in queries.captured_queries)
    assert "UPPER(" not in sql  # iexact: no plain index serves it
    assert "LIKE" not in sql  # icontains: a scan of every row


def test_within_a_date_range_the_list_is_newest_first_by_that_date(admin_client: Client, thirty: list[int]) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from receipts.models import Message

    now = timezone.now()
    # Ids and creation times in opposite orders: the list must follow the date the range is on.
    for age, pk in enumerate(thirty):
        Message.objects.filter(pk=pk).update(created_at=now - timedelta(minutes=len(thirty) - age))
    Message.objects.filter(pk=thirty[0]).update(created_at=now)
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(f"{LIST}?created_at__range__gte={now.date().isoformat()}")
    assert response.status_code == 200
    assert ids_on(response)[0] == thirty[0]
    listing = [
        q["sql"] for q in queries.captured_queries if "LIMIT" in q["sql"] and 'FROM "receipts_message"' in q["sql"]
    ]
    assert any('ORDER BY "receipts_message"."created_at" DESC' in sql for sql in listing), listing
