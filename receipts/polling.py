"""Polling Genesys Cloud for the receipts webhooks did not bring (DESIGN.md, "Polling tiers").

Two tiers, both ending in the same place as a webhook: each answer is stored as an inbox row
(``ReceiptEvent``, source ``poll``) with the webhook's dedupe key, and ``actions.process_due`` applies it through
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
  by ``DELIVERY_STATUS`` to MessageData's own status words, so the provider module's code tables apply). What the
  job leaves unanswered (several of our messages in one conversation, conversations the job does not know yet,
  messages with no conversation id) is looked up with ``messages/bulk`` per conversation or ``details``, at most
  ``POLL_BULK_FALLBACK_REQUESTS`` requests a round, oldest first.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from receipts import actions, review
from receipts.models import Message, Priority
from receipts.normalized import MalformedReceipt, parse_time
from receipts.providers.genesys_cloud_client import (
    BULK_LOOKUP_MAX,
    AnalyticsConversation,
    AnalyticsSession,
    GenesysCloudClient,
    GenesysCloudError,
    GenesysCloudNotFound,
)
from receipts.status import Provider, is_final

log = logging.getLogger(__name__)

GENESYS_CLOUD = Provider.GENESYS_CLOUD
POLLABLE = frozenset({GENESYS_CLOUD})
HIGH_TIER = frozenset({Priority.CRITICAL, Priority.HIGH})
RECONCILE_MARGIN = timedelta(hours=1)  # messages a little older than the receipt timeout are still reconciled
# The analytics interval starts this long before the oldest message was registered (or sent): a message can be
# registered a little after the provider opened its conversation.
INTERVAL_MARGIN = timedelta(minutes=15)

# AnalyticsSession.deliveryStatus (platform SDK enum DeliveryStatusEnum) -> MessageData.status, which the
# Genesys Cloud provider module maps to our statuses. Values not here pass through as they are, and the provider
# module marks them unmapped (kept, shown in the admin, never raising).
DELIVERY_STATUS: dict[str, str] = {
    "Queued": "queued",
    "Sent": "sent",
    "Published": "published",
    # Handed on by a push mechanism: gone from the platform, not yet confirmed delivered.
    "DeliveryPushed": "sent",
    "DeliverySuccess": "delivery-success",
    "DeliveryFailed": "delivery-failed",
    "Failed": "failed",
    "Read": "read",
    # The status of an inbound message: says nothing about ours.
    "Received": "received",
}
FAILED_STATUSES = frozenset({"failed", "delivery-failed"})


def first_poll_at(provider: str, priority: str, at: datetime | None = None) -> datetime | None:
    """When a newly registered (or sent) message is first polled on its own; None: the bulk tier covers it."""
    if provider not in POLLABLE or priority not in HIGH_TIER:
        return None
    return (at or timezone.now()) + settings.POLL_FIRST_DELAY


def delay_after(poll_count: int) -> timedelta:
    """The wait after the poll numbered ``poll_count`` (0 for the first): 20 s, 40 s, then 60 s for ever."""
    first = settings.POLL_FIRST_DELAY.total_seconds()
    seconds = min(first * settings.POLL_BACKOFF ** (poll_count + 1), settings.POLL_MAX_DELAY.total_seconds())
    return timedelta(seconds=seconds)


def next_poll(message: Message, now: datetime) -> datetime | None:
    if is_final(message.status):
        return None  # an operator's "poll again": one look, then done
    started = message.sent_at or message.created_at
    if now - started >= settings.POLL_HIGH_MAX_AGE:
        return None  # from now on the bulk reconciliation covers it
    return now + delay_after(message.poll_count)


def refused_for_this_message(error: GenesysCloudError) -> bool:
    """A 4xx about the request itself (a malformed id...), not about us (401/403) nor the pace (429)."""
    return error.status is not None and 400 <= error.status < 500 and error.status not in (401, 403, 429)


# --- the high-priority tier -------------------------------------------------------------------------------


@dataclass
class PollResult:
    claimed: int = 0
    polled: int = 0
    accepted: int = 0  # answers stored (new facts)
    duplicates: int = 0  # answers identical to one already stored
    not_found: int = 0
    flagged_unknown: int = 0  # not found past POLL_NOT_FOUND_GRACE: flagged provider_unknown
    stopped: str = ""  # why the batch stopped early (circuit open, budget spent, provider down)

    def add(self, result: actions.IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates


POLL_FIELDS = (
    "id",
    "provider",
    "provider_message_id",
    "conversation_id",
    "channel",
    "status",
    "priority",
    "poll_count",
    "created_at",
    "sent_at",
    "next_poll_at",
)


def claim_due(now: datetime, limit: int, ids: list[int] | None = None) -> list[Message]:
    """Take up to ``limit`` due messages and move their ``next_poll_at`` on, in one transaction."""
    with transaction.atomic():
        due = Message.objects.due_for_poll(now).filter(provider__in=POLLABLE)
        if ids is not None:
            due = due.filter(pk__in=ids)
        due = due.order_by("next_poll_at", "id").only(*POLL_FIELDS)
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True, of=("self",))
        messages = list(due[:limit])
        for message in messages:
            message.next_poll_at = next_poll(message, now)
        if messages:
            Message.objects.bulk_update(messages, ["next_poll_at"])
    return messages


def poll_due(
    client: GenesysCloudClient, now: datetime | None = None, limit: int | None = None, ids: list[int] | None = None
) -> PollResult:
    """Poll the due high-priority messages (or the ``ids`` an operator asked for), one batch."""
    now = now or timezone.now()
    result = PollResult()
    if ids is not None:
        unpollable = Message.objects.filter(pk__in=ids).exclude(provider__in=POLLABLE).exclude(next_poll_at=None)
        if cleared := unpollable.update(next_poll_at=None):
            log.info("%d message(s) of a provider without a status API cannot be polled", cleared)
    messages = claim_due(now, limit or settings.POLL_BATCH_SIZE, ids)
    result.claimed = len(messages)
    if not messages:
        return result

    by_conversation: dict[str, list[Message]] = defaultdict(list)
    for message in messages:
        by_conversation[message.conversation_id].append(message)
    shared = {cid: group for cid, group in by_conversation.items() if cid and len(group) > 1}
    singles = [m for m in messages if m.conversation_id not in shared]
    bodies: list[str] = []
    polled: list[int] = []
    unknown: list[int] = []
    try:
        for conversation_id, group in shared.items():
            found = client.messages_bulk(conversation_id, [m.provider_message_id for m in group])
            bodies += [json.dumps(data.raw) for data in found]
            polled += [m.pk for m in group]
        for message in singles:
            try:
                data = client.message_details(message.provider_message_id)
            except GenesysCloudNotFound:
                # Not known yet (just sent) or not at all: the schedule goes on either way. Past the grace an
                # operator should hear of it, the same as SMS Aggregation's state 7 UNKNOWN.
                result.not_found += 1
                polled.append(message.pk)
                if now - (message.sent_at or message.created_at) >= settings.POLL_NOT_FOUND_GRACE:
                    unknown.append(message.pk)
                continue
            except GenesysCloudError as exc:
                if not refused_for_this_message(exc):
                    raise
                log.warning("message %s: Genesys Cloud refused the lookup: %s", message.pk, exc)
                polled.append(message.pk)  # asked and answered; its schedule goes on
                continue
            bodies.append(json.dumps(data.raw))
            polled.append(message.pk)
    except GenesysCloudError as exc:
        result.stopped = str(exc)
        # Claimed but not polled: due again once the provider can be asked (circuit, budget or Retry-After).
        wait = max(settings.POLL_FIRST_DELAY.total_seconds(), exc.retry_after or 0.0)
        unpolled = [m.pk for m in messages if m.pk not in set(polled)]
        Message.objects.filter(pk__in=unpolled).update(next_poll_at=now + timedelta(seconds=wait))
        log.warning("polling stopped after %d of %d message(s): %s", len(polled), len(messages), exc)
    finally:
        if bodies:
            result.add(actions.ingest_poll(GENESYS_CLOUD, bodies))
        if polled:
            Message.objects.filter(pk__in=polled).update(poll_count=F("poll_count") + 1, last_polled_at=now)
        if unknown:
            detail = f"Genesys Cloud answered 404 Not Found for this message id after {settings.POLL_NOT_FOUND_GRACE}"
            result.flagged_unknown = review.flag_provider_unknown(unknown, now, detail)
        result.polled = len(polled)
        client.limits.count("polls_high", len(polled))
        client.limits.count("poll_answers_new", result.accepted)
        client.limits.count("poll_answers_duplicate", result.duplicates)
    return result


# --- the bulk tier ----------------------------------------------------------------------------------------


@dataclass
class ReconcileResult:
    in_flight: int = 0
    answered: int = 0  # messages the provider said something about
    accepted: int = 0
    duplicates: int = 0
    analytics_conversations: int = 0
    fallback_requests: int = 0
    stopped: str = ""

    def add(self, result: actions.IngestResult) -> None:
        self.accepted += result.accepted
        self.duplicates += result.duplicates


@dataclass(frozen=True)
class InFlight:
    id: int
    provider_message_id: str
    conversation_id: str
    channel: str
    started: datetime


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def analytics_query(start: datetime, end: datetime) -> dict[str, Any]:
    """AsyncConversationQuery: outbound message and email conversations active in [start, end)."""

    def predicate(dimension: str, value: str) -> dict[str, str]:
        return {"type": "dimension", "dimension": dimension, "operator": "matches", "value": value}

    return {
        "interval": f"{iso(start)}/{iso(end)}",
        "order": "asc",
        "orderBy": "conversationStart",
        "segmentFilters": [
            {"type": "or", "predicates": [predicate("mediaType", "message"), predicate("mediaType", "email")]},
            {"type": "and", "predicates": [predicate("direction", "outbound")]},
        ],
    }


def _session_time(session: AnalyticsSession) -> datetime:
    try:
        return parse_time(session.delivery_status_change_date) or datetime.min.replace(tzinfo=UTC)
    except MalformedReceipt:
        return datetime.min.replace(tzinfo=UTC)


def delivery_session(conversation: AnalyticsConversation, channel: str) -> AnalyticsSession | None:
    """The session that tells the message's delivery: the latest delivery status of the right media type."""
    media = "email" if channel == "email" else "message"
    candidates = [s for s in conversation.sessions if s.delivery_status]
    preferred = [s for s in candidates if s.media_type == media] or candidates
    return max(preferred, key=_session_time, default=None)


