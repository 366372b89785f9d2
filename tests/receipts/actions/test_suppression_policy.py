"""Suppression from receipts, through the real pipeline: webhook in, drain, list out. One test per rule."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from receipts import tasks
from receipts.actions import effects, process, suppression
from receipts.events import Kind
from receipts.models import InboxState, ReceiptEvent, SoftBounce, Suppression, SuppressionChange
from tests.conftest import drain, post_webhook, register
from tests.receipts.actions.support import (
    active,
    deliver,
    genesys_receipt,
    recorded_events,
    sms_receipt,
    webex_delivery,
    webex_inbound,
)

pytestmark = pytest.mark.django_db

EMAIL = "customer@example.com"
NUMBER = "+15551234567"


def email_message(transid: str, to: str = EMAIL, **fields: Any) -> Any:
    return register(channel="email", provider="webex_connect", provider_message_id=transid, to=to, **fields)


def sms_message(message_id: str, provider: str = "genesys_sms", **fields: Any) -> Any:
    return register(channel="sms", provider=provider, provider_message_id=message_id, to=NUMBER, **fields)


def bounce(transid: str, kind: str, at: str = "2026-11-20T10:00:00Z", to: str = EMAIL) -> dict[str, Any]:
    return webex_delivery(transid, "7520", to=to, description=kind, status="Bounce", at=at)


# --- hard bounce ---------------------------------------------------------------------------------------


def test_email_hard_bounce_suppresses_the_address_at_once_with_its_evidence(client: Any) -> None:
    message = email_message("t-1", to="Customer@Example.COM")

    deliver(client, "webex_connect", bounce("t-1", "Permanent_NoEmail"))

    row = Suppression.objects.get()
    assert (row.channel, row.address, row.reason, row.source) == ("email", EMAIL, "hard_bounce", "receipt")
    assert row.expires_at is None and row.is_active()
    assert row.message == message
    assert row.evidence["provider_code"] == "7520"
    assert row.evidence["bounce_type"] == "Permanent_NoEmail"
    assert row.evidence["message_id"] == message.pk
    added = row.history.get()
    assert (added.action, added.source, added.actor) == ("added", "receipt", "receipt:webex_connect")
    assert added.receipt_key == row.evidence["receipt_key"]


def test_hard_bounce_suppression_is_a_setting(client: Any, settings: Any) -> None:
    settings.SUPPRESS_HARD_BOUNCE = False
    email_message("t-1")
    deliver(client, "webex_connect", bounce("t-1", "Permanent_General"))
    assert not Suppression.objects.exists()


# --- soft bounces --------------------------------------------------------------------------------------


def test_three_soft_bounces_within_seven_days_suppress_for_thirty_days(client: Any, time_machine: Any) -> None:
    for i in range(3):
        email_message(f"t-{i}")
    time_machine.move_to("2026-11-01T10:00:00Z", tick=False)
    deliver(client, "webex_connect", bounce("t-0", "Transient_MailboxFull", "2026-11-01T10:00:00Z"))
    time_machine.move_to("2026-11-04T10:00:00Z", tick=False)
    deliver(client, "webex_connect", bounce("t-1", "Transient_General", "2026-11-04T10:00:00Z"))
    assert active("email", EMAIL) == []

    time_machine.move_to("2026-11-07T09:00:00Z", tick=False)
    deliver(client, "webex_connect", bounce("t-2", "Transient_MailboxFull", "2026-11-07T09:00:00Z"))

    row = Suppression.objects.get()
    assert row.reason == "soft_bounce_threshold"
    assert row.expires_at == timezone.now() + timedelta(days=30)
    assert len(row.evidence["soft_bounces"]) == 3
    assert suppression.check("email", [EMAIL])[0]["suppressed"] is True

    time_machine.shift(timedelta(days=30, seconds=1))
    assert suppression.check("email", [EMAIL])[0]["suppressed"] is False


def test_soft_bounces_spread_over_more_than_seven_days_do_not_suppress(client: Any, time_machine: Any) -> None:
    for i, day in enumerate(["2026-11-01", "2026-11-05", "2026-11-09"]):
        email_message(f"t-{i}")
        time_machine.move_to(f"{day}T10:00:00Z", tick=False)
        deliver(client, "webex_connect", bounce(f"t-{i}", "Transient_General", f"{day}T10:00:00Z"))

    assert SoftBounce.objects.count() == 3
    assert not Suppression.objects.exists()


def test_soft_bounces_arriving_out_of_order_still_count_within_their_window(client: Any, time_machine: Any) -> None:
    time_machine.move_to("2026-11-10T10:00:00Z", tick=False)
    for i, day in enumerate(["2026-11-09", "2026-11-03", "2026-11-05"]):  # the newest first
        email_message(f"t-{i}")
        deliver(client, "webex_connect", bounce(f"t-{i}", "Transient_General", f"{day}T10:00:00Z"))

    assert active("email", EMAIL) == ["soft_bounce_threshold"]


def test_the_same_soft_bounce_arriving_twice_counts_once(client: Any) -> None:
    for i in range(3):
        email_message(f"t-{i}")
    first, second = bounce("t-0", "Transient_General"), bounce("t-1", "Transient_General")
    deliver(client, "webex_connect", first)
    deliver(client, "webex_connect", first)  # a provider retry: the same bytes
    deliver(client, "webex_connect", [first, second])  # the same bounce inside another body
    ReceiptEvent.objects.update(state=InboxState.RECEIVED)  # and processed again, as after a lost worker
    drain()

    assert SoftBounce.objects.count() == 2
    assert not Suppression.objects.exists()

    deliver(client, "webex_connect", bounce("t-2", "Transient_General"))
    assert active("email", EMAIL) == ["soft_bounce_threshold"]


def test_soft_bounce_threshold_window_and_duration_are_settings(client: Any, settings: Any, time_machine: Any) -> None:
    settings.SOFT_BOUNCE_THRESHOLD = 2
    settings.SOFT_BOUNCE_WINDOW_DAYS, settings.SOFT_BOUNCE_WINDOW = 1, timedelta(days=1)
    settings.SOFT_BOUNCE_SUPPRESS_DAYS, settings.SOFT_BOUNCE_SUPPRESS = 2, timedelta(days=2)
    time_machine.move_to("2026-11-02T12:00:00Z", tick=False)
    for i, at in enumerate(["2026-11-01T10:00:00Z", "2026-11-02T11:00:00Z"]):
        email_message(f"t-{i}")
        deliver(client, "webex_connect", bounce(f"t-{i}", "Transient_General", at))
    assert not Suppression.objects.exists()  # 25 hours apart

    email_message("t-2")
    deliver(client, "webex_connect", bounce("t-2", "Transient_General", "2026-11-02T11:30:00Z"))
    row = Suppression.objects.get()
    assert row.expires_at == timezone.now() + timedelta(days=2)


def test_an_expired_soft_bounce_suppression_is_closed_with_history_and_announced(
    client: Any, time_machine: Any
) -> None:
    time_machine.move_to("2026-11-01T10:00:00Z", tick=False)
    register(channel="email", provider="webex_connect", provider_message_id="x", to=EMAIL, crm_record_id="CRM-1")
    for i in range(3):
        email_message(f"t-{i}")
        deliver(client, "webex_connect", bounce(f"t-{i}", "Transient_General", "2026-11-01T09:00:00Z"))
    row = Suppression.objects.get()

    time_machine.shift(timedelta(days=29))
    assert suppression.expire_due() == 0
    time_machine.shift(timedelta(days=1))
    with recorded_events() as seen:
        assert suppression.expire_due() == 1

    row.refresh_from_db()
    assert (row.lifted_at, row.lift_source, row.lift_reason) == (row.expires_at, "system", "expired")
    assert [h.action for h in row.history.all()] == ["added", "expired"]
    assert [(e.kind, e.crm_record_id, e.payload["suppressed"]) for e in seen] == [
        (Kind.SUPPRESSION_LIFTED, "CRM-1", False)
    ]


def test_soft_bounces_too_old_to_count_are_forgotten(client: Any, time_machine: Any) -> None:
    time_machine.move_to("2026-11-01T10:00:00Z", tick=False)
    email_message("t-1")
    deliver(client, "webex_connect", bounce("t-1", "Transient_General", "2026-11-01T10:00:00Z"))
    time_machine.shift(timedelta(days=14))
    assert tasks.expire_suppressions() == 0
    assert SoftBounce.objects.count() == 1
    time_machine.shift(timedelta(seconds=1))
    tasks.expire_suppressions()
    assert SoftBounce.objects.count() == 0


# --- complaint -----------------------------------------------------------------------------------------


def test_complaint_suppresses_the_address(client: Any) -> None:
    email_message("t-1")
    deliver(client, "webex_connect", webex_delivery("t-1", "7521", to=EMAIL, description="abuse", status="Complaint"))
    assert active("email", EMAIL) == ["complaint"]


def test_complaint_suppression_is_a_setting(client: Any, settings: Any) -> None:
    settings.SUPPRESS_COMPLAINT = False
    email_message("t-1")
    deliver(client, "webex_connect", webex_delivery("t-1", "7521", to=EMAIL, status="Complaint"))
    assert not Suppression.objects.exists()


# --- unsubscribe ---------------------------------------------------------------------------------------


def test_webex_unsubscribe_event_suppresses_the_address_on_its_channel_only(client: Any) -> None:
    deliver(client, "webex_connect", webex_inbound("Unsubscribe", "Customer@Example.com", channel="Email"))

    assert active("email", EMAIL) == ["unsubscribe"]
    assert not Suppression.objects.filter(channel="sms").exists()
    row = Suppression.objects.get()
    assert row.message is None  # no message to that address: the event alone is the evidence
    assert row.evidence["provider_code"] == "Unsubscribe"


@pytest.mark.parametrize(
    "text", ["STOP", "stop", "  Stop\n", "UNSUBSCRIBE", "end", "Quit", "STOPALL", "revoke", "OptOut", "CANCEL"]
)
def test_inbound_sms_opt_out_words_suppress_the_number(client: Any, text: str) -> None:
    deliver(client, "webex_connect", webex_inbound("MO", "15551234567", text=text))

    assert active("sms", NUMBER) == ["unsubscribe"]
    assert Suppression.objects.get().evidence["text"] == text.strip()


@pytest.mark.parametrize("text", ["please stop calling at night", "STOP!", "stopp", "start"])
def test_inbound_sms_that_is_not_an_opt_out_word_does_not_suppress(client: Any, text: str) -> None:
    deliver(client, "webex_connect", webex_inbound("MO", "15551234567", text=text))
    assert not Suppression.objects.exists()


def test_genesys_recipient_opted_out_suppresses_the_recipient(client: Any) -> None:
    message = sms_message("gc-1", provider="genesys_cloud")
    deliver(client, "genesys_cloud", genesys_receipt("gc-1", "Failed", "RecipientOptedOut"))

    assert active("sms", NUMBER) == ["unsubscribe"]
    assert Suppression.objects.get().message == message


def test_subscribe_lifts_an_email_opt_out_with_history(client: Any) -> None:
    deliver(client, "webex_connect", webex_inbound("Unsubscribe", EMAIL, channel="email", tid="u-1"))
    deliver(
        client,
        "webex_connect",
        webex_inbound("Subscribe", EMAIL, channel="email", tid="s-1", at="2026-11-20T11:00:00Z"),
    )

    row = Suppression.objects.get()
    assert not row.is_active()
    assert (row.lift_source, row.lifted_by) == ("receipt", "receipt:webex_connect")
    assert [h.action for h in row.history.all()] == ["added", "lifted"]
    assert row.history.last().evidence["provider_code"] == "Subscribe"


@pytest.mark.parametrize("word", ["START", "unstop", " Start "])
def test_start_and_unstop_lift_an_sms_opt_out(client: Any, word: str) -> None:
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="STOP", tid="m-1"))
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text=word, tid="m-2", at="2026-11-20T10:05:00Z"))
    assert active("sms", NUMBER) == []


def test_opt_in_never_lifts_a_bounce_a_complaint_or_an_operators_entry(client: Any) -> None:
    email_message("t-1")
    deliver(client, "webex_connect", bounce("t-1", "Permanent_General"))
    deliver(client, "webex_connect", webex_delivery("t-1", "7521", to=EMAIL, status="Complaint"))
    deliver(client, "webex_connect", webex_inbound("Unsubscribe", EMAIL, channel="email", tid="u-1"))
    suppression.suppress("email", EMAIL, "manual", source="operator", actor="operator:ann", note="legal hold")
    assert active("email", EMAIL) == ["complaint", "hard_bounce", "manual", "unsubscribe"]

    deliver(client, "webex_connect", webex_inbound("Subscribe", EMAIL, channel="email", tid="s-1"))

    assert active("email", EMAIL) == ["complaint", "hard_bounce", "manual"]


def test_opt_out_and_opt_in_in_one_batch_take_effect_in_the_order_they_happened(client: Any) -> None:
    # Posted in the wrong order, processed in one batch: the later START wins.
    post_webhook(
        client,
        "webex_connect",
        json.dumps(webex_inbound("MO", NUMBER, text="START", tid="2", at="2026-11-20T10:05:00Z")),
    )
    post_webhook(
        client,
        "webex_connect",
        json.dumps(webex_inbound("MO", NUMBER, text="STOP", tid="1", at="2026-11-20T10:00:00Z")),
    )
    assert drain() == 2

    assert active("sms", NUMBER) == []
    row = Suppression.objects.get()
    assert [h.action for h in row.history.all()] == ["added", "lifted"]


def test_an_opt_in_older_than_the_opt_out_never_lifts_it_whatever_the_processing_order(client: Any) -> None:
    # START sent at 10:00, STOP at 10:05, but STOP is processed first (another batch, another worker).
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="STOP", tid="2", at="2026-11-20T10:05:00Z"))
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="START", tid="1", at="2026-11-20T10:00:00Z"))

    assert active("sms", NUMBER) == ["unsubscribe"]  # the recipient's last word was STOP
    row = Suppression.objects.get()
    assert [h.action for h in row.history.all()] == ["added"]

    # A START sent after the STOP still lifts it.
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="START", tid="3", at="2026-11-20T10:06:00Z"))
    assert active("sms", NUMBER) == []


def test_an_opt_in_is_weighed_against_an_operators_opt_out_by_when_it_was_recorded(client: Any) -> None:
    suppression.suppress("sms", NUMBER, "unsubscribe", source="operator", actor="operator:ann", note="asked by phone")
    recorded = Suppression.objects.get().created_at

    before = (recorded - timedelta(minutes=1)).isoformat()
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="START", tid="1", at=before))
    assert active("sms", NUMBER) == ["unsubscribe"]

    after = (recorded + timedelta(minutes=1)).isoformat()
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="START", tid="2", at=after))
    assert active("sms", NUMBER) == []


def test_an_inbound_event_processed_again_changes_nothing(client: Any) -> None:
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="STOP", tid="m-1"))
    deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="START", tid="m-2", at="2026-11-20T10:05:00Z"))
    # As if a killed worker's task came back: both events run again (there is no message for the timeline).
    ReceiptEvent.objects.update(state=InboxState.RECEIVED)
    drain()

    assert active("sms", NUMBER) == []
    assert SuppressionChange.objects.count() == 2


# --- SMS invalid destination and temporary failures ------------------------------------------------------


def test_sms_invalid_destination_suppresses_the_number(client: Any) -> None:
    sms_message("m-1")
    deliver(client, "genesys_sms", sms_receipt("m-1", 5, 3))
    assert active("sms", NUMBER) == ["invalid_destination"]


def test_sms_invalid_destination_suppression_is_a_setting(client: Any, settings: Any) -> None:
    settings.SUPPRESS_SMS_INVALID_DESTINATION = False
    sms_message("m-1")
    deliver(client, "genesys_sms", sms_receipt("m-1", 5, 3))
    assert not Suppression.objects.exists()


def test_email_invalid_destination_that_is_not_a_bounce_does_not_suppress(client: Any) -> None:
    email_message("t-1")
    deliver(client, "webex_connect", webex_delivery("t-1", "7523", to=EMAIL, status="Failed"))
    assert not Suppression.objects.exists()


@pytest.mark.parametrize(
    ("provider", "body"),
    [
        ("genesys_sms", sms_receipt("m-1", 3)),  # expired
        ("genesys_sms", sms_receipt("m-1", 5, 6)),  # carrier throttle
        ("genesys_sms", sms_receipt("m-1", 5, 98)),  # temporary network
        ("genesys_sms", sms_receipt("m-1", 8, 1)),  # permanent block: not a reason to suppress either
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "RateLimited")),
        ("genesys_cloud", genesys_receipt("m-1", "Failed", "MessageExpired")),
    ],
)
def test_temporary_failures_never_suppress(client: Any, provider: str, body: Any) -> None:
    sms_message("m-1", provider=provider)
    deliver(client, provider, body)
    assert not Suppression.objects.exists()


def test_a_single_soft_bounce_does_not_suppress(client: Any) -> None:
    email_message("t-1")
    deliver(client, "webex_connect", bounce("t-1", "Transient_MailboxFull"))
    assert not Suppression.objects.exists()


# --- the CRM --------------------------------------------------------------------------------------------


def test_changes_are_announced_keyed_on_the_latest_crm_record_with_flags_and_no_address(
    client: Any, time_machine: Any
) -> None:
    time_machine.move_to("2026-11-20T09:00:00Z", tick=False)
    bounced = email_message("t-old", crm_record_id="CRM-OLD")
    time_machine.shift(timedelta(minutes=5))
    latest = email_message("t-new", crm_record_id="CRM-NEW")
    time_machine.shift(timedelta(minutes=5))
    email_message("t-anon")  # the very latest message has no CRM record: the latest one that has counts

    with recorded_events() as seen:
        deliver(client, "webex_connect", bounce("t-old", "Permanent_General"))
    [event] = [e for e in seen if e.kind == Kind.SUPPRESSION_ADDED]
    assert (event.crm_record_id, event.message_id) == ("CRM-NEW", latest.pk)
    assert event.payload["evidence_message_id"] == bounced.pk
    assert event.payload["bounced"] is True and event.payload["opted_out"] is False
    assert event.payload["active_reasons"] == ["hard_bounce"]
    assert (event.payload["channel"], event.payload["reason"], event.payload["detail"]) == (
        "email",
        "hard_bounce",
        "Permanent_General",
    )
    assert "address" not in event.payload
    assert EMAIL not in json.dumps(event.payload)
    assert event.payload["address_sha256"] == suppression.address_hash(EMAIL)


def test_opt_out_and_opt_in_are_announced_with_the_state_after_each(client: Any) -> None:
    register(channel="sms", provider="genesys_sms", provider_message_id="m-1", to=NUMBER, crm_record_id="CRM-1")
    with recorded_events() as seen:
        deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="STOP", tid="1"))
        deliver(client, "webex_connect", webex_inbound("MO", NUMBER, text="START", tid="2", at="2026-11-20T11:00:00Z"))

    ours = [
        (e.kind, e.crm_record_id, e.payload["opted_out"], e.payload["suppressed"])
        for e in seen
        if "suppression" in e.kind
    ]
    assert ours == [
        (Kind.SUPPRESSION_ADDED, "CRM-1", True, True),
        (Kind.SUPPRESSION_LIFTED, "CRM-1", False, False),
    ]


def test_an_address_with_no_crm_record_is_announced_with_the_address(client: Any) -> None:
    with recorded_events() as seen:
        deliver(client, "webex_connect", webex_inbound("Unsubscribe", EMAIL, channel="email"))
    [event] = seen
    assert (event.kind, event.crm_record_id, event.payload["address"]) == (Kind.SUPPRESSION_ADDED, "", EMAIL)


# --- cost -----------------------------------------------------------------------------------------------


@pytest.fixture
def policy_queries(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of queries each call of effects.apply_receipt_effects made (the pipeline calls it per batch)."""
    counts: list[int] = []
    original = effects.apply_receipt_effects

    def counted(effects: Any, now: Any) -> None:
        with CaptureQueriesContext(connection) as queries:
            original(effects, now)
        # The CRM outbox's own writes (its receiver of the published events) are its business, not ours.
        counts.append(sum(1 for q in queries if "crm_sync_" not in q["sql"]))

    monkeypatch.setattr(effects, "apply_receipt_effects", counted)
    return counts


