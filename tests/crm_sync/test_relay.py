"""The relay against the fake CRM's generic endpoint: batches, coalescing, order, backoff, dead rows, outages."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, cast

import httpx
import pytest
from django.db import connection, transaction
from django.utils import timezone

from crm_sync import actions
from crm_sync.adapters.generic import GenericAdapter
from crm_sync.models import OutboxMessage, OutboxState, RelayLease
from receipts.events import Kind, publish
from simulator.fake_crm import FakeCrm
from tests.apprunner import READY_TIMEOUT
from tests.conftest import drain, is_postgres, post_webhook, register
from tests.crm_sync.conftest import T0, change, publish_changes, relay_until_idle, states

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def wall_clock(time_machine: Any) -> None:
    """Every test here runs on injected time: the wall clock stands at T0 unless a test moves it, and the relay runs
    on the time it is given. A loaded machine changes how long a test takes, never what it sees."""
    time_machine.move_to(T0, tick=False)


def end_pause() -> None:
    """As if the probe after a refused batch had been answered: these tests are about single records, and the
    pause of the CRM as a whole has tests of its own."""
    RelayLease.objects.update(paused_until=None, failures=0, pause_reason="")


def keys_in_order() -> list[str]:
    return list(OutboxMessage.objects.order_by("id").values_list("idempotency_key", flat=True))


def test_due_changes_go_out_signed_in_one_batch_and_are_marked_sent(generic_crm: FakeCrm) -> None:
    publish_changes(*[change(record=f"R-{i}", message_id=i, status="delivered") for i in range(5)])

    report = actions.relay()

    assert (report.sent, report.batches) == (5, 1)
    assert states() == {"sent": 5}
    assert [c.key for c in generic_crm.changes()] == keys_in_order()
    [request] = generic_crm.requests
    assert request.status == 200 and request.idempotency_key.startswith("batch_")
    assert OutboxMessage.objects.filter(sent_at__isnull=False, attempts=1).count() == 5


@pytest.mark.parametrize("changes", [3, 300])
def test_a_relay_batch_costs_a_fixed_number_of_queries(
    generic_crm: FakeCrm, changes: int, django_assert_num_queries: Any
) -> None:
    publish_changes(*[change(record=f"R-{i % 40}", message_id=i) for i in range(changes)])
    adapter = GenericAdapter()
    hold = actions.Hold("relay-1", cast(int, actions.take_lease("relay-1", timezone.now())))
    # the fence, claim (select for update), the last sequence number, number the new rows, streams' unfinished rows,
    # mark in flight; the fence, mark sent: 8 queries, and a savepoint and its release around each of the two
    # transactions (BEGIN and COMMIT outside a test). The same for 300 as for 3.
    with django_assert_num_queries(12):
        report = actions.relay_batch(adapter, hold)
    adapter.close()
    assert report.sent == changes


def test_the_signature_is_hmac_sha256_of_the_body_and_the_body_lists_the_changes(generic_crm: FakeCrm) -> None:
    publish_changes(change(record="R-1", message_id=1, status="sent"))
    seen: dict[str, Any] = {}

    def capture(request: httpx.Request) -> httpx.Response:
        seen["headers"], seen["body"] = request.headers, request.content
        return httpx.Response(200, json={})

    adapter = GenericAdapter()
    adapter.client = httpx.Client(transport=httpx.MockTransport(capture))
    actions.relay(adapter=adapter)

    expected = hmac.new(generic_crm.signing_secret.encode(), seen["body"], hashlib.sha256).hexdigest()
    assert seen["headers"]["X-Signature-256"] == f"sha256={expected}"
    body = json.loads(seen["body"])
    assert seen["headers"]["Idempotency-Key"] == body["batch_id"]
    [entry] = body["changes"]
    assert entry["idempotency_key"] == keys_in_order()[0]
    assert (entry["kind"], entry["crm_record_id"], entry["message_id"]) == ("status_changed", "R-1", 1)
    assert entry["payload"] == {"status": "sent"} and entry["history"] == []


def test_changes_of_one_message_coalesce_the_latest_state_first_and_the_history_riding_along(
    generic_crm: FakeCrm,
) -> None:
    publish_changes(change(message_id=7, status="queued", previous_status="pending"))
    publish_changes(change(message_id=7, status="sent", previous_status="queued"))
    publish_changes(change(Kind.REVIEW_RESOLVED, message_id=7, action="confirm_delivered", status="delivered"))
    publish_changes(change(message_id=8, status="sent"))

    actions.relay()

    keys = keys_in_order()
    changes = generic_crm.changes()
    # Each change arrives once; the first three ride in one entry (two as history), the fourth on its own.
    assert sorted(c.key for c in changes) == sorted(keys)
    assert [(c.key, c.history) for c in changes] == [
        (keys[0], True),
        (keys[1], True),
        (keys[2], False),
        (keys[3], False),
    ]
    batch = generic_crm.requests[0]
    assert batch.changes == 4
    assert states() == {"sent": 4}


def test_the_entry_state_is_every_payload_laid_over_the_one_before() -> None:
    from crm_sync.adapters.base import Change, coalesce

    changes = [
        Change(
            1, 1, "k1", "status_changed", "R", 7, "record:R", timezone.now(), {"status": "sent", "needs_review": False}
        ),
        Change(2, 2, "k2", "review_resolved", "R", 7, "record:R", timezone.now(), {"action": "confirm_delivered"}),
    ]
    [entry] = coalesce(changes)
    assert entry.state() == {"status": "sent", "needs_review": False, "action": "confirm_delivered"}
    assert entry.as_json()["kind"] == "review_resolved"
    assert [h["idempotency_key"] for h in entry.as_json()["history"]] == ["k1"]


def test_a_5xx_backs_off_10_s_then_20_s_and_keeps_the_error(generic_crm: FakeCrm) -> None:
    publish_changes(change())
    generic_crm.go_down(503)
    start = timezone.now()

    actions.relay(start)
    row = OutboxMessage.objects.get()
    assert (row.state, row.attempts) == (OutboxState.PENDING, 1)
    assert row.next_attempt_at == start + timedelta(seconds=10)
    assert "HTTP 503" in row.last_error

    assert actions.relay(start + timedelta(seconds=9)).batches == 0  # nothing due yet
    assert OutboxMessage.objects.get().attempts == 1

    actions.relay(start + timedelta(seconds=10))
    row = OutboxMessage.objects.get()
    assert (row.attempts, row.next_attempt_at) == (2, start + timedelta(seconds=30))


def test_a_429_waits_at_least_its_retry_after(generic_crm: FakeCrm) -> None:
    publish_changes(change())
    generic_crm.fail_next(1, status=429, retry_after=120)
    start = timezone.now()

    actions.relay(start)

    row = OutboxMessage.objects.get()
    assert row.next_attempt_at == start + timedelta(seconds=120)
    assert "HTTP 429" in row.last_error
    actions.relay(start + timedelta(seconds=120))
    assert OutboxMessage.objects.get().state == OutboxState.SENT


def test_backoff_is_capped_at_an_hour(settings: Any) -> None:
    assert actions.backoff(1) == timedelta(seconds=10)
    assert actions.backoff(4) == timedelta(seconds=80)
    assert actions.backoff(30) == timedelta(hours=1)
    settings.CRM_RETRY_MAX = timedelta(minutes=5)
    assert actions.backoff(10) == timedelta(minutes=5)


def test_a_crm_that_cannot_be_reached_backs_off_like_a_5xx(settings: Any) -> None:
    with FakeCrm() as crm:
        url = crm.generic_url  # the server stops: nothing listens on that port any more
    settings.CRM_BACKEND, settings.CRM_URL, settings.CRM_SIGNING_SECRET = "generic", url, "x"
    publish_changes(change())

    actions.relay()

    row = OutboxMessage.objects.get()
    assert row.state == OutboxState.PENDING and row.attempts == 1
    assert "ConnectError" in row.last_error


def test_a_wrong_signing_secret_is_refused_and_retried_not_lost(generic_crm: FakeCrm, settings: Any) -> None:
    settings.CRM_SIGNING_SECRET = "not-the-crm-secret"
    publish_changes(change())

    actions.relay()

    row = OutboxMessage.objects.get()
    assert row.state == OutboxState.PENDING and "HTTP 401" in row.last_error
    assert generic_crm.changes() == []


def test_a_record_backing_off_holds_its_later_changes_while_other_records_go(generic_crm: FakeCrm) -> None:
    publish_changes(change(record="A", message_id=1, status="sent"))
    generic_crm.fail_next(1)
    start = timezone.now()
    actions.relay(start)  # A's first change fails and backs off 10 s
    end_pause()

    publish_changes(change(record="A", message_id=2, status="delivered"), change(record="B", message_id=3))
    actions.relay(start + timedelta(seconds=1))

    assert [c.crm_record_id for c in generic_crm.changes()] == ["B"]
    a_rows = OutboxMessage.objects.filter(crm_record_id="A").order_by("id")
    assert [r.state for r in a_rows] == ["pending", "pending"]
    # The later change waits for the earlier one rather than being looked at every tick.
    assert a_rows[1].next_attempt_at == a_rows[0].next_attempt_at == start + timedelta(seconds=10)

    actions.relay(start + timedelta(seconds=10))
    assert [c.crm_record_id for c in generic_crm.changes()] == ["B", "A", "A"]
    assert [c.key for c in generic_crm.changes()][1:] == [r.idempotency_key for r in a_rows]


def test_after_the_last_attempt_a_change_is_dead_and_holds_its_record_until_retried(
    generic_crm: FakeCrm, settings: Any
) -> None:
    settings.CRM_MAX_ATTEMPTS = 2
    publish_changes(change(record="A", message_id=1))
    generic_crm.go_down(500)
    now = timezone.now()
    actions.relay(now)
    actions.relay(now + timedelta(seconds=10))

    row = OutboxMessage.objects.get()
    assert (row.state, row.attempts) == (OutboxState.DEAD, 2)
    assert "HTTP 500" in row.last_error

    generic_crm.come_back()
    end_pause()
    publish_changes(change(record="A", message_id=1, n=2), change(record="B", message_id=5))
    actions.relay(now + timedelta(seconds=11))
    # B goes; A's new change must not overtake the dead one, so it is held (dead too, saying why).
    assert [c.crm_record_id for c in generic_crm.changes()] == ["B"]
    held = OutboxMessage.objects.filter(crm_record_id="A").order_by("id")[1]
    assert held.state == OutboxState.DEAD and f"held behind dead change #{row.pk}" in held.last_error

    # An operator retries the dead change: the one held behind it comes along, in order.
    assert actions.retry(OutboxMessage.objects.filter(pk=row.pk), now + timedelta(seconds=12)) == 2
    actions.relay(now + timedelta(seconds=12))
    a_keys = list(
        OutboxMessage.objects.filter(crm_record_id="A").order_by("id").values_list("idempotency_key", flat=True)
    )
    assert [c.key for c in generic_crm.changes() if c.crm_record_id == "A"] == a_keys
    assert states() == {"sent": 3}


def test_with_crm_backend_none_the_outbox_is_kept_and_nothing_is_sent(fake_crm: FakeCrm, settings: Any) -> None:
    settings.CRM_BACKEND = "none"
    publish_changes(change())

    report = actions.relay()

    assert report.batches == 0
    assert states() == {"pending": 1}
    assert fake_crm.requests == []


def test_one_relay_at_a_time(generic_crm: FakeCrm) -> None:
    publish_changes(change())
    now = timezone.now()
    assert actions.take_lease("someone-else", now)

    assert actions.relay(now).busy
    assert states() == {"pending": 1}

    # A relay that died keeps the lease only until it runs out.
    assert not actions.relay(now + timedelta(seconds=61)).busy
    assert states() == {"sent": 1}


def test_the_crm_down_for_an_hour_then_back_gets_every_change_once_in_order(
    client: Any, generic_crm: FakeCrm, time_machine: Any
) -> None:
    """Receipts keep coming while the CRM is down; the relay backs off to an hour; then it is back."""
    start = timezone.now()
    time_machine.move_to(start, tick=False)
    generic_crm.go_down(503, retry_after=None)
    records = [f"003REC{i:03d}" for i in range(6)]
    messages = [register(provider_message_id=f"down-{i}", crm_record_id=records[i % 6]) for i in range(18)]
    steps = ["queued", "sent", "delivered"]

    clock = start
    attempts_seen: Counter = Counter()
    for minute in range(0, 61):
        clock = start + timedelta(minutes=minute)
        time_machine.move_to(clock, tick=False)
        if minute < 3:  # one lifecycle step a minute for every message, while the CRM is down
            for m in messages:
                body = {"id": m.provider_message_id, "status": steps[minute], "timestamp": clock.isoformat()}
                post_webhook(client, "generic", json.dumps(body))
            drain()
        actions.relay()
        attempts_seen.update(OutboxMessage.objects.values_list("attempts", flat=True))
    assert states() == {"pending": 54}
    assert generic_crm.changes() == []
    assert max(OutboxMessage.objects.values_list("attempts", flat=True)) >= 8  # 10 s, 20 s, ... up to the hour
    assert len(generic_crm.requests) < 100  # backing off, not hammering

    generic_crm.come_back()
    # Within the next hour (the longest backoff) everything goes out.
    for minute in range(61, 125):
        time_machine.move_to(start + timedelta(minutes=minute), tick=False)
        relay_until_idle()
    assert states() == {"sent": 54}
    counts = generic_crm.key_counts()
    assert set(counts) == set(keys_in_order())
    assert set(counts.values()) == {1}, "every change arrives once per idempotency key"
    # Per record the latest states arrive in the order they happened; per message every change does.
    assert generic_crm.in_order_per_record() == {}
    for m in messages:
        expected = (
            OutboxMessage.objects.filter(message_id=m.pk).order_by("id").values_list("idempotency_key", flat=True)
        )
        assert [c.key for c in generic_crm.changes() if c.message_id == m.pk] == list(expected)
        assert len(expected) == 3


class HeldTransaction:
    """A writer on a connection of its own: it runs ``steps`` inside one transaction, each when told to, and
    commits when told to."""

    def __init__(self, *steps: Any) -> None:
        self.steps = steps
        self.go = [threading.Event() for _ in (*steps, "commit")]
        self.done = [threading.Event() for _ in (*steps, "commit")]
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self) -> None:
        try:
            with transaction.atomic():
                for i, step in enumerate(self.steps):
                    assert self.go[i].wait(READY_TIMEOUT)
                    step()
                    self.done[i].set()
                assert self.go[-1].wait(READY_TIMEOUT)
        finally:
            connection.close()
            self.done[-1].set()

    def step(self, i: int) -> None:
        self.go[i].set()
        assert self.done[i].wait(READY_TIMEOUT)

    def commit(self) -> None:
        self.step(len(self.steps))
        self.thread.join(30)


def who_in_order(crm: FakeCrm) -> list[str]:
    by_key = dict(OutboxMessage.objects.values_list("idempotency_key", "payload__who"))
    return [by_key[c.key] for c in crm.changes()]


@pytest.mark.django_db(transaction=True)  # two writers on connections of their own
def test_a_change_committed_after_a_later_one_of_its_record_still_reaches_the_crm_in_sequence(
    generic_crm: FakeCrm,
) -> None:
    """A writes first (the lower id) and commits last; the relay runs in between. B goes out first, A after it,
    and the sequence numbers the CRM sees rise in that order: a CRM that drops what is older than the sequence it
    holds applies both (with sequence = id it would have dropped A, an opt-out, for good)."""
    if not is_postgres():
        pytest.skip("SQLite has one writer at a time: ids are handed out in commit order there")
    a = HeldTransaction(lambda: publish([change(Kind.SUPPRESSION_ADDED, record="R-1", message_id=None, who="A")]))
    try:
        a.step(0)
        publish_changes(change(record="R-1", message_id=7, who="B"))
        assert actions.relay().sent == 1  # B: committed; A is not
    finally:
        a.commit()
    assert actions.relay().sent == 1

    assert who_in_order(generic_crm) == ["B", "A"]
    assert [c.sequence for c in generic_crm.changes()] == [1, 2]
    assert generic_crm.in_order_per_record() == {}
    a_row, b_row = OutboxMessage.objects.get(payload__who="A"), OutboxMessage.objects.get(payload__who="B")
    assert a_row.pk < b_row.pk  # A really did take the lower id


@pytest.mark.django_db(transaction=True)  # two writers on connections of their own
def test_a_change_with_the_higher_id_committed_first_goes_first_and_numbers_stay_rising(generic_crm: FakeCrm) -> None:
    """B takes the lower outbox id and commits last: it reaches the CRM after A, with the higher sequence."""
    if not is_postgres():
        pytest.skip("SQLite has one writer at a time: ids are handed out in commit order there")
    b = HeldTransaction(lambda: publish([change(Kind.SUPPRESSION_ADDED, record="R-1", message_id=None, who="B")]))
    try:
        b.step(0)
        publish_changes(change(record="R-1", message_id=8, who="A"))
        assert actions.relay().sent == 1
    finally:
        b.commit()
    assert actions.relay().sent == 1

    assert who_in_order(generic_crm) == ["A", "B"]
    assert generic_crm.in_order_per_record() == {}


def test_changes_held_behind_a_backing_off_one_keep_their_place_once_numbered(generic_crm: FakeCrm) -> None:
    """A change that had to wait behind a failing one of its record goes out before changes of that record that
    became visible after it."""
    publish_changes(change(record="R-1", message_id=1, who="first"))
    generic_crm.fail_next(1)
    assert actions.relay().failed == 1
    end_pause()
    publish_changes(change(record="R-1", message_id=2, who="second"))
    assert actions.relay().sent == 0  # held behind the first, and numbered now
    publish_changes(change(record="R-1", message_id=3, who="third"))
    OutboxMessage.objects.update(next_attempt_at=timezone.now())

    relay_until_idle()

    assert who_in_order(generic_crm) == ["first", "second", "third"]
    assert generic_crm.in_order_per_record() == {}


def test_a_429_pauses_all_sending_to_the_crm_until_its_retry_after_then_one_change_probes(
    generic_crm: FakeCrm,
) -> None:
    publish_changes(*[change(record=f"R-{i}", message_id=i) for i in range(5)])
    generic_crm.fail_next(1, status=429, retry_after=20)
    start = timezone.now()

    report = actions.relay(start)
    assert report.paused_until == start + timedelta(seconds=20)
    publish_changes(*[change(record=f"S-{i}", message_id=10 + i) for i in range(3)])
    for second in (1, 5, 19):  # every record waits, the new ones too: not one request
        assert actions.relay(start + timedelta(seconds=second)).paused_until == start + timedelta(seconds=20)
    assert len(generic_crm.requests) == 1
    lease = RelayLease.objects.get()
    assert "HTTP 429" in lease.pause_reason and lease.failures == 1

    report = actions.relay(start + timedelta(seconds=20))

    # The refused batch, then the probe alone, then the rest.
    assert [(r.status, r.changes) for r in generic_crm.requests] == [(429, 0), (200, 1), (200, 7)]
    assert report.sent == 8 and report.paused_until is None
    lease.refresh_from_db()
    assert (lease.failures, lease.paused_until, lease.pause_reason) == (0, None, "")


def test_an_outage_without_retry_after_pauses_longer_after_each_failed_probe(generic_crm: FakeCrm) -> None:
    publish_changes(*[change(record=f"R-{i}", message_id=i) for i in range(4)])
    generic_crm.go_down(503, retry_after=None)
    start = timezone.now()

    pauses = []
    for second in range(0, 75):
        report = actions.relay(start + timedelta(seconds=second))
        if report.paused_until and report.paused_until not in pauses:
            pauses.append(report.paused_until)

    # 10 s, then 20 s, then 40 s (CRM_RETRY_BASE doubling): a request at 0, 10 and 30 s, and one at 70 s.
    assert [(p - start).total_seconds() for p in pauses] == [10, 30, 70, 150]
    assert [r.status for r in generic_crm.requests] == [503] * 4
    # The first batch carried all four; each probe one change (the first in line, due again each time).
    assert sorted(OutboxMessage.objects.values_list("attempts", flat=True)) == [1, 1, 1, 4]

    generic_crm.come_back()
    actions.relay(start + timedelta(seconds=150))
    assert states() == {"sent": 4}


class Clock:
    """A clock the test moves: the relay's (and its heartbeat's) time, whatever the wall clock does."""

    def __init__(self, at: datetime) -> None:
        self.at, self.lock = at, threading.Lock()

    def __call__(self) -> datetime:
        with self.lock:
            return self.at

    def advance(self, by: timedelta) -> None:
        with self.lock:
            self.at += by


def wait_for(predicate: Any, what: str) -> None:
    """Until ``predicate()`` holds, on the wall clock only as a bound: a loaded machine is slower, never wrong."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