def message_data_from_session(message: InFlight, conversation_id: str, session: AnalyticsSession) -> dict[str, Any]:
    """A MessageData-shaped body for the provider module's parser: the message's id, status and time."""
    status = DELIVERY_STATUS.get(session.delivery_status, session.delivery_status)
    body: dict[str, Any] = {
        "id": message.provider_message_id,
        "conversationId": conversation_id,
        "status": status,
        "timestamp": session.delivery_status_change_date or None,
        "messengerType": "email" if message.channel == "email" else "sms",
        "direction": "outbound",
        "analytics": {
            "deliveryStatus": session.delivery_status,
            **(
                {"extendedDeliveryStatus": session.extended_delivery_status} if session.extended_delivery_status else {}
            ),
            **({"sessionId": session.session_id} if session.session_id else {}),
        },
    }
    if status in FAILED_STATUSES and session.extended_delivery_status:
        reason = {"code": session.extended_delivery_status, "message": session.error_code_description}
        body["reasons"] = [reason]
    return body


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
                    bodies.append(
                        json.dumps(message_data_from_session(group[0], conversation.conversation_id, session))
                    )
                    answered.add(group[0].id)
                if bodies:
                    result.add(actions.ingest_poll(GENESYS_CLOUD, bodies))
        fallback(client, messages, by_conversation, answered, result)
    except GenesysCloudError as exc:
        result.stopped = str(exc)
        log.warning("bulk reconciliation stopped: %s", exc)
    finally:
        mark_reconciled(sorted(answered), now)
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
        "bulk reconciliation: %d in flight, %d answered (%d new, %d unchanged), %d fallback request(s)%s",
        result.in_flight,
        result.answered,
        result.accepted,
        result.duplicates,
        result.fallback_requests,
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
    """Direct lookups for what analytics left unanswered, oldest first, within a request budget per round."""
    budget = settings.POLL_BULK_FALLBACK_REQUESTS
    seen: set[str] = set()
    bodies: list[str] = []
    try:
        for message in messages:  # oldest first
            if budget <= 0:
                break
            if message.id in answered:
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
            result.add(actions.ingest_poll(GENESYS_CLOUD, bodies))


def mark_reconciled(ids: list[int], now: datetime) -> None:
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        Message.objects.filter(pk__in=chunk).update(poll_count=F("poll_count") + 1, last_polled_at=now)
