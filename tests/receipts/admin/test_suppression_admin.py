"""The operator's admin for the suppression list: filters, search, history, add, lift, CSV in and out;
the retry and escalation lists."""

from __future__ import annotations

import csv
import io
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from receipts.actions import suppression
from receipts.models import Escalation, Retry, Suppression
from tests.conftest import register

pytestmark = pytest.mark.django_db

LIST = "/admin/receipts/suppression/"


@pytest.fixture
def entries(time_machine: Any) -> dict[str, Suppression]:
    time_machine.move_to("2026-11-20T10:00:00Z", tick=False)
    rows = {
        "stop": suppression.suppress("sms", "+15550000001", "unsubscribe", source="receipt", actor="receipt:x")[0],
        "bounce": suppression.suppress("email", "hard@example.com", "hard_bounce", source="import")[0],
        "soft": suppression.suppress(
            "email",
            "soft@example.com",
            "soft_bounce_threshold",
            source="receipt",
            expires_at=timezone.now() + timedelta(days=30),
        )[0],
        "lifted": suppression.suppress("sms", "+15550000004", "manual", source="operator")[0],
        "old": suppression.suppress(
            "sms", "+15550000005", "manual", source="api", expires_at=timezone.now() + timedelta(hours=1)
        )[0],
    }
    suppression.lift(rows["lifted"].pk, reason="mistake", source="operator", actor="operator:ann")
    time_machine.shift(timedelta(hours=2))
    return rows


def shown(response: Any, entries: dict[str, Suppression]) -> list[str]:
    html = response.content.decode()
    return sorted(
        name for name, row in entries.items() if f'href="/admin/receipts/suppression/{row.pk}/change/' in html
    )


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["bounce", "lifted", "old", "soft", "stop"]),
        ("reason__exact=unsubscribe", ["stop"]),
        ("channel__exact=email", ["bounce", "soft"]),
        ("source__exact=import", ["bounce"]),
        ("expiry=permanent", ["bounce", "stop"]),
        ("expiry=expiring", ["soft"]),
        ("expiry=expired", ["old"]),
        ("expiry=lifted", ["lifted"]),
        ("q=(555) 000-0001", ["stop"]),
        ("q=HARD@example.com", ["bounce"]),
        ("q=operator:ann", ["lifted"]),  # who lifted it, exactly (notes are not searched: 1 M rows)
    ],
)
def test_list_filters_and_search(admin_client: Client, entries: dict, query: str, expected: list[str]) -> None:
    response = admin_client.get(f"{LIST}?{query}")
    assert response.status_code == 200
    assert shown(response, entries) == expected


