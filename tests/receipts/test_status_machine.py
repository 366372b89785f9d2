"""The status machine, rule by rule (DESIGN.md, "Status model"). Pure: no database, no clock."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from receipts.machine import State, Transition, advance, assume_delivered, status_of
from receipts.normalized import Outcome
from receipts.status import FINAL_STATUSES, RANK, Engagement, ReviewReason, Status
from receipts.status import FailureCategory as C

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


QUEUED = Outcome(Status.QUEUED)
SENT = Outcome(Status.SENT)
DEFERRED = Outcome(Status.DEFERRED, C.TEMPORARY_NETWORK, retryable=True, soft_bounce=True)
DELIVERED = Outcome(Status.DELIVERED)
FAILED = Outcome(Status.FAILED, C.INVALID_DESTINATION)
THROTTLED = Outcome(Status.FAILED, C.CARRIER_THROTTLE, retryable=True)
REJECTED = Outcome(Status.REJECTED, C.OPTED_OUT)
EXPIRED = Outcome(Status.EXPIRED, C.TEMPORARY_NETWORK, retryable=True)
BOUNCED = Outcome(Status.BOUNCED, C.INVALID_DESTINATION)
READ = Outcome(engagement=Engagement.READ)
PROVIDER_UNKNOWN = Outcome(review=ReviewReason.PROVIDER_UNKNOWN)

FINAL_OUTCOMES = {
    Status.DELIVERED: DELIVERED,
    Status.FAILED: FAILED,
    Status.REJECTED: REJECTED,
    Status.EXPIRED: EXPIRED,
    Status.BOUNCED: BOUNCED,
}
NON_FINAL_OUTCOMES = {Status.QUEUED: QUEUED, Status.SENT: SENT, Status.DEFERRED: DEFERRED}
ALL_OUTCOMES = {**NON_FINAL_OUTCOMES, **FINAL_OUTCOMES}
NOT_READ_ENGAGEMENTS = [e for e in Engagement if e != Engagement.READ]


def state_after(*receipts: tuple[Outcome, datetime | None], start: State | None = None) -> State:
    return fold(receipts, start)[0]


def fold(receipts: Iterable[tuple[Outcome, datetime | None]], start: State | None = None) -> tuple[State, set[str]]:
    """Apply receipts in order, as ``apply_receipt`` does, keeping the review flags raised and cleared."""
    state = start or State()
    flags: set[str] = set()
    for outcome, occurred_at in receipts:
        transition = advance(state, outcome, occurred_at)
        state = transition.state
        if transition.flag:
            flags.add(transition.flag)
        if transition.clear_flag:
            flags.discard(transition.clear_flag)
    return state, flags


def at_status(status: str, minutes: int = 0) -> State:
    outcome = ALL_OUTCOMES[status]
    return State(status, at(minutes), failure_category=outcome.category, retryable=outcome.retryable)


def assert_unchanged(transition: Transition, before: State) -> None:
    assert transition.state == before
    assert transition.changed is False


def assert_only_time_moved(transition: Transition, before: State, later: datetime) -> None:
    """The same status again, later: not a change, but the later provider time stands (order independence)."""
    assert transition.changed is False
    assert transition.state == replace(before, status_at=later)
    assert transition.flag == ""


# Ranks


def test_ranks_are_the_designed_ones() -> None:
    assert RANK == {
        "pending": 0,
        "queued": 10,
        "sent": 20,
        "deferred": 25,
        "delivered": 30,
        "failed": 30,
        "rejected": 30,
        "expired": 30,
        "bounced": 30,
    }
    assert set(FINAL_STATUSES) == {"delivered", "failed", "rejected", "expired", "bounced"}


def test_a_new_message_is_pending_with_no_status_time() -> None:
    assert State() == State(status="pending", status_at=None, assumed=False, failure_category="", retryable=False)


@pytest.mark.parametrize("status", list(ALL_OUTCOMES))
def test_any_status_moves_a_pending_message(status: str) -> None:
    transition = advance(State(), ALL_OUTCOMES[status], at(1))

    assert transition.changed is True
    assert transition.state.status == status
    assert transition.state.status_at == at(1)
    assert transition.flag == ""


def test_status_moves_forward_through_every_rank() -> None:
    state, flags = fold([(QUEUED, at(1)), (SENT, at(2)), (DEFERRED, at(3)), (DELIVERED, at(4))])

    assert state.status == Status.DELIVERED
    assert state.status_at == at(4)
    assert flags == set()


@pytest.mark.parametrize(
    ("higher", "lower"),
    [(h, lo) for h, lo in itertools.permutations(ALL_OUTCOMES, 2) if RANK[lo] < RANK[h]],
)
def test_lower_rank_receipt_never_moves_the_status_back(higher: str, lower: str) -> None:
    before = at_status(higher, 5)

    transition = advance(before, ALL_OUTCOMES[lower], at(9))

    assert_unchanged(transition, before)
    assert transition.flag == ""


def test_late_sent_does_not_undo_delivered() -> None:
    state = state_after((SENT, at(1)), (DELIVERED, at(2)), (SENT, at(3)))

    assert state.status == Status.DELIVERED
    assert state.status_at == at(2)


def test_queued_arriving_after_sent_changes_nothing() -> None:
    assert state_after((SENT, at(2)), (QUEUED, at(1))).status == Status.SENT


@pytest.mark.parametrize("status", list(NON_FINAL_OUTCOMES))
def test_same_non_final_status_again_only_moves_the_status_time_forward(status: str) -> None:
    before = at_status(status, 2)

    assert_only_time_moved(advance(before, ALL_OUTCOMES[status], at(3)), before, at(3))
    assert_unchanged(advance(before, ALL_OUTCOMES[status], at(1)), before)


def test_deferred_outranks_sent() -> None:
    assert RANK[Status.DEFERRED] == 25
    assert RANK[Status.SENT] == 20
    assert state_after((SENT, at(1)), (DEFERRED, at(2))).status == Status.DEFERRED
    assert state_after((DEFERRED, at(1)), (SENT, at(2))).status == Status.DEFERRED


@pytest.mark.parametrize("final", list(FINAL_OUTCOMES))
def test_deferred_is_not_final_so_any_final_follows_it_without_review(final: str) -> None:
    transition = advance(at_status(Status.DEFERRED, 1), FINAL_OUTCOMES[final], at(2))

    assert transition.changed is True
    assert transition.state.status == final
    assert transition.flag == ""


# Final receipts


def test_first_final_wins_over_earlier_conflicting_final() -> None:
    before = state_after((SENT, at(1)), (DELIVERED, at(5)))

    transition = advance(before, FAILED, at(3))

    assert_unchanged(transition, before)
    assert transition.state.status == Status.DELIVERED
    # The deliberate extension over DESIGN.md: two different finals are reviewed whatever order they came in.
    assert transition.flag == ReviewReason.CONFLICTING_RECEIPTS


def test_later_conflicting_final_wins_and_flags_review() -> None:
    before = state_after((SENT, at(1)), (DELIVERED, at(3)))

    transition = advance(before, FAILED, at(5))

    assert transition.changed is True
    assert transition.state.status == Status.FAILED
    assert transition.state.status_at == at(5)
    assert transition.state.failure_category == C.INVALID_DESTINATION
    assert transition.flag == ReviewReason.CONFLICTING_RECEIPTS


@pytest.mark.parametrize(("first", "second"), list(itertools.permutations(FINAL_OUTCOMES, 2)))
def test_every_pair_of_different_finals_is_flagged_and_the_later_provider_time_wins(first: str, second: str) -> None:
    later_second = fold([(FINAL_OUTCOMES[first], at(1)), (FINAL_OUTCOMES[second], at(2))])
    earlier_second = fold([(FINAL_OUTCOMES[first], at(2)), (FINAL_OUTCOMES[second], at(1))])

    assert later_second == (at_status(second, 2), {ReviewReason.CONFLICTING_RECEIPTS})
    assert earlier_second == (at_status(first, 2), {ReviewReason.CONFLICTING_RECEIPTS})


def test_conflicting_final_with_the_same_provider_time_does_not_win() -> None:
    state, flags = fold([(DELIVERED, at(2)), (FAILED, at(2))])

    assert state.status == Status.DELIVERED
    assert flags == {ReviewReason.CONFLICTING_RECEIPTS}


def test_conflicting_final_without_provider_time_does_not_win() -> None:
    state, flags = fold([(DELIVERED, at(2)), (FAILED, None)])

    assert state.status == Status.DELIVERED
    assert flags == {ReviewReason.CONFLICTING_RECEIPTS}


@pytest.mark.parametrize("final", list(FINAL_OUTCOMES))
def test_same_final_twice_is_no_change_and_needs_no_review(final: str) -> None:
    before = at_status(final, 2)

    assert_only_time_moved(advance(before, FINAL_OUTCOMES[final], at(3)), before, at(3))
    earlier = advance(before, FINAL_OUTCOMES[final], at(1))
    assert_unchanged(earlier, before)
    assert earlier.flag == ""


def test_final_status_is_the_final_receipt_with_the_latest_provider_time_when_a_final_repeats() -> None:
    # delivered at 1 and again at 3, failed at 2: the latest final receipt says delivered, whatever the order.
    receipts = [(DELIVERED, at(1)), (DELIVERED, at(3)), (FAILED, at(2))]

    for order in itertools.permutations(receipts):
        state, flags = fold(order)
        assert (state.status, state.status_at, flags) == (
            Status.DELIVERED,
            at(3),
            {ReviewReason.CONFLICTING_RECEIPTS},
        ), describe(order)


# Engagement


def test_read_implies_delivered() -> None:
    transition = advance(at_status(Status.SENT, 1), READ, at(2))

    assert status_of(READ) == Status.DELIVERED
    assert transition.changed is True
    assert transition.state.status == Status.DELIVERED
    assert transition.state.status_at == at(2)
    assert transition.flag == ""


def test_read_of_a_pending_message_implies_delivered() -> None:
    assert state_after((READ, at(1))).status == Status.DELIVERED


def test_read_after_delivered_is_no_change() -> None:
    before = at_status(Status.DELIVERED, 1)

    assert_only_time_moved(advance(before, READ, at(2)), before, at(2))


def test_read_after_deferral_delivers_and_drops_the_failure_category() -> None:
    state = state_after((DEFERRED, at(1)), (READ, at(2)))

    assert (state.status, state.failure_category, state.retryable) == (Status.DELIVERED, "", False)


def test_read_later_than_a_failure_means_it_was_delivered_after_all_and_flags_review() -> None:
    state, flags = fold([(FAILED, at(1)), (READ, at(2))])

    assert state.status == Status.DELIVERED
    assert state.failure_category == ""
    assert flags == {ReviewReason.CONFLICTING_RECEIPTS}


@pytest.mark.parametrize("engagement", NOT_READ_ENGAGEMENTS)
@pytest.mark.parametrize("status", [Status.PENDING, *ALL_OUTCOMES])
def test_engagement_never_moves_status(engagement: str, status: str) -> None:
    before = State() if status == Status.PENDING else at_status(status, 1)

    transition = advance(before, Outcome(engagement=engagement), at(2))

    assert status_of(Outcome(engagement=engagement)) is None
    assert_unchanged(transition, before)
    assert transition.flag == ""


@pytest.mark.parametrize("status", [Status.PENDING, *ALL_OUTCOMES])
def test_provider_unknown_flags_review_and_leaves_status_alone(status: str) -> None:
    before = State() if status == Status.PENDING else at_status(status, 1)

    transition = advance(before, PROVIDER_UNKNOWN, at(2))

    assert_unchanged(transition, before)
    assert transition.flag == ReviewReason.PROVIDER_UNKNOWN


# Failure category and retryable


def test_failure_category_and_retryable_are_carried_with_the_status() -> None:
    state = state_after((SENT, at(1)), (THROTTLED, at(2)))

    assert (state.status, state.failure_category, state.retryable) == (Status.FAILED, C.CARRIER_THROTTLE, True)


def test_deferral_carries_its_category() -> None:
    state = state_after((SENT, at(1)), (DEFERRED, at(2)))

    assert (state.status, state.failure_category, state.retryable) == (Status.DEFERRED, C.TEMPORARY_NETWORK, True)


@pytest.mark.parametrize("failure", [THROTTLED, FAILED, REJECTED, EXPIRED, BOUNCED])
def test_failure_category_is_cleared_when_a_later_delivered_wins(failure: Outcome) -> None:
    state, flags = fold([(failure, at(1)), (DELIVERED, at(2))])

    assert (state.status, state.failure_category, state.retryable) == (Status.DELIVERED, "", False)
    assert flags == {ReviewReason.CONFLICTING_RECEIPTS}


def test_failure_category_is_cleared_when_delivered_follows_a_deferral() -> None:
    state, flags = fold([(DEFERRED, at(1)), (DELIVERED, at(2))])

    assert (state.status, state.failure_category, state.retryable) == (Status.DELIVERED, "", False)
    assert flags == set()


def test_failure_category_is_replaced_when_a_later_different_failure_wins() -> None:
    state = state_after((THROTTLED, at(1)), (REJECTED, at(2)))

    assert (state.status, state.failure_category, state.retryable) == (Status.REJECTED, C.OPTED_OUT, False)


def test_failure_category_of_a_losing_final_is_not_taken() -> None:
    state = state_after((REJECTED, at(2)), (THROTTLED, at(1)))

    assert (state.status, state.failure_category, state.retryable) == (Status.REJECTED, C.OPTED_OUT, False)


# Assumed delivery (no receipt within RECEIPT_TIMEOUT after sent)


@pytest.mark.parametrize("status", list(NON_FINAL_OUTCOMES))
def test_assume_delivered_flags_no_receipt(status: str) -> None:
    before = at_status(status, 1)

    transition = assume_delivered(before)

    assert transition.changed is True
    assert transition.state.status == Status.DELIVERED
    assert transition.state.assumed is True
    assert (transition.state.failure_category, transition.state.retryable) == ("", False)
    assert transition.flag == ReviewReason.NO_RECEIPT


@pytest.mark.parametrize("final", list(FINAL_OUTCOMES))
def test_assume_delivered_leaves_a_final_status_alone(final: str) -> None:
    before = at_status(final, 1)

    transition = assume_delivered(before)

    assert_unchanged(transition, before)
    assert transition.flag == ""


def test_real_receipt_replaces_assumed_delivery_and_clears_no_receipt() -> None:
    assumed = assume_delivered(at_status(Status.SENT, 1)).state

    transition = advance(assumed, DELIVERED, at(30))

    assert transition.changed is True
    assert transition.state == State(Status.DELIVERED, at(30), assumed=False)
    assert transition.clear_flag == ReviewReason.NO_RECEIPT
    assert transition.flag == ""


@pytest.mark.parametrize("final", list(FINAL_OUTCOMES))
def test_any_real_final_replaces_an_assumed_delivery_without_a_conflict(final: str) -> None:
    assumed = assume_delivered(at_status(Status.SENT, 10)).state

    # Even one whose provider time is before the assumption: an assumption is not a receipt.
    transition = advance(assumed, FINAL_OUTCOMES[final], at(5))

    assert transition.changed is True
    assert transition.state == at_status(final, 5)
    assert transition.clear_flag == ReviewReason.NO_RECEIPT
    assert transition.flag == ""


def test_read_replaces_an_assumed_delivery() -> None:
    assumed = assume_delivered(at_status(Status.SENT, 1)).state

    transition = advance(assumed, READ, at(30))

    assert transition.state.assumed is False
    assert transition.clear_flag == ReviewReason.NO_RECEIPT


@pytest.mark.parametrize("status", list(NON_FINAL_OUTCOMES))
def test_non_final_receipt_does_not_replace_an_assumed_delivery(status: str) -> None:
    assumed = assume_delivered(at_status(Status.SENT, 1)).state

    transition = advance(assumed, NON_FINAL_OUTCOMES[status], at(30))

    assert_unchanged(transition, assumed)
    assert transition.clear_flag == ""


def test_second_final_after_replacing_an_assumption_is_a_real_conflict() -> None:
    assumed = assume_delivered(at_status(Status.SENT, 1)).state

    state, flags = fold([(FAILED, at(30)), (DELIVERED, at(40))], start=assumed)

    assert state.status == Status.DELIVERED
    assert flags == {ReviewReason.CONFLICTING_RECEIPTS}


# Order independence


SEEDS = range(300)
PERMUTATIONS_PER_SEED = 12


def random_receipts(rng: random.Random, *, repeats: bool) -> list[tuple[Outcome, datetime | None]]:
    """A message's receipts, each with its own provider time.

    With ``repeats`` a status may come more than once (a re-sent delivered, a read after delivered, two soft
    bounces); without, each status (a read counting as delivered) comes at most once.
    """
    if repeats:
        pool = [*ALL_OUTCOMES.values(), READ]
        outcomes = [rng.choice(pool) for _ in range(rng.randint(1, 7))]
    else:
        statuses = rng.sample(list(ALL_OUTCOMES), rng.randint(1, len(ALL_OUTCOMES)))
        outcomes = [READ if s == Status.DELIVERED and rng.random() < 0.3 else ALL_OUTCOMES[s] for s in statuses]
    outcomes += [Outcome(engagement=e) for e in rng.sample(NOT_READ_ENGAGEMENTS, rng.randint(0, 2))]
    if rng.random() < 0.3:
        outcomes.append(PROVIDER_UNKNOWN)
    minutes = rng.sample(range(1, 10_000), len(outcomes))
    return [(outcome, at(m)) for outcome, m in zip(outcomes, minutes, strict=True)]


def describe(receipts: Iterable[tuple[Outcome, datetime | None]]) -> str:
    """``delivered@3 read@5``: minutes after T0, readable in a failure message."""
    names = [o.status or o.engagement or o.review for o, _ in receipts]
    minutes = [int((when - T0).total_seconds() // 60) if when else None for _, when in receipts]
    return " ".join(f"{name}@{m}" for name, m in zip(names, minutes, strict=True))


def summary(receipts: list[tuple[Outcome, datetime | None]]) -> tuple[str, datetime | None, set[str]]:
    state, flags = fold(receipts)
    return state.status, state.status_at, flags


@pytest.mark.parametrize("repeats", [False, True], ids=["distinct-statuses", "repeated-statuses"])
def test_outcome_does_not_depend_on_arrival_order(repeats: bool) -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        receipts = random_receipts(rng, repeats=repeats)
        expected = summary(receipts)
        for _ in range(PERMUTATIONS_PER_SEED):
            shuffled = rng.sample(receipts, len(receipts))
            assert summary(shuffled) == expected, f"seed {seed}: {describe(receipts)} vs {describe(shuffled)}"


def test_final_status_is_the_final_receipt_with_the_latest_provider_time() -> None:
    for seed in SEEDS:
        rng = random.Random(seed)
        receipts = random_receipts(rng, repeats=False)
        finals = [(status_of(o), when) for o, when in receipts if is_final_outcome(o)]
        status, status_at, flags = summary(rng.sample(receipts, len(receipts)))
        if finals:
            assert (status, status_at) == max(finals, key=lambda f: f[1]), f"seed {seed}: {describe(receipts)}"
            assert (ReviewReason.CONFLICTING_RECEIPTS in flags) == (len({s for s, _ in finals}) > 1), seed
        else:
            assert status == max((o.status for o, _ in receipts if o.status), key=RANK.get, default=Status.PENDING)
        assert (ReviewReason.PROVIDER_UNKNOWN in flags) == any(o == PROVIDER_UNKNOWN for o, _ in receipts)


def is_final_outcome(outcome: Outcome) -> bool:
    status = status_of(outcome)
    return status is not None and status in FINAL_STATUSES
