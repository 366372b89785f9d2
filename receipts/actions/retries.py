"""Sending an SMS again: the retry policy, its decisions and its sends.

The policy (docs/design.md, "Retries are sent by this app"): an SMS is sent again only when it failed for a reason
that passes (``RETRY_WHEN``), at most ``RETRY_MAX`` times in a chain, ``RETRY_DELAY`` after the failure, never
after delivered, a permanent failure or an opt-out, never to a suppressed address, and only when we know what
was sent (``Message.content``). Email soft bounces are left to the provider. Every decision, yes or no, is a
``Retry`` row saying why; the new message links to the one it replaces (``Message.replaces``).

The provider is called through its ``Sender`` (``receipts.providers.senders.sender_for``). Sending happens in a
Celery task, outside any transaction, at most once: the retry is claimed (scheduled -> sending) before the call,
and a send whose worker died is marked failed, not sent again, because we cannot know whether the provider got it.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import F, Q
from django.utils import timezone
from tenacity import retry as retrying
from tenacity import retry_if_exception_type, stop_after_attempt, wait_exponential

from receipts.actions import suppression as suppressions
from receipts.actions.messages import register_message
from receipts.logging import mask
from receipts.models import Message, Retry
from receipts.providers.base import SendError
from receipts.providers.senders import sender_for
from receipts.status import Channel, FailureCategory, Status

log = logging.getLogger(__name__)

State = Retry.State

# (status, failure category) that a second try can fix; None: any category. SMS only.
RETRY_WHEN: frozenset[tuple[str, str | None]] = frozenset(
    {
        (Status.EXPIRED, None),
        (Status.FAILED, FailureCategory.CARRIER_THROTTLE),
        (Status.FAILED, FailureCategory.TEMPORARY_NETWORK),
    }
)
# A provider call that failed for a passing reason is tried again this many times in all, backing off.
SEND_ATTEMPTS = 3
SEND_BACKOFF = timedelta(seconds=30)
# A retry still "sending" after this long lost its worker mid-call (task time limit 120 s, with margin).
SEND_TIMEOUT = timedelta(minutes=10)
# Writing down a provider's answer is tried again over a database hiccup (0.2 s, 0.4 s, ... 5 tries).
retry_on_database_error = retrying(
    retry=retry_if_exception_type(DatabaseError),
    stop=stop_after_attempt(5),
    wait=wait_exponential(multiplier=0.2, max=2),
    reraise=True,
)


# --- deciding -------------------------------------------------------------------------------------------


def wants_retry(message: Message) -> bool:
    """Whether the message's state is one a retry can fix (before limits, suppressions and content)."""
    if message.channel != Channel.SMS:
        return False  # email soft bounces are the provider's to retry
    return (message.status, None) in RETRY_WHEN or (message.status, message.failure_category) in RETRY_WHEN


def why_not(message: Message, number: int, book: suppressions.Book, now: datetime) -> str:
    """Why this message must not be sent again ("" when it may)."""
    if number > settings.RETRY_MAX:
        return f"retry limit reached (RETRY_MAX={settings.RETRY_MAX})"
    if message.unsubscribed_at is not None:
        return "the recipient opted out"
    reasons = book.active_reasons((message.channel, message.to), now)
    if reasons:
        return f"address suppressed ({', '.join(reasons)})"
    if not (message.content or {}).get("text"):
        return "no content to send again (register the message with content)"
    return ""


def plan_retries(messages: list[Message], book: suppressions.Book, now: datetime) -> list[Retry]:
    """Decide, once per message, whether it is sent again; record the decision. Two queries for any number."""
    if not messages:
        return []
    ids = [m.pk for m in messages]
    decided: set[int] = set()
    chain: dict[int, tuple[int, int]] = {}  # replacement message id -> (its retry number, root id)
    for message_id, new_message_id, number, root_id in Retry.objects.filter(
        Q(message_id__in=ids) | Q(new_message_id__in=ids)
    ).values_list("message_id", "new_message_id", "number", "root_id"):
        decided.add(message_id)
        if new_message_id:
            chain[new_message_id] = (number, root_id)
    planned = []
    for message in messages:
        if message.pk in decided:
            continue
        previous, root_id = chain.get(message.pk, (0, message.pk))
        note = why_not(message, previous + 1, book, now)
        planned.append(
            Retry(
                message=message,
                root_id=root_id,
                number=previous + 1,
                state=State.SKIPPED if note else State.SCHEDULED,
                failure_category=message.failure_category or message.status,
                note=note,
                due_at=None if note else now + settings.RETRY_DELAY,
                created_at=now,
                updated_at=now,
            )
        )
    Retry.objects.bulk_create(planned)
    for retry in planned:
        if retry.note:
            log.info("message %s (%s) not sent again: %s", retry.message_id, mask(retry.message.to), retry.note)
        else:
            log.info("message %s: retry %d due at %s", retry.message_id, retry.number, retry.due_at)
    return planned


# --- sending --------------------------------------------------------------------------------------------


def due_retries(now: datetime | None = None, limit: int = 500) -> list[int]:
    now = now or timezone.now()
    due = Retry.objects.filter(state=State.SCHEDULED, due_at__lte=now).order_by("due_at", "id")
    return list(due.values_list("id", flat=True)[:limit])


