"""The counts the dashboard and a campaign's page read (receipts.tallies, issue 23, items 5 and 6) agree with
COUNT(*) after random work of every kind that changes what they count: the app's actions, bulk updates, deletes,
a campaign's sends planned, sent and cancelled, and compactions in between."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from django.db.models import Count
from django.utils import timezone

from campaigns.models import Campaign, Send
from receipts import tallies
from receipts.actions import review
from receipts.models import NOT_FINAL, Message, Tally
from receipts.status import Provider, ReviewReason, Status
from tests.conftest import register

pytestmark = pytest.mark.django_db


def truth() -> tuple[dict[str, int], dict[str, int]]:
    needs_review = Message.objects.filter(needs_review=True).values_list("review_reason")
    in_flight = Message.objects.filter(NOT_FINAL).values_list("provider")
    return (
        dict(needs_review.annotate(n=Count("id")).order_by()),
        dict(in_flight.annotate(n=Count("id")).order_by()),
    )


def kept() -> tuple[dict[str, int], dict[str, int]]:
    return tallies.counts(tallies.REVIEW), tallies.counts(tallies.IN_FLIGHT)


def test_the_review_queue_and_in_flight_counts_follow_random_work() -> None:
    rng = random.Random(23)
    now = timezone.now()
    made = 0

    def some() -> list[int]:
        ids = list(Message.objects.values_list("id", flat=True))
        return rng.sample(ids, min(len(ids), rng.randint(1, 5)))

    for step in range(120):
        op = rng.randrange(8)
        if op in (0, 1) or made < 5:
            made += 1
            register(provider=rng.choice(Provider.values), provider_message_id=f"m-{made}", to="+15551230000")
        elif op == 2:
            Message.objects.filter(pk__in=some()).update(status=rng.choice(Status.values))
        elif op == 3:
            reason = rng.choice(ReviewReason.values)
            Message.objects.filter(pk__in=some()).update(needs_review=True, review_reason=reason)
        elif op == 4:
            Message.objects.filter(pk__in=some()).update(needs_review=False)
        elif op == 5:
            Message.objects.filter(pk__in=some()).update(provider=rng.choice(Provider.values))
        elif op == 6:
            Message.objects.filter(pk__in=some()[:1]).delete()
        else:
            Message.objects.filter(pk__in=some()).update(sent_at=now - timedelta(days=3))
            review.expire_receipts(now + timedelta(seconds=step))  # a timeline key of its own each time
        if step % 25 == 24:
            tallies.compact()
        assert kept() == truth(), f"after step {step} (operation {op})"
    assert Tally.objects.count() < 40  # compacted now and then, not a row per change


def test_a_campaigns_sends_by_state_follow_random_work() -> None:
    rng = random.Random(6)
    campaigns = [Campaign.objects.create(name=f"c{n}") for n in range(3)]
    states = Send.State.values

    def truth_of(campaign: Campaign) -> dict[str, int]:
        rows = Send.objects.filter(campaign=campaign).values_list("state").annotate(n=Count("id")).order_by()
        return dict(rows)

    made = 0
    for step in range(80):
        op = rng.randrange(6)
        campaign = rng.choice(campaigns)
        if op in (0, 1) or made < 10:
            batch = [
                Send(channel="sms", provider="generic", to=f"+1555123{made + n:04d}", campaign=campaign)
                for n in range(rng.randint(1, 30))
            ]
            made += len(batch)
            Send.objects.bulk_create(batch)
        elif op == 2:
            ids = list(Send.objects.filter(campaign=campaign).values_list("id", flat=True)[: rng.randint(1, 20)])
            Send.objects.filter(pk__in=ids).update(state=rng.choice(states))
        elif op == 3:
            Send.objects.filter(campaign=campaign, state=Send.State.PLANNED).update(state=Send.State.CANCELLED)
        elif op == 4:
            ids = list(Send.objects.filter(campaign=campaign).values_list("id", flat=True)[:2])
            Send.objects.filter(pk__in=ids).update(campaign=rng.choice(campaigns))
        else:
            Send.objects.filter(pk__in=list(Send.objects.values_list("id", flat=True)[:1])).delete()
        if step % 20 == 19:
            tallies.compact()
        for each in campaigns:
            assert tallies.counts(tallies.SENDS, each.pk) == truth_of(each), f"after step {step} (operation {op})"

    gone = campaigns[0]
    gone.delete()  # its sends stay, with no campaign: counted nowhere
    assert tallies.counts(tallies.SENDS, gone.pk) == {}


def test_the_migration_counts_the_rows_already_there() -> None:
    for n, provider in enumerate(Provider.values * 2):
        register(provider=provider, provider_message_id=f"b-{n}", to="+15551230000")
    Message.objects.filter(provider="generic").update(needs_review=True, review_reason=ReviewReason.NO_RECEIPT)
    Message.objects.filter(provider="genesys_sms").update(status=Status.DELIVERED)
    Tally.objects.all().delete()  # as before the migration

    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(tallies.backfill_sql("receipts_message", tallies.MESSAGE_COUNTERS))
    assert kept() == truth() == ({"no_receipt": 2}, {"genesys_cloud": 2, "webex_connect": 2, "generic": 2})


@pytest.mark.django_db(transaction=True)
def test_the_counts_are_right_after_a_flush() -> None:
    """A transactional test ends in a flush (SQLite: a DELETE per table, in no set order, that fires the triggers);
    the counts start again from the rows, as the next test finds them."""
    register(provider_message_id="f-1", to="+15551230000")
    from django.core.management import call_command

    call_command("flush", verbosity=0, interactive=False)
    assert kept() == truth() == ({}, {})
    register(provider_message_id="f-2", to="+15551230000")
    assert kept() == truth() == ({}, {"generic": 1})


def test_a_recount_repairs_counts_a_table_wiped_after_its_tallies_left() -> None:
    """What a flush on SQLite may do (a DELETE per table, in no set order): the tallies emptied first, then the
    messages' deletes add negative deltas. The recount that follows every flush (post_migrate) starts again from
    the rows."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("PostgreSQL's flush is TRUNCATE, which fires no trigger and empties the tallies: no recount")
    register(provider_message_id="w-1", to="+15551230000")
    Tally.objects.all().delete()
    Message.objects.all().delete()
    assert kept() == ({}, {"generic": -1})  # what the bad order leaves

    tallies.recount_after_flush(sender=None, using=connection.alias)
    assert kept() == truth() == ({}, {})