@pytest.mark.django_db(transaction=True)  # the relay runs on a thread (and a connection) of its own
def test_while_the_crm_holds_a_batch_the_lease_and_the_rows_in_flight_are_renewed(
    generic_crm: FakeCrm, settings: Any
) -> None:
    """The lease can be short (a relay killed mid-send frees the rows within it) and still outlast a slow CRM."""
    settings.CRM_RELAY_LEASE = timedelta(seconds=1)
    publish_changes(change(record="R-1", message_id=1))
    clock = Clock(timezone.now())
    generic_crm.hold()

    def run_relay() -> None:
        try:
            actions.relay(clock=clock)
        finally:
            connection.close()

    relay = threading.Thread(target=run_relay)
    relay.start()
    try:
        generic_crm.wait_for(lambda: generic_crm.requests, timeout=READY_TIMEOUT)
        clock.advance(timedelta(seconds=2.5))  # past the lease twice over, while the CRM still holds the answer
        wait_for(lambda: RelayLease.objects.get().expires_at > clock(), "the lease ran out while its holder waited")
        row = OutboxMessage.objects.get()
        assert row.state == OutboxState.PENDING and row.next_attempt_at > clock()
    finally:
        generic_crm.release()
        relay.join(30)
    assert states() == {"sent": 1}
    assert len(generic_crm.requests) == 1


