"""Contacts and sends in the admin at a million rows (issue 23, items 1 and 2): a search finds an address however
it is typed ("(212) 205-6999" found nothing: it was matched literally), by an index (PostgreSQL EXPLAIN, no
sequential scan), and a list page never counts the whole table nor runs a DISTINCT over it for its filters."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from campaigns.admin import ContactAdmin, SendAdmin
from campaigns.contacts import import_contacts
from campaigns.models import Contact, Send
from tests.conftest import is_postgres

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator() -> Client:
    browser = Client()
    browser.force_login(get_user_model().objects.create_superuser("ops", password="pw"))
    return browser


@pytest.fixture
def rows() -> None:
    rows = [
        {"crm_record_id": "003-NYC", "phone": "+12122056999", "email": "Pat@Example.org"},
        {"crm_record_id": "003-SF", "phone": "+14155550100"},
    ]
    assert not import_contacts(enumerate(rows)).refused
    for to, record in (("+12122056999", "003-NYC"), ("pat@example.org", "003-NYC"), ("+14155550100", "003-SF")):
        channel = "email" if "@" in to else "sms"
        Send.objects.create(channel=channel, provider="genesys_sms", to=to, crm_record_id=record, idempotency_key=to)


@pytest.mark.parametrize(
    ("term", "found"),
    [("(212) 205-6999", ["003-NYC"]), ("PAT@example.ORG", ["003-NYC"]), ("003-SF", ["003-SF"]), ("nobody", [])],
)
def test_the_contacts_search_finds_an_address_as_typed(operator: Client, rows: None, term: str, found: list) -> None:
    page = operator.get("/admin/campaigns/contact/", {"q": term}).content.decode()
    assert [record for record in ("003-NYC", "003-SF") if f">{record}<" in page] == found


@pytest.mark.parametrize(("term", "count"), [("(212) 205-6999", 1), ("Pat@Example.org", 1), ("003-NYC", 2)])
def test_the_sends_search_finds_an_address_or_a_record(operator: Client, rows: None, term: str, count: int) -> None:
    page = operator.get("/admin/campaigns/send/", {"q": term}).content.decode()
    assert page.count('class="field-crm_record_id"') == count


def test_a_list_page_counts_no_table_and_runs_no_distinct(operator: Client, rows: None) -> None:
    for url in ("/admin/campaigns/send/", "/admin/campaigns/contact/", "/admin/campaigns/send/?q=003-NYC"):
        with CaptureQueriesContext(connection) as queries:
            assert operator.get(url).status_code == 200
        statements = [q["sql"].upper() for q in queries.captured_queries]
        counts = [s for s in statements if "COUNT(" in s and ("CAMPAIGNS_SEND" in s or "CAMPAIGNS_CONTACT" in s)]
        assert [s for s in statements if "DISTINCT" in s] == [], url
        # A cheap count only: exact under the planner's threshold on PostgreSQL, never a second full count.
        assert len(counts) <= 1, (url, counts)


def test_each_search_is_served_by_an_index(rows: None) -> None:
    if not is_postgres():
        pytest.skip("EXPLAIN as PostgreSQL plans it")
    sends = SendAdmin(Send, None)  # type: ignore[arg-type]
    contacts = ContactAdmin(Contact, None)  # type: ignore[arg-type]
    for admin_, model, term in (
        (sends, Send, "(212) 205-6999"),
        (sends, Send, "003-NYC"),
        (contacts, Contact, "(212) 205-6999"),
        (contacts, Contact, "pat@example.org"),
    ):
        found, _ = admin_.get_search_results(None, model.objects.all(), term)  # type: ignore[arg-type]
        sql, params = found.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute(f"EXPLAIN {sql}", params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Seq Scan" not in plan, (model.__name__, term, plan)