def fail_stale_sends(now: datetime | None = None) -> int:
    """Retries still ``sending`` long after their claim. One the provider took (its id is recorded) is finished:
    the new message is registered, and the receipts that came for it meanwhile (orphans) attach to it. One with no
    id lost its worker during the provider call: we cannot know if it went out, so it is never sent again.
    Answers how many were marked failed."""
    now = now or timezone.now()
    stale = Retry.objects.filter(state=State.SENDING, claimed_at__lt=now - SEND_TIMEOUT)
    for retry in stale.exclude(provider_message_id="").select_related("message", "message__campaign"):
        finish_sent(retry, retry.message, replacement(retry.message), retry.provider_message_id, now)
        log.warning("retry %s: the provider took it but it was not recorded; recorded now", retry.pk)
    count = stale.filter(provider_message_id="").update(
        state=State.FAILED,
        note="the worker stopped during the send; outcome unknown, not sent again to avoid a duplicate",
        updated_at=now,
    )
    if count:
        log.warning("%d retry send(s) lost their worker mid-call; marked failed", count)
    return count


def send_retry(retry_id: int, now: datetime | None = None) -> str:
    """Send one due retry, at most once. Returns the retry's state afterwards (or "not due")."""
    now = now or timezone.now()
    claimed = Retry.objects.filter(pk=retry_id, state=State.SCHEDULED, due_at__lte=now).update(
        state=State.SENDING, claimed_at=now, attempts=F("attempts") + 1, updated_at=now
    )
    if not claimed:
        return "not due"
    retry = Retry.objects.select_related("message", "message__campaign").get(pk=retry_id)
    original = retry.message
    if not wants_retry(original):
        return finish(retry, State.CANCELLED, f"the message is now {original.status}, not to be sent again", now)
    reasons = suppressions.is_suppressed(original.channel, original.to, now)
    if reasons:
        return finish(retry, State.CANCELLED, f"address suppressed ({', '.join(reasons)}) since the decision", now)
    sender = sender_for(original.provider)
    if sender is None:
        return finish(retry, State.FAILED, f"no sender registered for provider {original.provider}", now)

    outgoing = replacement(original)
    try:
        provider_message_id = sender.send(outgoing)
    except SendError as exc:
        if exc.transient and retry.attempts < SEND_ATTEMPTS:
            return reschedule(retry, str(exc), now)
        return finish(retry, State.FAILED, f"provider refused: {exc}", now)
    except Exception as exc:  # an unknown failure may have sent it: never risk a second copy
        log.exception("retry %s: sender for %s raised", retry.pk, original.provider)
        return finish(retry, State.FAILED, f"sender error, outcome unknown: {type(exc).__name__}: {exc}", now)
    if not provider_message_id:
        return finish(retry, State.FAILED, "the sender returned no provider message id", now)

    # The provider has it: first write down its id alone (one small statement, tried again over a database
    # hiccup), then register the new message. Should that fail, the sweeper finishes it from the id.
    try:
        remember_sent(retry, str(provider_message_id), now)
        return finish_sent(retry, original, outgoing, str(provider_message_id), now)
    except DatabaseError as exc:
        log.warning("retry %s: sent as %s, not recorded yet (%s); the sweeper will", retry.pk, provider_message_id, exc)
        return State.SENDING


@retry_on_database_error
def remember_sent(retry: Retry, provider_message_id: str, now: datetime) -> None:
    Retry.objects.filter(pk=retry.pk, state=State.SENDING).update(
        provider_message_id=provider_message_id[:255], updated_at=now
    )


def finish_sent(retry: Retry, original: Message, outgoing: Message, provider_message_id: str, now: datetime) -> str:
    with transaction.atomic():
        new = record_replacement(original, outgoing, provider_message_id)
        Retry.objects.filter(pk=retry.pk).update(state=State.SENT, new_message=new, note="", updated_at=now)
    log.info("message %s sent again as %s (%s)", original.pk, new.pk, mask(original.to))
    return State.SENT


def replacement(original: Message) -> Message:
    """The new message, unsaved, as the sender gets it."""
    return Message(
        channel=original.channel,
        provider=original.provider,
        to=original.to,
        crm_record_id=original.crm_record_id,
        campaign=original.campaign,
        priority=original.priority,
        correlation_id=original.correlation_id,
        metadata=original.metadata,
        content=original.content,
        replaces=original,
    )


def record_replacement(original: Message, outgoing: Message, provider_message_id: str) -> Message:
    data = {
        "channel": outgoing.channel,
        "provider": outgoing.provider,
        "provider_message_id": provider_message_id,
        "to": outgoing.to,
        "crm_record_id": outgoing.crm_record_id,
        "campaign": original.campaign.name if original.campaign else "",
        "priority": outgoing.priority,
        "correlation_id": outgoing.correlation_id,
        "metadata": outgoing.metadata,
        "content": outgoing.content,
    }
    # Registration also matches receipts for the new id that came before we recorded it (orphans).
    new, _ = register_message(data)
    Message.objects.filter(pk=new.pk).update(replaces=original)
    new.replaces = original
    return new


def reschedule(retry: Retry, problem: str, now: datetime) -> str:
    due = now + SEND_BACKOFF * 2 ** (retry.attempts - 1)
    Retry.objects.filter(pk=retry.pk, state=State.SENDING).update(
        state=State.SCHEDULED, due_at=due, note=f"attempt {retry.attempts} failed: {problem}", updated_at=now
    )
    log.warning("retry %s: attempt %d failed (%s); again at %s", retry.pk, retry.attempts, problem, due)
    return State.SCHEDULED


def finish(retry: Retry, state: str, note: str, now: datetime) -> str:
    Retry.objects.filter(pk=retry.pk, state=State.SENDING).update(state=state, note=note, updated_at=now)
    log.info("retry %s of message %s %s: %s", retry.pk, retry.message_id, state, note)
    return state