# --- fencing: a relay that lost its lease delivers nothing ------------------------------------------------------


class Starved:
    """The generic adapter of a relay starved mid-batch (a loaded machine, a stalled heartbeat): ``meanwhile`` runs
    while it is stuck, before its request leaves (``before``) or after the CRM answered it and before the relay
    settles. Only the first batch is starved."""

    name = "generic"

    def __init__(self, meanwhile: Any, *, before: bool) -> None:
        self.adapter, self.meanwhile, self.before, self.batches = GenericAdapter(), meanwhile, before, 0

    def send(self, entries: list, fence: Any = None) -> list:
        self.batches += 1
        if self.batches > 1:
            return self.send_now(entries, fence)
        if self.before:
            self.meanwhile()
            return self.send_now(entries, fence)
        results = self.send_now(entries, fence)
        self.meanwhile()
        return results

    def send_now(self, entries: list, fence: Any) -> list:
        return self.adapter.send(entries, fence) if fence else self.adapter.send(entries)

    def close(self) -> None:
        self.adapter.close()


def crm_view(crm: FakeCrm) -> dict[str, str]:
    """Each record's status at a CRM that applies whatever arrives last."""
    status = dict(OutboxMessage.objects.values_list("idempotency_key", "payload__status"))
    return {c.crm_record_id: status[c.key] for c in crm.changes()}


