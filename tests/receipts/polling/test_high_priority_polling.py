"""The high-priority tier: schedule, claiming, and answers reaching the status machine through the inbox (source
``poll``), against the simulator over HTTP."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.db import close_old_connections
from django.utils import timezone

from crm_sync.models import OutboxMessage
from receipts import polling, schedule
from receipts.actions import polls, review
from receipts.models import InboxState, Message, ReceiptEvent
from receipts.providers.genesys_cloud.client import GenesysCloudClient
from simulator import SimulatorServer
from tests.apprunner import READY_TIMEOUT
from tests.conftest import drain, register
from tests.receipts.conftest import api_requests, preload

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def register_genesys(sim_message: dict, priority: str = "high") -> Message:
    return register(
        provider="genesys_cloud",
        provider_message_id=sim_message["id"],
        conversation_id=sim_message["conversationId"],
        to=sim_message["to"],
        priority=priority,
    )


# --- the schedule (no network) ----------------------------------------------------------------------------


@pytest.mark.parametrize("priority", ["critical", "high"])
def test_high_priority_genesys_message_is_first_polled_10s_after_registration(priority: str) -> None:
    with time_machine.travel(T0, tick=False):
        message = register(provider="genesys_cloud", provider_message_id="a" * 32, priority=priority)
    assert message.next_poll_at == T0 + timedelta(seconds=10)


@pytest.mark.parametrize(
    ("provider", "priority"), [("genesys_cloud", "normal"), ("genesys_cloud", "bulk"), ("genesys_sms", "high")]
)
def test_other_messages_are_left_to_the_bulk_tier_or_their_webhooks(provider: str, priority: str) -> None:
    message = register(provider=provider, provider_message_id="b" * 32, priority=priority)
    assert message.next_poll_at is None


def test_polls_back_off_20_40_then_every_60_seconds() -> None:
    assert [schedule.delay_after(n).total_seconds() for n in range(5)] == [20, 40, 60, 60, 60]


def test_two_workers_claiming_at_once_never_take_the_same_message(transactional_db: None) -> None:
    now = timezone.now()
    for n in range(40):
        register(provider="genesys_cloud", provider_message_id=f"{n:032x}", priority="high", to=f"+1555000{n:04d}")
    Message.objects.update(next_poll_at=now)
    claimed: list[list[int]] = []
    start = threading.Barrier(2)

    def worker() -> None:
        start.wait()
        try:
            claimed.append([m.pk for m in polls.claim_due(now, 25)])
        finally:
            close_old_connections()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=READY_TIMEOUT)

    first, second = claimed
    assert not set(first) & set(second)
    assert len(set(first) | set(second)) == 40
    assert not Message.objects.due_for_poll(now).exists()


# --- polling through the pipeline -------------------------------------------------------------------------


def test_due_message_is_polled_and_its_receipts_reach_the_timeline_as_poll(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    message = register_genesys(preload(sim, count=1, outcome="delivered")[0])

    result = polling.poll_due(genesys, now=message.next_poll_at)
    drain()

    assert (result.claimed, result.polled, result.accepted) == (1, 1, 1)
    message.refresh_from_db()
    assert message.status == "delivered"
    assert message.next_poll_at is None  # final: no more polling
    assert (message.poll_count, message.last_polled_at is not None) == (1, True)
    assert set(message.events.values_list("source", flat=True)) == {"poll"}
    assert set(ReceiptEvent.objects.values_list("source", "state")) == {("poll", InboxState.PROCESSED)}


def test_a_message_not_due_yet_is_not_polled(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    message = register_genesys(preload(sim, count=1)[0])
    result = polling.poll_due(genesys, now=message.next_poll_at - timedelta(seconds=1))
    assert result.claimed == 0
    assert api_requests(sim) == []


def test_repeated_identical_answers_do_not_flood_the_timeline(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    message = register_genesys(preload(sim, count=1, outcome="silent")[0])  # sent, and then nothing
    first = polling.poll_due(genesys, now=message.next_poll_at)
    drain()
    timeline = message.events.count()
    message.refresh_from_db()

    second = polling.poll_due(genesys, now=message.next_poll_at)
    drain()

    assert (first.accepted, second.accepted, second.duplicates) == (1, 0, 1)
    assert ReceiptEvent.objects.count() == 1
    assert message.events.count() == timeline
    message.refresh_from_db()
    assert (message.status, message.poll_count) == ("sent", 2)


def test_each_poll_moves_the_next_one_further_out(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    message = register_genesys(preload(sim, count=1, outcome="silent")[0])
    waits = []
    for _ in range(4):
        polled_at = message.next_poll_at
        polling.poll_due(genesys, now=polled_at)
        message.refresh_from_db()
        waits.append((message.next_poll_at - polled_at).total_seconds())
    assert waits == [20, 40, 60, 60]


def test_several_due_messages_of_one_conversation_cost_one_bulk_request(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    sims = preload(sim, messages=[{"conversationId": "c0ffee00-0000-4000-8000-000000000001"} for _ in range(3)])
    messages = [register_genesys(s) for s in sims]

    result = polling.poll_due(genesys, now=max(m.next_poll_at for m in messages))

    assert (result.polled, result.accepted) == (3, 3)
    assert [r["endpoint"] for r in api_requests(sim)] == [
        "/api/v2/conversations/messages/{conversationId}/messages/bulk"
    ]


def test_a_high_priority_email_is_polled_on_its_conversations_analytics_never_on_the_messaging_endpoint(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    """/conversations/messages/{id}/details knows messages only: an email id answers 404 there, every time."""
    [sent] = preload(sim, channel="email", count=1, outcome="delivered")
    message = register(
        provider="genesys_cloud",
        channel="email",
        provider_message_id=sent["id"],
        conversation_id=sent["conversationId"],
        to=sent["to"],
        priority="high",
    )

    result = polling.poll_due(genesys, now=message.next_poll_at)
    drain()

    assert (result.polled, result.not_found, result.accepted) == (1, 0, 1)
    assert [r["endpoint"] for r in api_requests(sim)] == ["/api/v2/analytics/conversations/{conversationId}/details"]
    message.refresh_from_db()
    assert (message.status, message.needs_review, message.next_poll_at) == ("delivered", False, None)


def test_a_message_the_provider_does_not_know_is_polled_again_later(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    message = register(provider="genesys_cloud", provider_message_id="f" * 32, priority="high")

    result = polling.poll_due(genesys, now=message.next_poll_at)

    assert (result.polled, result.not_found, result.accepted) == (1, 1, 0)
    message.refresh_from_db()
    assert message.next_poll_at is not None
    assert message.poll_count == 1


def test_a_message_still_unknown_past_the_grace_is_flagged_provider_unknown_once(
    sim: SimulatorServer, genesys: GenesysCloudClient, settings: Any
) -> None:
    settings.POLL_NOT_FOUND_GRACE = timedelta(minutes=5)
    message = register(provider="genesys_cloud", provider_message_id="e" * 32, priority="high")
    sent = message.created_at

    early = polling.poll_due(genesys, now=sent + timedelta(minutes=4, seconds=59), ids=[message.pk])
    message.refresh_from_db()
    assert (early.not_found, early.flagged_unknown, message.needs_review) == (1, 0, False)

    late = polling.poll_due(genesys, now=sent + timedelta(minutes=5, seconds=30), ids=[message.pk])
    again = polling.poll_due(genesys, now=sent + timedelta(minutes=7), ids=[message.pk])

    assert (late.not_found, late.flagged_unknown) == (1, 1)
    assert (again.not_found, again.flagged_unknown) == (1, 0)  # already waiting for review: flagged once
    message.refresh_from_db()
    assert (message.needs_review, message.review_reason) == (True, "provider_unknown")
    assert message.status == "pending"  # the flag says nothing about delivery
    [entry] = message.events.all()
    assert (entry.source, entry.provider_code) == ("poll", "not_found")
    assert "404" in entry.description
    [change] = OutboxMessage.objects.filter(message_id=message.pk)
    assert change.kind == "status_changed"
    assert (change.payload["needs_review"], change.payload["review_reason"]) == (True, "provider_unknown")


def test_a_final_message_is_never_flagged_unknown(genesys: GenesysCloudClient) -> None:
    message = register(provider="genesys_cloud", provider_message_id="d" * 32, priority="high")
    Message.objects.filter(pk=message.pk).update(status="delivered")

    assert review.flag_provider_unknown([message.pk], timezone.now(), "404") == 0
    message.refresh_from_db()
    assert message.needs_review is False


def test_an_open_circuit_leaves_the_claimed_messages_due_after_the_cooldown(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    message = register_genesys(preload(sim, count=1)[0])
    for _ in range(genesys.limits.policy.threshold):
        genesys.limits.record(success=False)
    now = message.next_poll_at

    result = polling.poll_due(genesys, now=now)

    assert (result.claimed, result.polled) == (1, 0)
    assert "circuit" in result.stopped
    message.refresh_from_db()
    assert message.next_poll_at >= now + timedelta(seconds=25)  # retry after the cool-down (30 s), not at once
    assert api_requests(sim) == []


def test_after_its_window_a_high_priority_message_is_left_to_the_bulk_tier(
    sim: SimulatorServer, genesys: GenesysCloudClient, settings: object
) -> None:
    message = register_genesys(preload(sim, count=1, outcome="silent")[0])
    now = message.created_at + settings.POLL_HIGH_MAX_AGE  # type: ignore[attr-defined]
    Message.objects.filter(pk=message.pk).update(next_poll_at=now)

    polling.poll_due(genesys, now=now)

    message.refresh_from_db()
    assert message.next_poll_at is None
    assert message.status == "pending"  # not final: the bulk reconciliation covers it from now on
    assert list(Message.objects.awaiting_reconciliation("genesys_cloud", now - timedelta(days=2))) == [message]


def test_operator_poll_again_turns_an_assumed_delivery_into_the_real_outcome(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    sim_message = preload(sim, count=1, outcome="failed", reason="InvalidDestination")[0]
    message = register_genesys(sim_message, priority="normal")
    review.expire_receipts(now=message.created_at + timedelta(hours=25))
    message.refresh_from_db()
    assert (message.status, message.assumed, message.review_reason) == ("delivered", True, "no_receipt")
    now = timezone.now()
    Message.objects.filter(pk=message.pk).update(next_poll_at=now)  # what the review queue's "poll again" does

    result = polling.poll_due(genesys, now=now, ids=[message.pk], limit=1)
    drain()

    message.refresh_from_db()
    assert result.polled == 1
    assert (message.status, message.assumed, message.failure_category) == ("failed", False, "invalid_destination")
    assert message.next_poll_at is None


def test_poll_again_on_a_provider_without_a_status_api_clears_the_request(genesys: GenesysCloudClient) -> None:
    message = register(provider="genesys_sms", provider_message_id="sms-1", priority="high")
    Message.objects.filter(pk=message.pk).update(next_poll_at=timezone.now())

    result = polling.poll_due(genesys, ids=[message.pk], limit=1)

    message.refresh_from_db()
    assert (result.claimed, message.next_poll_at) == (0, None)


def test_claiming_a_batch_costs_a_fixed_number_of_queries(
    django_assert_num_queries: object, sim: SimulatorServer
) -> None:
    now = timezone.now()
    for n in range(30):
        register(provider="genesys_cloud", provider_message_id=f"{n:032x}", priority="high", to=f"+1555000{n:04d}")
    Message.objects.update(next_poll_at=now)
    with django_assert_num_queries(4):  # savepoint-free: BEGIN/SELECT/UPDATE/COMMIT (SELECT ... FOR UPDATE on PG)
        polls.claim_due(now, 50)


@pytest.mark.parametrize(("status", "about_the_message"), [(400, True), (422, True), (401, False), (429, False)])
def test_only_a_4xx_about_the_request_itself_is_left_to_that_message(status: int, about_the_message: bool) -> None:
    from receipts.providers.genesys_cloud.client import GenesysCloudError

    assert polling.refused_for_this_message(GenesysCloudError(status, "bad.request", "x")) is about_the_message


def test_refused_credentials_stop_the_batch_and_keep_the_messages_due(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    sim.configure(clients={"somebody-else": "secret"})
    message = register_genesys(preload(sim, count=1)[0])
    now = message.next_poll_at

    result = polling.poll_due(genesys, now=now)

    assert (result.claimed, result.polled) == (1, 0)
    assert "invalid_client" in result.stopped
    message.refresh_from_db()
    assert message.next_poll_at == now + timedelta(seconds=10)
