"""The bulk tier: one analytics job (cursor paged) for thousands of in-flight messages, the deliveryStatus code
table row by row, and the fallbacks, against the simulator over HTTP."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from receipts import polling, tasks
from receipts.models import Message, MessageEvent, ReceiptEvent
from receipts.providers.genesys_cloud import analytics
from receipts.providers.genesys_cloud.client import AnalyticsSession, GenesysCloudClient
from receipts.providers.genesys_cloud.parser import REASON, GenesysCloud
from simulator import SimulatorServer
from tests.conftest import drain
from tests.receipts.conftest import api_requests, preload

# --- the code table, row by row (no database) -------------------------------------------------------------

STATUS_ROWS = [
    # deliveryStatus, our status, engagement
    ("Queued", "queued", ""),
    ("Sent", "sent", ""),
    ("Published", "sent", ""),
    ("DeliveryPushed", "sent", ""),
    ("DeliverySuccess", "delivered", ""),
    ("DeliveryFailed", "failed", ""),
    ("Failed", "failed", ""),
    ("Read", None, "read"),  # a read implies delivered (the status machine)
    ("Received", None, ""),  # an inbound message's status: changes nothing
]


def session(status: str, extended: str = "", when: str = "2026-11-20T10:00:05.000Z") -> AnalyticsSession:
    return AnalyticsSession("s-1", "customer", "message", "outbound", "sms", status, when, extended, "")


def parsed(body: dict[str, Any]) -> list[Any]:
    return GenesysCloud().parse(json.dumps(body).encode(), "application/json")


IN_FLIGHT = polling.InFlight(1, "a" * 32, "conv-1", "sms", timezone.now())


def test_every_analytics_delivery_status_is_in_the_table() -> None:
    assert [row[0] for row in STATUS_ROWS] == list(analytics.DELIVERY_STATUS)


@pytest.mark.parametrize(("delivery_status", "status", "engagement"), STATUS_ROWS)
def test_delivery_status_maps_through_the_provider_code_tables(
    delivery_status: str, status: str | None, engagement: str
) -> None:
    body = analytics.message_data_from_session(IN_FLIGHT, "conv-1", session(delivery_status))

    [receipt] = parsed(body)

    assert (receipt.outcome.status, receipt.outcome.engagement) == (status, engagement)
    assert receipt.provider_message_id == "a" * 32
    assert receipt.occurred_at.isoformat() == "2026-11-20T10:00:05+00:00"
    assert receipt.raw["analytics"]["deliveryStatus"] == delivery_status


@pytest.mark.parametrize("extended", ["", "MessageExpired", "whatever analytics says"])
@pytest.mark.parametrize("delivery_status", ["DeliveryFailed", "Failed"])
def test_a_failed_sms_session_is_not_answered_from_analytics_but_looked_up(extended: str, delivery_status: str) -> None:
    """Analytics gives no SMS failure reason (extendedDeliveryStatus is an email matter): the message itself is
    looked up, so that an expiry, an opt-out or a bad number keeps its category and its effect."""
    failed = session(delivery_status, extended)
    assert analytics.needs_lookup(IN_FLIGHT, failed)
    assert "reasons" not in analytics.message_data_from_session(IN_FLIGHT, "conv-1", failed)
    assert not analytics.needs_lookup(IN_FLIGHT, session("DeliverySuccess"))


@pytest.mark.parametrize(
    ("extended", "looked_up", "status", "category"),
    [
        ("MessageExpired", False, "expired", "temporary_network"),
        ("RecipientOptedOut", False, "rejected", "opted_out"),
        ("NotAReasonCode", False, "failed", "unknown"),
        ("", False, "failed", "unknown"),
    ],
)
def test_a_failed_email_session_counts_its_extended_status_only_when_it_is_a_known_reason(
    extended: str, looked_up: bool, status: str, category: str
) -> None:
    """Never looked up on the messaging endpoints, which know no email: analytics is all there is of one."""
    email = polling.InFlight(2, "b" * 32, "conv-2", "email", timezone.now())
    failed = AnalyticsSession(
        "s-2", "customer", "email", "outbound", "", "DeliveryFailed", "2026-11-20T10:00:05Z", extended, ""
    )

    assert analytics.needs_lookup(email, failed) is looked_up
    [receipt] = parsed(analytics.message_data_from_session(email, "conv-2", failed))
    assert (receipt.outcome.status, receipt.outcome.category) == (status, category)


def test_an_unknown_delivery_status_is_kept_and_marked_unmapped() -> None:
    [receipt] = parsed(analytics.message_data_from_session(IN_FLIGHT, "conv-1", session("Teleported")))
    assert (receipt.outcome.status, receipt.outcome.unmapped, receipt.provider_code) == (None, True, "Teleported")


def test_the_latest_delivery_status_of_the_right_media_wins() -> None:
    from receipts.providers.genesys_cloud.client import AnalyticsConversation

    conversation = AnalyticsConversation.from_json(
        {
            "conversationId": "c",
            "participants": [
                {"purpose": "agent", "sessions": [{"mediaType": "message"}]},
                {
                    "purpose": "customer",
                    "sessions": [
                        {
                            "mediaType": "message",
                            "deliveryStatus": "Sent",
                            "deliveryStatusChangeDate": "2026-11-20T10:00:01Z",
                        },
                        {
                            "mediaType": "message",
                            "deliveryStatus": "DeliverySuccess",
                            "deliveryStatusChangeDate": "2026-11-20T10:00:09Z",
                        },
                        {
                            "mediaType": "email",
                            "deliveryStatus": "Failed",
                            "deliveryStatusChangeDate": "2026-11-20T11:00Z",
                        },
                    ],
                },
            ],
        }
    )
    assert analytics.delivery_session(conversation, "sms").delivery_status == "DeliverySuccess"
    assert analytics.delivery_session(conversation, "email").delivery_status == "Failed"


# --- reconciliation over HTTP -----------------------------------------------------------------------------


def in_flight(sims: list[dict[str, Any]], channel: str = "sms", priority: str = "bulk") -> list[Message]:
    """Messages registered for what the simulator sent (built in bulk: 10,000 registrations one by one is slow)."""
    rows = [
        Message(
            channel=channel,
            provider="genesys_cloud",
            provider_message_id=s["id"],
            conversation_id=s["conversationId"],
            to=s["to"],
            priority=priority,
            status="sent",
        )
        for s in sims
    ]
    return Message.objects.bulk_create(rows, batch_size=1000)


def expected_status(sim_message: dict[str, Any]) -> str:
    """What the simulator's outcome means in our model (a failure by its reason, through the provider's table)."""
    outcome, reason = sim_message["outcome"], sim_message["reason"]
    if outcome in ("failed", "expired"):
        return REASON[reason].status or ""
    return {"delivered": "delivered", "silent": "sent"}[outcome]


@pytest.mark.django_db
def test_reconciling_10000_in_flight_messages_takes_at_most_50_requests(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    """One job and its pages answer every message analytics can; each SMS failure needs its own lookup (analytics
    gives no reason, and each agentless send has its conversation): the round looks up what its budget allows,
    failures first, and hands the rest to the per-message tier, which finds their reasons."""
    sims = preload(sim, count=10_000)
    in_flight(sims)
    failures = [s for s in sims if s["outcome"] in ("failed", "expired")]

    result = polling.reconcile(genesys)

    requests = api_requests(sim)
    print(f"\n10,000 in flight: {len(requests)} requests ({len(requests) / 10_000:.4f} per message)")
    assert len(requests) <= 50
    looked_up = result.fallback_requests
    assert looked_up == settings_budget() and result.handed_on == len(failures) - looked_up
    assert (result.in_flight, result.answered, result.stopped) == (10_000, 10_000 - result.handed_on, "")
    assert ReceiptEvent.objects.filter(source="poll", state="received").count() == result.answered


@pytest.mark.django_db
def test_failures_past_the_rounds_budget_get_their_reason_from_the_per_message_tier(
    sim: SimulatorServer, genesys: GenesysCloudClient, settings: Any
) -> None:
    settings.POLL_BULK_FALLBACK_REQUESTS = 3
    sims = preload(sim, count=300)
    in_flight(sims)
    failures = [s for s in sims if s["outcome"] in ("failed", "expired")]
    assert len(failures) > 3

    result = polling.reconcile(genesys)
    assert (result.fallback_requests, result.handed_on) == (3, len(failures) - 3)
    while polling.poll_due(genesys, now=timezone.now() + timedelta(seconds=1)).polled:
        pass
    drain()

    by_id = dict(Message.objects.values_list("provider_message_id", "status"))
    assert {s["id"]: by_id[s["id"]] for s in sims} == {s["id"]: expected_status(s) for s in sims}
    categories = dict(Message.objects.values_list("provider_message_id", "failure_category"))
    expired = [s["id"] for s in failures if s["outcome"] == "expired"]
    assert expired and {categories[i] for i in expired} == {"temporary_network"}


def settings_budget() -> int:
    from django.conf import settings

    return settings.POLL_BULK_FALLBACK_REQUESTS


@pytest.mark.django_db
def test_reconciled_answers_reach_every_message_through_the_status_machine(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    sims = preload(sim, count=300)
    in_flight(sims)

    polling.reconcile(genesys)
    drain()

    by_id = dict(Message.objects.values_list("provider_message_id", "status"))
    assert {s["id"]: by_id[s["id"]] for s in sims} == {s["id"]: expected_status(s) for s in sims}
    assert set(ReceiptEvent.objects.values_list("source", "state")) == {("poll", "processed")}
    assert set(MessageEvent.objects.values_list("source", flat=True)) == {"poll"}


@pytest.mark.django_db
def test_a_second_round_stores_nothing_new_and_asks_only_about_what_is_still_in_flight(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    sims = preload(sim, count=200, outcome="silent") + preload(sim, count=200, outcome="delivered")
    in_flight(sims)
    polling.reconcile(genesys)
    drain()
    stored = ReceiptEvent.objects.count()

    again = polling.reconcile(genesys)

    assert (again.in_flight, again.answered, again.accepted, again.duplicates) == (200, 200, 0, 200)
    assert ReceiptEvent.objects.count() == stored


@pytest.mark.django_db
def test_several_messages_in_one_conversation_are_looked_up_in_bulk(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    shared = "c0ffee00-0000-4000-8000-0000000000aa"
    sims = preload(sim, messages=[{"conversationId": shared, "outcome": "delivered"} for _ in range(3)])
    in_flight(sims)

    result = polling.reconcile(genesys)
    drain()

    assert (result.answered, result.fallback_requests) == (3, 1)
    assert set(Message.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db
def test_email_status_comes_from_analytics(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    sims = preload(sim, channel="email", count=5, outcome="delivered")
    in_flight(sims, channel="email")

    polling.reconcile(genesys)
    drain()

    assert set(Message.objects.values_list("status", flat=True)) == {"delivered"}


@pytest.mark.django_db
def test_emails_the_job_does_not_answer_are_looked_up_by_conversation_never_on_the_messaging_endpoints(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    """A conversation the job has not seen yet (here: outside its interval) is asked for by its own analytics
    details; an email with no conversation id is not asked for at all."""
    sims = preload(sim, channel="email", count=2, outcome="delivered", age_seconds=3 * 86400)
    in_flight(sims, channel="email")
    in_flight([{"id": "f" * 32, "conversationId": "", "to": "x@example.com"}], channel="email")

    polling.reconcile(genesys, now=timezone.now())
    drain()

    endpoints = {r["endpoint"] for r in api_requests(sim)}
    assert not {e for e in endpoints if "/conversations/messages/" in e}
    assert "/api/v2/analytics/conversations/{conversationId}/details" in endpoints
    assert sorted(Message.objects.values_list("status", flat=True)) == ["delivered", "delivered", "sent"]


@pytest.mark.django_db
def test_what_analytics_does_not_know_costs_at_most_the_fallback_budget(
    sim: SimulatorServer, genesys: GenesysCloudClient, settings: Any
) -> None:
    settings.POLL_BULK_FALLBACK_REQUESTS = 5
    in_flight([{"id": f"{n:032x}", "conversationId": f"unknown-{n}", "to": "+15550001111"} for n in range(30)])

    result = polling.reconcile(genesys)

    assert (result.answered, result.fallback_requests) == (0, 5)
    assert len(api_requests(sim)) <= 1 + 2 + 1 + 1 + 5  # submit, status, a page, delete, the fallbacks


@pytest.mark.django_db
def test_high_priority_messages_still_polled_one_by_one_are_not_reconciled(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    [message] = in_flight(preload(sim, count=1), priority="high")
    Message.objects.filter(pk=message.pk).update(next_poll_at=timezone.now() + timedelta(seconds=10))

    assert polling.reconcile(genesys).in_flight == 0
    assert api_requests(sim) == []


@pytest.mark.django_db
def test_only_one_reconciliation_runs_at_a_time(sim: SimulatorServer, settings: Any, tmp_path: Any) -> None:
    settings.GENESYS_CLOUD_BASE_URL = settings.GENESYS_CLOUD_LOGIN_URL = sim.url
    settings.GENESYS_CLOUD_CLIENT_ID, settings.GENESYS_CLOUD_CLIENT_SECRET = f"lock-{tmp_path.name}", "secret"
    settings.VAR_DIR = tmp_path
    in_flight(preload(sim, count=3))
    genesys = tasks.configured_client()
    assert genesys is not None

    with genesys.limits.exclusive("reconcile", ttl=60):
        assert tasks.reconcile_bulk() == 0
    assert tasks.reconcile_bulk() == 3


def test_without_credentials_the_tasks_do_nothing(settings: Any) -> None:
    settings.GENESYS_CLOUD_CLIENT_ID = settings.GENESYS_CLOUD_CLIENT_SECRET = ""
    assert tasks.poll_high_priority() == 0
    assert tasks.reconcile_bulk() == 0
    assert tasks.poll_messages([1, 2]) == 0