def database_view() -> dict[str, str]:
    """Each record's latest status the outbox says was sent."""
    sent = OutboxMessage.objects.filter(state=OutboxState.SENT).order_by("sequence")
    return dict(sent.values_list("crm_record_id", "payload__status"))


def again_after_newer(crm: FakeCrm) -> list[str]:
    """Changes that arrived a second time after a newer change of their record had arrived."""
    newest: dict[str, int] = {}
    seen: set[str] = set()
    late = []
    for c in crm.changes():
        if c.key in seen and newest[c.crm_record_id] > c.sequence:
            late.append(c.key)
        seen.add(c.key)
        newest[c.crm_record_id] = max(newest.get(c.crm_record_id, 0), c.sequence)
    return late


def test_a_relay_starved_past_its_lease_before_its_request_leaves_cannot_deliver_it(
    generic_crm: FakeCrm, settings: Any
) -> None:
    """Issue 24: a batch went out twice, the stale copy last, and records ended on an older status."""
    publish_changes(*[change(record=f"R-{i}", message_id=i, status="sent") for i in range(3)])
    start = timezone.now()
    later = start + settings.CRM_RELAY_LEASE + timedelta(seconds=1)

    def another_relay_takes_over() -> None:
        publish_changes(*[change(record=f"R-{i}", message_id=i, status="delivered") for i in range(3)])
        assert actions.relay(later).sent == 6

    first = actions.relay(start, adapter=Starved(another_relay_takes_over, before=True))

    assert states() == {"sent": 6}
    assert again_after_newer(generic_crm) == []
    assert crm_view(generic_crm) == database_view() == {f"R-{i}": "delivered" for i in range(3)}
    assert [r.status for r in generic_crm.requests] == [200, 409]  # the stale batch is refused
    assert first.sent == 0 and first.lost


