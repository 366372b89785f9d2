"""The Salesforce adapter against the fake CRM's token and sObject Collections upsert; the field field_map."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.utils import timezone

from crm_sync import actions
from crm_sync.adapters import field_map
from crm_sync.adapters.base import Change
from crm_sync.adapters.salesforce import SalesforceAdapter
from crm_sync.models import OutboxMessage, OutboxState
from receipts.events import Kind
from simulator.fake_crm import FakeCrm
from tests.crm_sync.conftest import T0, change, publish_changes, states

EXTERNAL_ID = "Delivery_Tracker_Id__c"


def status(record: str, message_id: int, value: str, **more: Any):
    payload = {
        "status": value,
        "status_at": f"2026-11-20T10:00:0{message_id % 10}Z",
        "failure_category": "",
        "needs_review": False,
        "review_reason": "",
    }
    return change(record=record, message_id=message_id, **{**payload, **more})


@pytest.mark.django_db
def test_changes_are_upserted_by_external_id_with_the_mapped_fields(salesforce_crm: FakeCrm) -> None:
    publish_changes(status("003A", 1, "sent"), status("003B", 2, "delivered"))
    publish_changes(status("003A", 1, "failed", failure_category="invalid_destination"))

    report = actions.relay()

    assert report.sent == 3
    assert states() == {"sent": 3}
    assert salesforce_crm.records["003A"] == {
        "Delivery_Status__c": "failed",
        "Delivery_Status_At__c": "2026-11-20T10:00:01.000Z",
        "Delivery_Failure_Reason__c": "invalid_destination",
        "Delivery_Needs_Review__c": False,
        "Delivery_Review_Reason__c": "",
    }
    assert salesforce_crm.records["003B"]["Delivery_Status__c"] == "delivered"
    # One token, one upsert request with one record per CRM record.
    assert [(r.method, r.status, r.changes) for r in salesforce_crm.requests] == [
        ("POST", 200, 0),
        ("PATCH", 200, 2),
    ]


@pytest.mark.django_db
def test_times_go_out_as_salesforce_documents_its_datetime(salesforce_crm: FakeCrm) -> None:
    """Issue 26, item 7: a status_at from Python (microseconds, +00:00) went out as it was, which the fake CRM,
    like Salesforce, now refuses; it goes out as yyyy-MM-ddTHH:mm:ss.SSSZ in UTC."""
    publish_changes(status("003T", 1, "delivered", status_at="2026-12-07T17:25:58.713406+01:00"))

    report = actions.relay()

    assert (report.sent, states()) == (1, {"sent": 1})
    assert salesforce_crm.records["003T"]["Delivery_Status_At__c"] == "2026-12-07T16:25:58.713Z"


@pytest.mark.django_db
def test_at_most_200_records_go_in_one_request(salesforce_crm: FakeCrm, settings: Any) -> None:
    settings.CRM_BATCH_SIZE = 1000
    publish_changes(*[status(f"003R{i:04d}", i, "delivered") for i in range(450)])

    actions.relay()

    upserts = [r for r in salesforce_crm.requests if r.method == "PATCH"]
    assert [r.changes for r in upserts] == [200, 200, 50]
    assert len(salesforce_crm.records) == 450
    assert states() == {"sent": 450}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("code", "message"),
    [
        ("ENTITY_IS_DELETED", "entity is deleted"),
        ("INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", "bad value for restricted picklist field: sent"),
        ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Status must be set"),
        ("DUPLICATE_VALUE", "duplicate value found: Delivery_Tracker_Id__c"),
    ],
)
def test_a_record_salesforce_refuses_for_good_is_dead_at_once_with_its_reason(
    salesforce_crm: FakeCrm, code: str, message: str
) -> None:
    salesforce_crm.reject_record("003GONE", code, message)
    publish_changes(status("003GONE", 1, "delivered"), status("003OK", 2, "delivered"))

    report = actions.relay()

    gone = OutboxMessage.objects.get(crm_record_id="003GONE")
    assert gone.state == OutboxState.DEAD and gone.attempts == 1
    assert gone.last_error == f"permanent: {code}: {message}"
    assert OutboxMessage.objects.get(crm_record_id="003OK").state == OutboxState.SENT
    assert report.paused_until is None  # one record's refusal says nothing about Salesforce


@pytest.mark.django_db
@pytest.mark.parametrize("code", ["UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"])
def test_a_record_salesforce_cannot_take_right_now_backs_off_alone(salesforce_crm: FakeCrm, code: str) -> None:
    salesforce_crm.reject_record("003BUSY", code, "try again")
    publish_changes(status("003BUSY", 1, "delivered"), status("003OK", 2, "delivered"))

    actions.relay()

    busy = OutboxMessage.objects.get(crm_record_id="003BUSY")
    assert busy.state == OutboxState.PENDING and busy.attempts == 1 and busy.last_error == f"{code}: try again"
    assert OutboxMessage.objects.get(crm_record_id="003OK").state == OutboxState.SENT


@pytest.mark.django_db
def test_the_daily_api_limit_used_up_pauses_sync_for_an_hour_and_shows_the_usage(
    salesforce_crm: FakeCrm, client: Any, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.METRICS_TOKEN = ""
    publish_changes(status("003A", 1, "sent"))
    actions.relay()
    salesforce_crm.use_up_api_limit()
    publish_changes(status("003A", 1, "delivered"))
    start = timezone.now()

    report = actions.relay(start)

    assert report.paused_until == start + timedelta(hours=1)
    row = OutboxMessage.objects.filter(state=OutboxState.PENDING).get()
    assert "REQUEST_LIMIT_EXCEEDED" in row.last_error
    assert any("API limit is used up" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    metrics = client.get("/metrics").content.decode()
    assert 'crm_api_requests_used{backend="salesforce"} 15000.0' in metrics
    assert 'crm_api_requests_limit{backend="salesforce"} 15000.0' in metrics
    assert 'crm_relay_paused{backend="salesforce"} 1.0' in metrics


def test_simple_salesforce_reads_the_fake_crm_as_it_reads_salesforce(fake_crm: FakeCrm) -> None:
    """Salesforce's own Python client (simple-salesforce) against the fake: the usage header, the results of an
    sObject Collections upsert, and the limit refusal, as the library parses them."""
    from simple_salesforce import Salesforce
    from simple_salesforce.exceptions import SalesforceRefusedRequest

    token = httpx.post(
        fake_crm.token_url,
        data={
            "grant_type": "client_credentials",
            "client_id": fake_crm.client_id,
            "client_secret": fake_crm.client_secret,
        },
    ).json()
    sf = Salesforce(instance_url=token["instance_url"], session_id=token["access_token"], version="61.0")
    sf.base_url = f"{token['instance_url']}/services/data/v61.0/"  # the library assumes https; the fake is plain HTTP
    records = {"allOrNone": False, "records": [{"attributes": {"type": "Contact"}, "Delivery_Tracker_Id__c": "003S"}]}

    answer = sf.restful("composite/sobjects/Contact/Delivery_Tracker_Id__c", method="PATCH", json=records)

    assert answer[0]["success"] is True and answer[0]["created"] is True
    assert (sf.api_usage["api-usage"].used, sf.api_usage["api-usage"].total) == (1, 15000)
    fake_crm.use_up_api_limit()
    with pytest.raises(SalesforceRefusedRequest) as refused:
        sf.restful("composite/sobjects/Contact/Delivery_Tracker_Id__c", method="PATCH", json=records)
    assert refused.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


@pytest.mark.django_db
def test_an_expired_token_is_fetched_again_once(salesforce_crm: FakeCrm) -> None:
    publish_changes(status("003A", 1, "sent"))
    actions.relay()
    salesforce_crm.expire_tokens()
    publish_changes(status("003A", 1, "delivered"))

    actions.relay()

    assert states() == {"sent": 2}
    assert [(r.method, r.status) for r in salesforce_crm.requests] == [
        ("POST", 200),
        ("PATCH", 200),
        ("PATCH", 401),
        ("POST", 200),
        ("PATCH", 200),
    ]
    assert salesforce_crm.records["003A"]["Delivery_Status__c"] == "delivered"


@pytest.mark.django_db
def test_wrong_client_credentials_back_off_with_the_token_error(salesforce_crm: FakeCrm, settings: Any) -> None:
    settings.SALESFORCE_CLIENT_SECRET = "wrong"
    publish_changes(status("003A", 1, "sent"))

    actions.relay()

    row = OutboxMessage.objects.get()
    assert row.state == OutboxState.PENDING
    assert "token request failed" in row.last_error and "invalid_client" in row.last_error


@pytest.mark.django_db
def test_429_and_5xx_back_off(salesforce_crm: FakeCrm) -> None:
    publish_changes(status("003A", 1, "sent"))
    start = timezone.now()
    salesforce_crm.fail_next(1, status=429, retry_after=30)  # the token request

    actions.relay(start)
    row = OutboxMessage.objects.get()
    assert row.next_attempt_at == start + timedelta(seconds=30) and "HTTP 429" in row.last_error

    salesforce_crm.fail_next(1, status=503)
    actions.relay(start + timedelta(seconds=30))
    row = OutboxMessage.objects.get()
    assert row.attempts == 2 and row.next_attempt_at == start + timedelta(seconds=50)

    actions.relay(start + timedelta(seconds=50))
    assert OutboxMessage.objects.get().state == OutboxState.SENT


@pytest.mark.django_db
def test_changes_with_no_crm_record_or_no_mapped_field_are_skipped_not_retried(salesforce_crm: FakeCrm) -> None:
    publish_changes(status("", 1, "sent"), change(Kind.ESCALATION, record="003A", message_id=2, level=2))

    actions.relay()

    rows = {r.message_id: r for r in OutboxMessage.objects.all()}
    assert rows[1].state == OutboxState.SKIPPED and "no crm_record_id" in rows[1].last_error
    assert rows[2].state == OutboxState.SKIPPED and "CRM_FIELD_MAP" in rows[2].last_error
    assert [r for r in salesforce_crm.requests if r.method == "PATCH"] == []


@pytest.mark.django_db
def test_suppression_changes_set_the_opt_out_and_bounce_fields(salesforce_crm: FakeCrm) -> None:
    publish_changes(
        change(Kind.SUPPRESSION_ADDED, record="003A", message_id=None, channel="email", reason="unsubscribe"),
        change(
            Kind.SUPPRESSION_ADDED,
            record="003B",
            message_id=None,
            channel="email",
            reason="hard_bounce",
            detail="550 5.1.1 user unknown",
        ),
    )
    actions.relay()
    publish_changes(
        change(Kind.SUPPRESSION_LIFTED, record="003A", message_id=None, channel="email", reason="unsubscribe")
    )
    actions.relay()

    assert salesforce_crm.records["003A"] == {"HasOptedOutOfEmail": False}
    assert salesforce_crm.records["003B"] == {
        "EmailBouncedReason": "550 5.1.1 user unknown",
        "EmailBouncedDate": "2026-11-20T10:00:00.000Z",
    }
    assert [u.fields for u in salesforce_crm.upserts if u.external_id == "003A"] == [
        {"HasOptedOutOfEmail": True},
        {"HasOptedOutOfEmail": False},
    ]


def mk(kind: str, row_id: int, **payload: Any) -> Change:
    return Change(row_id, row_id, f"k{row_id}", kind, "003A", 1, "record:003A", T0, payload)


def test_later_changes_win_and_fields_no_change_speaks_to_are_left_out() -> None:
    changes = [mk("status_changed", 1, status="sent", needs_review=False), mk("status_changed", 2, status="delivered")]
    assert field_map.fields_for(changes, {"S": "status", "R": "needs_review", "X": "absent"}) == {
        "S": "delivered",
        "R": False,
    }


def test_rules_match_on_kind_and_payload_and_read_nested_keys_and_the_change_itself() -> None:
    rules = {
        "Flag__c": {"kinds": ["escalation"], "where": {"level": [2, 3]}, "value": True},
        "Who__c": "owner.name",
        "Kind__c": "change.kind",
        "Key__c": {"from": "change.idempotency_key"},
    }
    fields = field_map.fields_for([mk("escalation", 1, level=2, owner={"name": "ops"})], rules)
    assert fields == {"Flag__c": True, "Who__c": "ops", "Kind__c": "escalation", "Key__c": "k1"}
    assert "Flag__c" not in field_map.fields_for([mk("escalation", 1, level=1)], rules)
    assert "Flag__c" not in field_map.fields_for([mk("status_changed", 1, level=2)], rules)


@pytest.mark.parametrize(
    "bad",
    [{}, [], {"F": 3}, {"F": {"from": "a", "value": 1}}, {"F": {"kinds": "x", "value": 1}}, {"F": {"when": 1}}],
)
def test_a_broken_field_map_is_reported(bad: Any) -> None:
    assert field_map.validate(bad)


def test_the_default_field_map_is_valid() -> None:
    assert field_map.validate(field_map.DEFAULT_FIELD_MAP) == []


def test_misconfiguration_fails_the_system_check(settings: Any) -> None:
    settings.CRM_BACKEND = "salesforce"
    settings.SALESFORCE_TOKEN_URL = ""
    settings.CRM_FIELD_MAP = {"F": 3}
    with pytest.raises(SystemCheckError) as failure:
        call_command("check")
    assert "crm_sync.E004" in str(failure.value) and "crm_sync.E006" in str(failure.value)
    settings.CRM_BACKEND = "generic"
    settings.CRM_URL = ""
    with pytest.raises(SystemCheckError) as failure:
        call_command("check")
    assert "crm_sync.E002" in str(failure.value) and "crm_sync.E003" in str(failure.value)


class StarvedSalesforce:
    """The Salesforce adapter of a relay starved between its claim and its request past its lease: ``meanwhile``
    (another relay) runs first, then the stale request goes out."""

    name = "salesforce"

    def __init__(self, meanwhile: Any) -> None:
        self.adapter, self.meanwhile, self.batches = SalesforceAdapter(), meanwhile, 0

    def send(self, entries: list, fence: Any = None) -> list:
        self.batches += 1
        if self.batches == 1:
            self.meanwhile()
        return self.adapter.send(entries, fence) if fence else self.adapter.send(entries)

    def close(self) -> None:
        self.adapter.close()


@pytest.mark.django_db
def test_a_sequence_field_and_a_validation_rule_keep_a_stalled_relays_upsert_from_landing_an_older_state(
    salesforce_crm: FakeCrm, settings: Any
) -> None:
    """Salesforce's upsert cannot carry the fencing token; mapped from change.sequence, a field the org refuses to
    lower does the fence's work per record (docs/crm-sync.md, "A relay that lost its lease delivers nothing")."""
    settings.CRM_FIELD_MAP = {"Delivery_Status__c": "status", "Delivery_Sequence__c": "change.sequence"}
    salesforce_crm.guard_rising("Delivery_Sequence__c")  # the org's validation rule
    publish_changes(status("003A", 1, "sent"))
    start = timezone.now()
    later = start + settings.CRM_RELAY_LEASE + timedelta(seconds=1)

    def another_relay_takes_over() -> None:
        publish_changes(status("003A", 1, "delivered"))
        assert actions.relay(later).sent == 2

    first = actions.relay(start, adapter=StarvedSalesforce(another_relay_takes_over))

    assert salesforce_crm.records["003A"] == {"Delivery_Status__c": "delivered", "Delivery_Sequence__c": 2}
    assert [u.fields["Delivery_Status__c"] for u in salesforce_crm.upserts] == ["delivered"]  # the stale one refused
    assert states() == {"sent": 2}
    assert OutboxMessage.objects.filter(last_error="").count() == 2  # the refusal was settled by nobody
    assert first.lost
