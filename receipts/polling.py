"""Polling: asking Genesys Cloud for the receipts webhooks did not bring (DESIGN.md, "Polling tiers").

Two tiers, both ending in the same place as a webhook: each answer is stored as an inbox row
(``ReceiptEvent``, source ``poll``) with the webhook's dedupe key, and ``receipts.actions.process`` applies it through
the status machine. An answer identical to one already stored is a duplicate, so polling the same message again
and again does not grow its timeline.

- **High priority** (critical, high): each message has ``next_poll_at``, set when it is registered: 10 s after,
  then 20, 40, and every 60 s (``POLL_FIRST_DELAY``, ``POLL_BACKOFF``, ``POLL_MAX_DELAY``). Beat claims the due
  ones (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, SQLite's writer lock in the embedded mode) and moves
  their ``next_poll_at`` on in the claiming transaction, so two ticks or two workers never poll one message at
  the same time. One request per message (``messages/{id}/details``), or one per conversation when several due
  messages share one (``messages/bulk``). A final status clears ``next_poll_at``. After ``POLL_HIGH_MAX_AGE``
  the message is left to the bulk tier, so that a receipt that never comes does not cost a request a minute
  for a day.
- **Bulk** (every ``BULK_RECONCILE_INTERVAL``): every message of the provider not final and without
  ``next_poll_at`` (normal and bulk priority, and high priority past its window), registered within
  ``RECEIPT_TIMEOUT`` (plus a margin), is reconciled with one analytics conversation details job over the
  interval covering their send times: submit, wait for FULFILLED, page the results with the cursor. A
  conversation with exactly one of our messages in flight answers for it (``sessions[].deliveryStatus``, mapped
  by ``receipts.providers.genesys_cloud.analytics`` to MessageData's own status words, so the provider module's
  code tables apply). What the job leaves unanswered (several of our messages in one conversation, conversations
  the job does not know yet, messages with no conversation id) is looked up with ``messages/bulk`` per
  conversation or ``details``, at most ``POLL_BULK_FALLBACK_REQUESTS`` requests a round, oldest first.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from receipts.actions import polls
from receipts.actions.ingest import IngestResult, ingest_poll
from receipts.actions.review import flag_provider_unknown
from receipts.models import Message
from receipts.providers.genesys_cloud.analytics import (
    analytics_query,
    delivery_session,
    message_data_from_session,
    needs_lookup,
)
from receipts.providers.genesys_cloud.client import (
    BULK_LOOKUP_MAX,
    GenesysCloudClient,
    GenesysCloudError,
    GenesysCloudNotFound,
)
from receipts.status import Channel, Provider

log = logging.getLogger(__name__)

GENESYS_CLOUD = Provider.GENESYS_CLOUD


RECONCILE_MARGIN = timedelta(hours=1)  # messages a little older than the receipt timeout are still reconciled


# The analytics interval starts this long before the oldest message was registered (or sent): a message can be
# registered a little after the provider opened its conversation.
INTERVAL_MARGIN = timedelta(minutes=15)


def refused_for_this_message(error: GenesysCloudError) -> bool:
    """A 4xx about the request itself (a malformed id...), not about us (401/403) nor the pace (429)."""
    return error.status is not None and 400 <= error.status < 500 and error.status not in (401, 403, 429)


@dataclass
class PollResult:
    claimed: int = 0
    polled: int = 0
    accepted: int = 0  # answers stored (new facts)
    duplicates: int = 0  # answers identical to one already stored
    not_found: int = 0
    flagged_unknown: int = 0  # not found past POLL_NOT_FOUND_GRACE: flagged provider_unknown
    stopped: str = ""  # why the batch stopped early (circuit open, budget spent, provider down)

    def add(self, result: IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates


def poll_due(
    client: GenesysCloudClient, now: datetime | None = None, limit: int | None = None, ids: list[int] | None = None
) -> PollResult:
    """Poll the due high-priority messages (or the ``ids`` an operator asked for), one batch."""
    now = now or timezone.now()
    result = PollResult()
    if ids is not None:
        polls.clear_unpollable(ids)
    messages = polls.claim_due(now, limit or settings.POLL_BATCH_SIZE, ids)
    result.claimed = len(messages)
    if not messages:
        return result

    # The messaging endpoints know messages only (an email id answers 404 there, every time): an email's status is
    # its conversation's analytics details.
    emails = [m for m in messages if m.channel == Channel.EMAIL]
    by_conversation: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        if message.channel != Channel.EMAIL:
            by_conversation[message.conversation_id].append(message)
    shared = {cid: group for cid, group in by_conversation.items() if cid and len(group) > 1}
    singles = [m for m in messages if m.channel != Channel.EMAIL and m.conversation_id not in shared]
    bodies: list[str] = []
    polled: list[int] = []
    unknown: list[int] = []

    def not_found(message: Message) -> None:
        # Not known yet (just sent) or not at all: the schedule goes on either way. Past the grace an operator
        # should hear of it, the same as SMS Aggregation's state 7 UNKNOWN.
        result.not_found += 1
        polled.append(message.pk)
        if now - (message.sent_at or message.created_at) >= settings.POLL_NOT_FOUND_GRACE:
            unknown.append(message.pk)

    def refused(message: Message, exc: GenesysCloudError) -> None:
        if not refused_for_this_message(exc):
            raise exc
        log.warning("message %s: Genesys Cloud refused the lookup: %s", message.pk, exc)
        polled.append(message.pk)  # asked and answered; its schedule goes on

    try:
        for conversation_id, group in shared.items():
            found = client.messages_bulk(conversation_id, [m.provider_message_id for m in group])
            bodies += [json.dumps(data.raw) for data in found]
            polled += [m.pk for m in group]
        for message in singles:
            try:
                data = client.message_details(message.provider_message_id)
            except GenesysCloudNotFound:
                not_found(message)
                continue
            except GenesysCloudError as exc:
                refused(message, exc)
                continue
            bodies.append(json.dumps(data.raw))
            polled.append(message.pk)
        for message in emails:
            polled_email = email_status(client, message)
            if polled_email is NOT_FOUND:
                not_found(message)
            elif isinstance(polled_email, GenesysCloudError):
                refused(message, polled_email)
            else:
                bodies += polled_email
                polled.append(message.pk)
    except GenesysCloudError as exc:
        result.stopped = str(exc)
        # Claimed but not polled: due again once the provider can be asked (circuit, budget or Retry-After).
        wait = max(settings.POLL_FIRST_DELAY.total_seconds(), exc.retry_after or 0.0)
        unpolled = [m.pk for m in messages if m.pk not in set(polled)]
        polls.postpone(unpolled, now + timedelta(seconds=wait))
        log.warning("polling stopped after %d of %d message(s): %s", len(polled), len(messages), exc)
    finally:
        if bodies:
            result.add(ingest_poll(GENESYS_CLOUD, bodies))
        if polled:
            polls.mark_polled(polled, now)
        if unknown:
            detail = f"Genesys Cloud answered 404 Not Found for this message id after {settings.POLL_NOT_FOUND_GRACE}"
            result.flagged_unknown = flag_provider_unknown(unknown, now, detail)
        result.polled = len(polled)
        client.limits.count("polls_high", len(polled))
        client.limits.count("poll_answers_new", result.accepted)
        client.limits.count("poll_answers_duplicate", result.duplicates)
    return result


NOT_FOUND = GenesysCloudNotFound(404, "not.found", "no such conversation")


def email_status(client: GenesysCloudClient, message: Message | InFlight) -> list[str] | GenesysCloudError:
    """An email's status from its conversation's analytics details, as MessageData bodies for the inbox (none: the
    conversation says nothing of delivery yet, or the email has no conversation id to ask by); ``NOT_FOUND`` or
    the error for a 4xx about this request. Other errors are raised."""
    if not message.conversation_id:
        return []
    try:
        conversation = client.analytics_conversation(message.conversation_id)
    except GenesysCloudNotFound:
        return NOT_FOUND
    except GenesysCloudError as exc:
        if refused_for_this_message(exc):
            return exc
        raise
    session = delivery_session(conversation, Channel.EMAIL)
    if session is None:
        return []
    return [json.dumps(message_data_from_session(message, message.conversation_id, session))]


@dataclass
class ReconcileResult:
    in_flight: int = 0
    answered: int = 0  # messages the provider said something about
    accepted: int = 0
    duplicates: int = 0
    analytics_conversations: int = 0
    fallback_requests: int = 0
    handed_on: int = 0  # failures with no reason yet, handed to the per-message tier (no budget left this round)
    stopped: str = ""

    def add(self, result: IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates


@dataclass(frozen=True)
class InFlight:
    id: int
    provider_message_id: str
    conversation_id: str
    channel: str
    started: datetime


def in_flight(now: datetime) -> list[InFlight]:
    since = now - (settings.RECEIPT_TIMEOUT + RECONCILE_MARGIN)
    rows = (
        Message.objects.awaiting_reconciliation(GENESYS_CLOUD, since)
        .order_by("created_at", "id")
        .values_list("id", "provider_message_id", "conversation_id", "channel", "sent_at", "created_at")
    )
    return [InFlight(pk, ref, cid, channel, sent or created) for pk, ref, cid, channel, sent, created in rows]


def reconcile(client: GenesysCloudClient, now: datetime | None = None) -> ReconcileResult:
    """One bulk reconciliation round (the caller makes sure only one runs at a time)."""
    now = now or timezone.now()
    messages = in_flight(now)
    result = ReconcileResult(in_flight=len(messages))
    if not messages:
        return result
    by_conversation: dict[str, list[InFlight]] = defaultdict(list)
    for message in messages:
        if message.conversation_id:
            by_conversation[message.conversation_id].append(message)
    answered: set[int] = set()
    lookups: list[InFlight] = []  # failures analytics gives no reason for: looked up first

    try:
        if by_conversation:
            start = min(m.started for m in messages) - INTERVAL_MARGIN
            pages = client.conversation_details(
                analytics_query(start, now),
                page_size=settings.POLL_ANALYTICS_PAGE_SIZE,
                poll_interval=settings.POLL_ANALYTICS_JOB_POLL_INTERVAL,
                timeout=settings.POLL_ANALYTICS_JOB_TIMEOUT,
            )
            for page in pages:
                bodies = []
                for conversation in page.conversations:
                    result.analytics_conversations += 1
                    group = by_conversation.get(conversation.conversation_id)
                    if not group or len(group) != 1:
                        continue  # several of ours share it: the conversation's status is not one message's
                    session = delivery_session(conversation, group[0].channel)
                    if session is None:
                        continue
                    if needs_lookup(group[0], session):
                        lookups.append(group[0])
                        continue
                    bodies.append(
                        json.dumps(message_data_from_session(group[0], conversation.conversation_id, session))
                    )
                    answered.add(group[0].id)
                if bodies:
                    result.add(ingest_poll(GENESYS_CLOUD, bodies))
        first = {m.id for m in lookups}
        fallback(client, lookups + [m for m in messages if m.id not in first], by_conversation, answered, result)
    except GenesysCloudError as exc:
        result.stopped = str(exc)
        log.warning("bulk reconciliation stopped: %s", exc)
    finally:
        polls.mark_polled(sorted(answered), now)
        if unlooked := sorted(m.id for m in lookups if m.id not in answered):
            polls.poll_soon(unlooked, now)
            result.handed_on = len(unlooked)
        result.answered = len(answered)
        client.limits.count("reconcile_runs")
        client.limits.count("polls_bulk", result.answered)
        client.limits.count("poll_answers_new", result.accepted)
        client.limits.count("poll_answers_duplicate", result.duplicates)
        client.limits.note(
            {
                "reconcile_last_at": now.isoformat(),
                "reconcile_last_in_flight": str(result.in_flight),
                "reconcile_last_answered": str(result.answered),
                "reconcile_last_stopped": result.stopped[:200],
            }
        )
    log.info(
        "bulk reconciliation: %d in flight, %d answered (%d new, %d unchanged), %d fallback request(s), "
        "%d failure(s) handed to the per-message tier for their reason%s",
        result.in_flight,
        result.answered,
        result.accepted,
        result.duplicates,
        result.fallback_requests,
        result.handed_on,
        f"; stopped: {result.stopped}" if result.stopped else "",
    )
    return result


def fallback(
    client: GenesysCloudClient,
    messages: list[InFlight],
    by_conversation: dict[str, list[InFlight]],
    answered: set[int],
    result: ReconcileResult,
) -> None:
    """Direct lookups for what analytics left unanswered, in the order given (failures that need their reason
    first, then the oldest), within a request budget per round."""
    budget = settings.POLL_BULK_FALLBACK_REQUESTS
    seen: set[str] = set()
    bodies: list[str] = []
    try:
        for message in messages:  # oldest first
            if budget <= 0:
                break
            if message.id in answered:
                continue
            if message.channel == Channel.EMAIL:  # its conversation's analytics, never the messaging endpoints
                if not message.conversation_id:
                    continue  # nothing to ask by: left to the receipt timeout
                budget -= 1
                result.fallback_requests += 1
                found = email_status(client, message)
                if isinstance(found, list) and found:
                    bodies += found
                    answered.add(message.id)
                continue
            if message.conversation_id:
                if message.conversation_id in seen:
                    continue
                seen.add(message.conversation_id)
                group = [m for m in by_conversation[message.conversation_id] if m.id not in answered]
                ids = {m.provider_message_id: m for m in group}
                cost = -(-len(ids) // BULK_LOOKUP_MAX)
                budget -= cost
                result.fallback_requests += cost
                for data in client.messages_bulk(message.conversation_id, list(ids)):
                    if data.id in ids:
                        bodies.append(json.dumps(data.raw))
                        answered.add(ids[data.id].id)
            else:
                budget -= 1
                result.fallback_requests += 1
                try:
                    data = client.message_details(message.provider_message_id)
                except GenesysCloudNotFound:
                    continue
                bodies.append(json.dumps(data.raw))
                answered.add(message.id)
    finally:
        if bodies:
            result.add(ingest_poll(GENESYS_CLOUD, bodies))