def test_a_relay_that_lost_its_lease_while_the_crm_answered_settles_nothing_and_pauses_nothing(
    generic_crm: FakeCrm, settings: Any
) -> None:
    publish_changes(change(record="R-1", message_id=1, status="sent"))
    start = timezone.now()
    later = start + settings.CRM_RELAY_LEASE + timedelta(seconds=1)

    def another_relay_takes_over() -> None:
        publish_changes(change(record="R-1", message_id=1, status="delivered"))
        assert actions.relay(later).sent == 2

    generic_crm.fail_next(1)  # the first relay's batch is refused; the next relay's goes through
    first = actions.relay(start, adapter=Starved(another_relay_takes_over, before=False))

    lease = RelayLease.objects.get()
    assert (lease.paused_until, lease.failures, lease.owner) == (None, 0, "")
    assert states() == {"sent": 2}
    assert OutboxMessage.objects.filter(last_error="").count() == 2  # the stale refusal was written nowhere
    assert again_after_newer(generic_crm) == []
    assert crm_view(generic_crm) == database_view() == {"R-1": "delivered"}
    assert first.lost and first.paused_until is None


def test_each_taking_of_the_lease_draws_a_higher_fencing_token_and_a_renewal_keeps_it() -> None:
    now = timezone.now()
    first = actions.take_lease("a", now)
    assert first is not None and actions.take_lease("a", now + timedelta(seconds=1)) == first
    assert actions.take_lease("b", now + timedelta(seconds=1)) is None  # held
    second = actions.take_lease("b", now + timedelta(seconds=60))  # ran out: b takes it
    assert second is not None and second > first
    actions.release_lease("a", first, now + timedelta(seconds=60))  # a stale release frees nothing
    assert actions.take_lease("c", now + timedelta(seconds=61)) is None
    actions.release_lease("b", second, now + timedelta(seconds=61))
    third = actions.take_lease("c", now + timedelta(seconds=61))
    assert third is not None and third > second


