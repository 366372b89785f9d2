"""The status machine: given a message's state and one receipt, the state that follows.

Pure: no database, no clock. Its answers become row fields in one place, ``receipts.actions.transitions.write``.

Rules (DESIGN.md, "Status model"):
- ranks only move forward; a lower or equal rank is recorded on the timeline and changes nothing (the same
  status again only moves ``status_at`` to the later provider time);
- the first final receipt wins; a later *different* final wins only with a later provider time. Either way two
  different finals flag the message ``conflicting_receipts``, so the outcome does not hang on arrival order:
  the final status is the final receipt with the latest provider time, and the flag is raised whenever two
  different finals were seen (docs/design.md says why this goes one step past DESIGN.md);
- an assumed delivery (no receipt in time) is replaced by any real final receipt, and its review flag cleared;
- a read implies delivered; other engagement facts never touch the status;
- a provider that says it does not know (SMS Aggregation state 7) flags ``provider_unknown``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from receipts.normalized import Outcome
from receipts.status import RANK, Engagement, ReviewReason, Status, is_final


@dataclass(frozen=True)
class State:
    status: str = Status.PENDING
    # Provider time of the receipt that set the status; decides between conflicting finals.
    status_at: datetime | None = None
    assumed: bool = False
    failure_category: str = ""
    retryable: bool = False


@dataclass(frozen=True)
class Transition:
    state: State
    changed: bool = False
    # A review reason to raise, or to clear (the no_receipt flag once a real receipt arrives).
    flag: str = ""
    clear_flag: str = ""


def status_of(outcome: Outcome) -> str | None:
    if outcome.status:
        return outcome.status
    if outcome.engagement == Engagement.READ:
        return Status.DELIVERED
    return None


def advance(state: State, outcome: Outcome, occurred_at: datetime | None) -> Transition:
    new_status = status_of(outcome)
    if new_status is None:
        return Transition(state, flag=outcome.review)

    # A read carries no failure; only a status receipt brings its category.
    failed = new_status not in (Status.DELIVERED, Status.QUEUED, Status.SENT, Status.PENDING)
    moved = replace(
        state,
        status=new_status,
        status_at=occurred_at,
        assumed=False,
        failure_category=outcome.category if failed else "",
        retryable=outcome.retryable if failed else False,
    )

    if new_status == state.status and not state.assumed:
        # The same status again: the later receipt's time (and category) stand, so that the outcome is the
        # receipt with the latest provider time whatever order they came in. Not a status change.
        if occurred_at and (state.status_at is None or occurred_at > state.status_at):
            return Transition(moved, flag=outcome.review)
        return Transition(state, flag=outcome.review)

    if not is_final(state.status):
        if RANK[new_status] > RANK[state.status]:
            return Transition(moved, changed=True, flag=outcome.review)
        return Transition(state, flag=outcome.review)

    if not is_final(new_status):
        return Transition(state)
    if state.assumed:
        return Transition(moved, changed=True, clear_flag=ReviewReason.NO_RECEIPT)
    if occurred_at and state.status_at and occurred_at > state.status_at:
        return Transition(moved, changed=True, flag=ReviewReason.CONFLICTING_RECEIPTS)
    return Transition(state, flag=ReviewReason.CONFLICTING_RECEIPTS)


def assume_delivered(state: State) -> Transition:
    """``RECEIPT_TIMEOUT`` passed after sent with no final receipt."""
    if is_final(state.status):
        return Transition(state)
    assumed = replace(state, status=Status.DELIVERED, assumed=True, failure_category="", retryable=False)
    return Transition(assumed, changed=True, flag=ReviewReason.NO_RECEIPT)


def decided(state: State, status: str, category: str, at: datetime) -> State:
    """An operator settled the message (the review queue): ``status`` stands, no longer assumed, with ``category``
    when it is a failure. ``status_at`` moves to ``at`` only when the status changes."""
    return State(status, at if status != state.status else state.status_at, False, category, False)