def test_a_batch_with_nothing_to_suppress_costs_no_policy_query(client: Any, policy_queries: list[int]) -> None:
    for i in range(10):
        register(provider_message_id=f"q-{i}")
        body = {"id": f"q-{i}", "status": "delivered", "timestamp": "2026-11-20T10:00:00Z"}
        post_webhook(client, "generic", json.dumps(body))
    assert process.process_due() == 10
    assert policy_queries == [0]


def opt_outs(client: Any, count: int, offset: int) -> None:
    for i in range(offset, offset + count):
        number = f"+1555200{i:04d}"
        register(provider="genesys_sms", provider_message_id=f"s-{i}", to=number, crm_record_id=f"C{i}")
        post_webhook(client, "webex_connect", json.dumps(webex_inbound("MO", number, text="STOP", tid=str(i))))
    assert process.process_due() == count


def test_suppressing_a_whole_batch_costs_a_fixed_number_of_queries(client: Any, policy_queries: list[int]) -> None:
    opt_outs(client, 3, 0)
    opt_outs(client, 30, 3)
    # Open suppressions of the addresses, history keys seen, insert suppressions, insert history, the latest
    # CRM record per address: the same for 30 opt-outs as for 3.
    assert policy_queries == [5, 5]
    assert Suppression.objects.active().count() == 33