def test_a_heartbeat_whose_relay_lost_the_lease_renews_neither_the_lease_nor_the_rows(settings: Any) -> None:
    publish_changes(change(record="R-1", message_id=1))
    stalled = actions.Hold("stalled", cast(int, actions.take_lease("stalled", T0)))
    later = T0 + settings.CRM_RELAY_LEASE + timedelta(seconds=1)
    assert actions.take_lease("holder", later) is not None
    OutboxMessage.objects.update(next_attempt_at=later + settings.CRM_RELAY_LEASE)  # in flight with the holder

    rows = list(OutboxMessage.objects.values_list("pk", flat=True))
    beat = actions.Heartbeat(stalled, rows, lambda: later + timedelta(seconds=1))  # it wakes up late

    assert beat.beat() is False
    assert RelayLease.objects.get().owner == "holder"
    assert OutboxMessage.objects.get().next_attempt_at == later + settings.CRM_RELAY_LEASE


# --- one clock: the relay's time is the one it is given ---------------------------------------------------------


def test_a_relay_given_its_time_frees_its_lease_in_that_time_not_the_wall_clock(generic_crm: FakeCrm) -> None:
    """release_lease stamped the wall clock: when one relay call took longer than the step to the next, the next
    saw its own released lease as held (three tests failed at load 40). Here the given time is an hour behind."""
    behind = T0 - timedelta(hours=1)
    publish_changes(change(record="R-1", message_id=1))
    OutboxMessage.objects.update(next_attempt_at=behind)
    assert actions.relay(behind).sent == 1

    publish_changes(change(record="R-2", message_id=2))
    OutboxMessage.objects.filter(state=OutboxState.PENDING).update(next_attempt_at=behind)
    report = actions.relay(behind + timedelta(seconds=1))

    assert (report.busy, report.sent) == (False, 1)
