"""The outbox in the admin: backlog, lag and dead rows at a glance, and a retry action."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from crm_sync import actions
from crm_sync.models import OutboxMessage, OutboxState, RelayLease
from simulator.fake_crm import FakeCrm
from tests.crm_sync.conftest import change, publish_changes

pytestmark = pytest.mark.django_db

URL = "/admin/crm_sync/outboxmessage/"


def summary_cells(html: str) -> dict[str, str]:
    block = html[html.index('id="outbox-summary"') :]
    block = block[: block.index("</table>")]
    pairs = re.findall(r"<th scope=\"row\">([^<]+)</th><td>(.*?)</td>", block, re.S)
    return {name: re.sub(r"<[^>]+>", "", value).strip() for name, value in pairs}


def test_the_changelist_shows_backlog_lag_and_dead_rows(admin_client: Client, settings: Any) -> None:
    settings.CRM_BACKEND = "generic"  # the relay's lag: with CRM_BACKEND=none nothing waits for it
    publish_changes(change(record="A"), change(record="B"), change(record="C"))
    OutboxMessage.objects.filter(crm_record_id="A").update(created_at=timezone.now() - timedelta(minutes=5))
    OutboxMessage.objects.filter(crm_record_id="B").update(state=OutboxState.DEAD, last_error="HTTP 500: down")
    OutboxMessage.objects.filter(crm_record_id="C").update(next_attempt_at=timezone.now() + timedelta(minutes=1))

    response = admin_client.get(URL)

    assert response.status_code == 200
    cells = summary_cells(response.content.decode())
    assert cells["Backlog (not sent yet)"] == "2"
    assert cells["Due now"] == "1"
    assert cells["Lag (oldest unsent change)"] in ("5 min", "4 min")
    assert cells["Dead"] == "1"
    assert "HTTP 500: down" in response.content.decode()

    settings.CRM_BACKEND = "none"
    cells = summary_cells(admin_client.get(URL).content.decode())
    assert (cells["Backlog (not sent yet)"], cells["Lag (oldest unsent change)"]) == ("2", "-")


def test_the_dead_filter_and_a_change_page_open(admin_client: Client) -> None:
    publish_changes(change(record="A", status="delivered"))
    row = OutboxMessage.objects.get()
    assert admin_client.get(URL, {"state__exact": "dead"}).status_code == 200
    page = admin_client.get(f"{URL}{row.pk}/change/")
    assert page.status_code == 200
    assert row.idempotency_key in page.content.decode()


def test_retry_sends_dead_changes_again_now(admin_client: Client, settings: Any) -> None:
    publish_changes(change(record="A"), change(record="A"))
    first, second = OutboxMessage.objects.order_by("id")
    OutboxMessage.objects.filter(pk=first.pk).update(state=OutboxState.DEAD, attempts=30, last_error="HTTP 500")
    OutboxMessage.objects.filter(pk=second.pk).update(state=OutboxState.DEAD, last_error="held behind")

    response = admin_client.post(URL, {"action": "retry", "_selected_action": [first.pk]}, follow=True)

    assert "2 change(s) queued to send now." in response.content.decode()
    for row in OutboxMessage.objects.all():
        assert (row.state, row.attempts, row.last_error) == (OutboxState.PENDING, 0, "")
        assert row.next_attempt_at <= timezone.now()


def test_summary_reads_the_backend(settings: Any) -> None:
    settings.CRM_BACKEND = "generic"
    assert actions.summary().backend == "generic"
    assert actions.summary().lag is None


def test_a_paused_crm_shows_in_the_admin_and_in_metrics(
    admin_client: Client, client: Client, generic_crm: FakeCrm, settings: Any
) -> None:
    settings.METRICS_TOKEN = ""
    publish_changes(change(record="A"), change(record="B"))
    generic_crm.fail_next(1, status=429, retry_after=120)
    actions.relay()

    page = admin_client.get(URL).content.decode()
    metrics = client.get("/metrics").content.decode()

    banner = re.sub(r"\s+", " ", page[page.index('id="crm-paused"') :].split("</li>")[0])
    assert "Sending to the CRM is paused until" in banner and "HTTP 429" in banner
    assert re.search(r"\(1[01][0-9] s from now\)", banner), banner
    assert 'crm_relay_paused{backend="generic"} 1.0' in metrics
    left = float(re.search(r'crm_relay_pause_remaining_seconds\{backend="generic"\} (\S+)', metrics)[1])
    assert 100 < left <= 120
    assert 'crm_relay_refused_batches{backend="generic"} 1.0' in metrics
    assert 'crm_outbox_backlog{backend="generic"} 2.0' in metrics

    # Two minutes on: the pause and the changes' own backoff are over.
    RelayLease.objects.update(paused_until=timezone.now() - timedelta(seconds=1))
    OutboxMessage.objects.update(next_attempt_at=timezone.now())
    generic_crm.come_back()
    actions.relay()  # the probe is answered: sending resumes

    assert 'id="crm-paused"' not in admin_client.get(URL).content.decode()
    metrics = client.get("/metrics").content.decode()
    assert 'crm_relay_paused{backend="generic"} 0.0' in metrics
    assert 'crm_relay_lag_seconds{backend="generic"} 0.0' in metrics


def test_the_kind_filter_lists_the_kinds_without_asking_the_table(admin_client: Client) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    publish_changes(change(record="A"))
    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(URL).content.decode()
    filtered = admin_client.get(f"{URL}?kind=status_changed").content.decode()

    assert not any("DISTINCT" in q["sql"].upper() for q in queries.captured_queries)
    assert "suppression added" in page and "review resolved" in page
    assert 'class="field-crm_record_id">A<' in filtered
    assert 'class="field-crm_record_id">A<' not in admin_client.get(f"{URL}?kind=escalation").content.decode()