def test_an_entry_shows_its_history(admin_client: Client, entries: dict) -> None:
    response = admin_client.get(f"{LIST}{entries['lifted'].pk}/change/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "history (who added or lifted it" in html.lower()
    assert "operator:ann" in html and "mistake" in html


def test_an_operator_adds_an_entry_through_the_action(admin_client: Client) -> None:
    response = admin_client.post(
        f"{LIST}add/", {"channel": "sms", "address": "(555) 000-0009", "reason": "manual", "note": "legal hold"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    row = Suppression.objects.get()
    assert (row.address, row.source, row.created_by, row.user) == (
        "+15550000009",
        "operator",
        "operator:admin",
        User.objects.get(username="admin"),
    )
    assert row.history.get().actor == "operator:admin"

    refused = admin_client.post(f"{LIST}add/", {"channel": "sms", "address": "call me", "reason": "manual"})
    assert refused.status_code == 200
    assert "is not a phone number" in refused.content.decode()


def test_lift_action_asks_for_a_reason_then_lifts_with_it(admin_client: Client, entries: dict) -> None:
    chosen = [entries["stop"].pk, entries["lifted"].pk]
    form = admin_client.post(LIST, {"action": "lift", "_selected_action": chosen})
    assert form.status_code == 200
    assert "Lift suppressions" in form.content.decode()

    missing = admin_client.post(LIST, {"action": "lift", "_selected_action": chosen, "apply": "1", "reason": ""})
    assert missing.status_code == 200  # the form again, nothing lifted
    assert entries["stop"].__class__.objects.get(pk=entries["stop"].pk).lifted_at is None

    done = admin_client.post(
        LIST, {"action": "lift", "_selected_action": chosen, "apply": "1", "reason": "called, wants texts"}, follow=True
    )
    html = done.content.decode()
    assert "1 suppression(s) lifted." in html and "1 skipped" in html
    stop = Suppression.objects.get(pk=entries["stop"].pk)
    assert (stop.lift_reason, stop.lifted_by, stop.lift_source) == ("called, wants texts", "operator:admin", "operator")
    assert stop.history.last().user.username == "admin"


def test_entries_are_never_deleted_or_edited(admin_client: Client, entries: dict) -> None:
    row = entries["stop"]
    assert admin_client.post(f"{LIST}{row.pk}/delete/", {"post": "yes"}).status_code == 403
    admin_client.post(f"{LIST}{row.pk}/change/", {"reason": "manual", "address": "+15559999999"})
    row.refresh_from_db()
    assert (row.reason, row.address) == ("unsubscribe", "+15550000001")


def test_csv_import_adds_rows_and_reports_the_refused_with_why(admin_client: Client) -> None:
    content = (
        b"channel,address,reason,note,expires_at\n"
        b"sms,(555) 000-0001,unsubscribe,paper form,\n"
        b"email,A@Example.com,,,\n"
        b"fax,123,,,\n"
        b"sms,+15550000003,spam,,\n"
    )
    upload = SimpleUploadedFile("list.csv", content, content_type="text/csv")

    response = admin_client.post(f"{LIST}import/", {"file": upload})

    assert response.status_code == 200
    html = response.content.decode()
    assert "2 added, 0 already suppressed, 2 refused." in html
    assert "channel must be one of sms, email, got &#x27;fax&#x27;" in html
    assert "reason must be one of" in html
    assert sorted(Suppression.objects.values_list("address", "source")) == [
        ("+15550000001", "import"),
        ("a@example.com", "import"),
    ]


def test_csv_import_refuses_a_file_without_the_needed_columns(admin_client: Client) -> None:
    upload = SimpleUploadedFile("list.csv", b"number\n+15550000001\n", content_type="text/csv")
    response = admin_client.post(f"{LIST}import/", {"file": upload})
    assert "needs the columns channel and address" in response.content.decode()
    assert not Suppression.objects.exists()


def test_csv_export_follows_the_filters_and_imports_again(admin_client: Client, entries: dict) -> None:
    response = admin_client.get(f"{LIST}export/?channel__exact=email")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert sorted((r["address"], r["reason"], r["active"]) for r in rows) == [
        ("hard@example.com", "hard_bounce", "yes"),
        ("soft@example.com", "soft_bounce_threshold", "yes"),
    ]

    again = SimpleUploadedFile(
        "again.csv", b"".join(admin_client.get(f"{LIST}export/?channel__exact=email").streaming_content)
    )
    report = admin_client.post(f"{LIST}import/", {"file": again})
    assert "0 added, 2 already suppressed, 0 refused." in report.content.decode()


def test_export_selected_action_writes_a_csv(admin_client: Client, entries: dict) -> None:
    response = admin_client.post(LIST, {"action": "export_selected", "_selected_action": [entries["stop"].pk]})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == suppression.IMPORT_COLUMNS
    assert [r[1] for r in rows[1:]] == ["+15550000001"]


def test_retry_and_escalation_lists_show_and_escalations_can_be_acknowledged(admin_client: Client) -> None:
    message = register(provider="genesys_sms", provider_message_id="m-1", priority="critical", crm_record_id="C-1")
    Retry.objects.create(message=message, root=message, number=1, state="skipped", note="no content to send again")
    escalation = Escalation.objects.create(
        message=message, deadline=timezone.now(), status="failed", reason="not delivered within 0:10:00"
    )

    assert "no content to send again" in admin_client.get("/admin/receipts/retry/").content.decode()
    listed = admin_client.get("/admin/receipts/escalation/?acknowledged=no").content.decode()
    assert "not delivered within 0:10:00" in listed and "C-1" in listed

    admin_client.post("/admin/receipts/escalation/", {"action": "acknowledge", "_selected_action": [escalation.pk]})
    escalation.refresh_from_db()
    assert escalation.acknowledged_by.username == "admin"
    assert "not delivered" not in admin_client.get("/admin/receipts/escalation/?acknowledged=no").content.decode()


def test_the_list_links_to_import_and_to_an_export_of_what_is_filtered(admin_client: Client, entries: dict) -> None:
    html = admin_client.get(f"{LIST}?channel__exact=sms").content.decode()
    assert 'href="/admin/receipts/suppression/import/"' in html
    assert 'href="/admin/receipts/suppression/export/?channel__exact=sms"' in html


@pytest.mark.parametrize("note", ['=HYPERLINK("http://x")', "+1+1", "-2+3", "@SUM(A1)", "\t=1", "\r=1"])
def test_csv_export_neutralises_cells_a_spreadsheet_would_run(admin_client: Client, note: str) -> None:
    suppression.suppress("email", "x@example.com", "manual", note=note, source="operator", actor="ops")

    body = b"".join(admin_client.get(f"{LIST}export/").streaming_content).decode()

    row = next(csv.DictReader(io.StringIO(body)))
    assert row["note"] == "'" + note
