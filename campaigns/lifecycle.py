"""A campaign's life: checked when it is made, then started (its audience planned as sends, in batches that a
restart resumes), paused, resumed, cancelled, and completed when nothing is left to send.

Planning writes one ``Send`` per contact, keyed ``campaign:<id>:<crm record id>``, so planning the same contact
twice (a planner killed and run again, two planners at once) plans it once. The message is rendered from the
template when planned; a contact whose template field is missing is planned as ``failed`` with the reason, so it
is counted rather than lost. Quiet hours and the start time become each send's ``not_before``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from campaigns import templating, throttle
from campaigns.models import PRIORITY_RANK, SENDING_PROVIDER_CHOICES, Campaign, Contact, Send
from receipts import tallies
from receipts.addresses import normalize_address
from receipts.db import for_update
from receipts.providers.registry import capabilities
from receipts.status import Channel

log = logging.getLogger(__name__)

PLAN_BATCH = 1000
ATTRIBUTE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
BREAKER = "failure-rate breaker"
# What a campaign sends and how: set while it is a draft, checked by ``problems``.
SENDING_FIELDS = [
    "channel",
    "provider",
    "sender",
    "sender_name",
    "subject",
    "body",
    "audience",
    "priority",
    "start_at",
    "quiet_start",
    "quiet_end",
    "time_zone",
    "use_existing_conversation",
    "fallback_channel",
    "fallback_provider",
    "fallback_subject",
    "fallback_sender",
    "fallback_sender_name",
]
SENDING_PROVIDERS = frozenset(value for value, _ in SENDING_PROVIDER_CHOICES)


class LifecycleError(ValueError):
    """The campaign cannot do that in its state."""


# --- checks when a campaign is made -------------------------------------------------------------------------


def allowed_senders(provider: str, channel: str = "") -> set[str]:
    """SENDER_ALLOW_LIST (``provider:sender`` or a bare sender for every provider), and the provider's configured
    defaults (its capabilities' ``sender_settings``; of ``channel`` only, when given: the SMS number is no email
    sender)."""
    declared = capabilities(provider)
    channels = [channel] if channel else sorted(declared.sender_settings)
    allowed = {s for s in (declared.default_sender(c) for c in channels) if s}
    for entry in settings.SENDER_ALLOW_LIST:
        named = entry.split(":", 1)[0] in SENDING_PROVIDERS
        scope, _, sender = entry.rpartition(":") if named else ("", "", entry)
        if not scope or scope == provider:
            allowed.add(sender)
    return allowed


# An SMS sender: a number (digits, an optional +) or an alphanumeric sender id of at most 11 characters; a number
# only where the provider's capabilities say so (SMS Aggregation's MT sender "must be numeric", Genesys Cloud's
# fromAddress is a number provisioned in the org).
SMS_NUMBER = re.compile(r"\+?[0-9]{3,15}")
SMS_SENDER_ID = re.compile(r"[A-Za-z0-9 ]{1,11}")


def sender_problems(channel: str, provider: str, sender: str, name: str) -> list[tuple[str, str]]:
    """What is wrong with a sender identity on ``channel`` through ``provider``: (which, why) pairs, ``which``
    ``sender`` or ``sender_name``. A sender must be allowed for the provider and look like one of its channel (an
    email address for email; a number or sender id for SMS); a display name is for email only."""
    found: list[tuple[str, str]] = []
    if sender:
        if sender not in allowed_senders(provider, channel):
            found.append(("sender", f"{sender!r} is not an allowed sender for {provider}: add it to SENDER_ALLOW_LIST"))
        if channel == Channel.EMAIL:
            try:
                normalize_address(Channel.EMAIL, sender)
            except ValueError:
                found.append(("sender", "an email goes out from an email address"))
        elif channel == Channel.SMS and capabilities(provider).numeric_sms_sender and not SMS_NUMBER.fullmatch(sender):
            found.append(("sender", f"an SMS through {provider} goes out from a number"))
        elif channel == Channel.SMS and not (SMS_NUMBER.fullmatch(sender) or SMS_SENDER_ID.fullmatch(sender)):
            found.append(("sender", "an SMS goes out from a number or a sender id of at most 11 letters and digits"))
    if name and channel != Channel.EMAIL:
        found.append(("sender_name", "a sender name is for email only"))
    if len(name) > 64:
        found.append(("sender_name", "a sender name is at most 64 characters"))
    return found


def without_placeholders(text: str) -> str:
    """``text`` without each ``{{ ... }}`` (from a ``{{`` to the nearest ``}}``), in one pass: a pattern such as
    ``{{.*?}}`` tries every ``{{`` to the end of the text, quadratic on a run of them."""
    kept, done = [], 0
    while (start := text.find("{{", done)) >= 0 and (end := text.find("}}", start + 2)) >= 0:
        kept.append(text[done:start])
        done = end + 2
    kept.append(text[done:])
    return "".join(kept)


def subject_too_long(subject: str, provider: str, *, fixed: bool = False) -> str:
    """Why an email subject is longer than the provider takes ("" when it is not); ``fixed``: a template, counted
    without its placeholders (the least it renders to)."""
    limit = capabilities(provider).email_subject_max
    length = len(without_placeholders(subject) if fixed else subject)
    if not limit or length <= limit:
        return ""
    return f"{'at least ' if fixed else ''}{length} characters; {provider} takes a subject of at most {limit}"


def identity(sender: str, name: str) -> dict[str, str]:
    """A send's ``from`` and ``from_name`` (what the provider senders read), the empty ones left out."""
    return {k: v for k, v in (("from", sender), ("from_name", name)) if v}


def problems(fields: dict[str, Any]) -> dict[str, list[str]]:
    """What is wrong with a campaign's sending settings, by field (empty: it can start)."""
    found: dict[str, list[str]] = {}

    def add(name: str, text: str) -> None:
        found.setdefault(name, []).append(text)

    channel, provider = fields.get("channel", ""), fields.get("provider", "")
    for which, text in sender_problems(channel, provider, fields.get("sender", ""), fields.get("sender_name", "")):
        add(which, text)
    body = fields.get("body", "")
    for name in ("subject", "body"):
        try:
            templating.parse(fields.get(name, ""))
        except templating.TemplateError as exc:
            add(name, str(exc))
    if not body.strip():
        add("body", "the message needs a body")
    elif channel == "sms" and "body" not in found:
        for problem in templating.check_sms(body, provider):
            add("body", problem)
    if channel == "email" and not fields.get("subject", "").strip():
        add("subject", "an email needs a subject")
    elif channel == "email" and (problem := subject_too_long(fields.get("subject", ""), provider, fixed=True)):
        add("subject", problem)
    if channel == "email" and provider in SENDING_PROVIDERS and channel not in capabilities(provider).channels:
        add("provider", f"{provider} sends SMS only")
    fallback_problems(fields, add)
    for name in ("time_zone",):
        try:
            ZoneInfo(fields.get(name) or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            add(name, f"unknown time zone {fields.get(name)!r} (use an IANA name such as Europe/Paris)")
    if bool(fields.get("quiet_start")) != bool(fields.get("quiet_end")):
        add("quiet_end", "quiet hours need both a start and an end")
    audience = fields.get("audience") or {}
    if not isinstance(audience, dict) or set(audience) - {"crm_record_ids", "attributes"}:
        add("audience", 'use {}, {"crm_record_ids": [...]} or {"attributes": {"name": "value"}}')
    else:
        ids = audience.get("crm_record_ids")
        if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids)):
            add("audience", "crm_record_ids must be a list of record ids")
        attributes = audience.get("attributes")
        if attributes is not None and (
            not isinstance(attributes, dict)
            or not all(ATTRIBUTE_NAME.fullmatch(k) and isinstance(v, str | int | float) for k, v in attributes.items())
        ):
            add("audience", "attributes must map attribute names to plain values")
    return found


def fallback_problems(fields: dict[str, Any], add: Callable[[str, str], None]) -> None:
    """The fallback channel: another channel than the campaign's, a provider that sends on it, a subject for an
    email, and a body that fits an SMS when the fallback is one (the body is rendered again for it)."""
    channel, fallback = fields.get("channel", ""), fields.get("fallback_channel") or ""
    provider = fields.get("fallback_provider") or ""
    if not fallback:
        if provider:
            add("fallback_provider", "a fallback provider needs a fallback channel")
        for name in ("fallback_sender", "fallback_sender_name"):
            if fields.get(name):
                add(name, "a fallback sender needs a fallback channel")
        return
    if fallback not in (Channel.SMS, Channel.EMAIL):
        add("fallback_channel", "use sms, email, or empty for no fallback")
        return
    sender, name = fields.get("fallback_sender") or "", fields.get("fallback_sender_name") or ""
    for which, text in sender_problems(fallback, provider, sender, name):
        add(f"fallback_{which}", text)
    if fallback == channel:
        add("fallback_channel", f"the fallback goes on another channel than the campaign's ({channel})")
    if not provider:
        add("fallback_provider", f"name the provider that sends the {fallback} fallback")
    elif provider not in SENDING_PROVIDERS:
        add("fallback_provider", f"unknown sending provider {provider!r}")
    elif fallback == Channel.EMAIL and fallback not in capabilities(provider).channels:
        add("fallback_provider", f"{provider} sends SMS only")
    subject = fields.get("fallback_subject") or ""
    if fallback == Channel.EMAIL:
        try:
            templating.parse(subject)
        except templating.TemplateError as exc:
            add("fallback_subject", str(exc))
        if not subject.strip():
            add("fallback_subject", "an email fallback needs a subject")
        elif problem := subject_too_long(subject, provider, fixed=True):
            add("fallback_subject", problem)
    body = fields.get("body", "")
    if fallback == Channel.SMS and body.strip() and provider in SENDING_PROVIDERS:
        try:
            templating.parse(body)
        except templating.TemplateError:
            return  # said under body already
        for problem in templating.check_sms(body, provider):
            add("body", f"as the SMS fallback: {problem}")


# --- quiet hours ---------------------------------------------------------------------------------------------


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def next_allowed(at: datetime, time_zone: str, quiet_start: time | None, quiet_end: time | None) -> datetime:
    """``at``, or the end of the quiet hours ``at`` falls in (local time of ``time_zone``)."""
    if quiet_start is None or quiet_end is None or quiet_start == quiet_end:
        return at
    tz = zone(time_zone)
    local = at.astimezone(tz)
    now = local.time()
    if quiet_start < quiet_end:  # within one day: 12:00-14:00
        quiet = quiet_start <= now < quiet_end
        end_day = local.date()
    else:  # over midnight: 21:00-08:00
        quiet = now >= quiet_start or now < quiet_end
        end_day = local.date() + timedelta(days=1) if now >= quiet_start else local.date()
    if not quiet:
        return at
    return datetime.combine(end_day, quiet_end, tzinfo=tz).astimezone(at.tzinfo)


def contact_zone(campaign: Campaign, contact: Contact) -> str:
    name = str((contact.attributes or {}).get("time_zone") or "")
    return name if name and zone(name).key == name else campaign.time_zone


# --- the audience and planning -------------------------------------------------------------------------------


def address_field(channel: str) -> str:
    return "phone" if channel == "sms" else "email"


def audience_of(campaign: Campaign) -> QuerySet[Contact]:
    """The contacts the campaign goes to that have an address on its channel."""
    contacts = Contact.objects.exclude(**{address_field(campaign.channel): ""})
    spec = campaign.audience or {}
    if spec.get("crm_record_ids") is not None:
        contacts = contacts.filter(crm_record_id__in=spec["crm_record_ids"])
    for name, value in (spec.get("attributes") or {}).items():
        contacts = contacts.filter(**{f"attributes__{name}": value})
    return contacts


def plan_batch(campaign_id: int, size: int = PLAN_BATCH, now: datetime | None = None) -> int:
    """Plan the next ``size`` contacts of a running campaign; answers how many (0: planning is done)."""
    now = now or timezone.now()
    with transaction.atomic():
        campaign = for_update(Campaign.objects.filter(pk=campaign_id)).first()
        if campaign is None or campaign.state != Campaign.State.RUNNING or campaign.planning_done:
            return 0
        contacts = list(audience_of(campaign).filter(pk__gt=campaign.planned_through).order_by("pk")[:size])
        sends = [planned_send(campaign, contact, now) for contact in contacts]
        Send.objects.bulk_create(sends, batch_size=500, ignore_conflicts=True)
        campaign.planned += len(contacts)
        if contacts:
            campaign.planned_through = contacts[-1].pk
        campaign.planning_done = len(contacts) < size
        campaign.save(update_fields=["planned", "planned_through", "planning_done"])
    return len(contacts)


def planned_send(campaign: Campaign, contact: Contact, now: datetime, fallback_of: int | None = None) -> Send:
    """The campaign's message to ``contact``; with ``fallback_of`` (an escalated message's id), its fallback: on the
    fallback channel and provider, critical, keyed ``fallback:<message id>``, the body rendered again."""
    fallback = fallback_of is not None
    channel = campaign.fallback_channel if fallback else campaign.channel
    provider = campaign.fallback_provider if fallback else campaign.provider
    subject = campaign.fallback_subject if fallback else campaign.subject
    priority = "critical" if fallback else campaign.priority
    values = templating.contact_values(contact.crm_record_id, contact.phone, contact.email, contact.attributes)
    to = getattr(contact, address_field(channel))
    tz = contact_zone(campaign, contact)
    metadata: dict[str, Any] = {"contact": contact.crm_record_id}
    if fallback:
        metadata["fallback_of"] = fallback_of
    elif campaign.use_existing_conversation:
        metadata["use_existing_conversation"] = True
    if contact.external_contact_id:
        metadata["external_contact_id"] = contact.external_contact_id
    key = f"fallback:{fallback_of}" if fallback else f"campaign:{campaign.pk}:{contact.crm_record_id}"
    send = Send(
        idempotency_key=key[:200],
        channel=channel,
        provider=provider,
        to=to,
        crm_record_id=contact.crm_record_id,
        campaign=campaign,
        priority=priority,
        rank=PRIORITY_RANK.get(priority, 2),
        metadata=metadata,
        time_zone=tz,
        not_before=next_allowed(max(campaign.start_at or now, now), tz, campaign.quiet_start, campaign.quiet_end),
    )
    try:
        content = {"text": templating.parse(campaign.body).render(values)}
        if channel == "email":
            content["subject"] = templating.parse(subject).render(values)
    except templating.TemplateError as exc:
        send.state, send.error, send.finished_at = Send.State.FAILED, f"template: {exc}", now
        return send
    too_long = templating.check_sms(content["text"], provider) if channel == "sms" else []
    if channel == "email" and (problem := subject_too_long(content["subject"], provider)):
        too_long = [f"the subject is {problem}"]
    if too_long:
        send.state, send.error, send.finished_at = Send.State.FAILED, f"message: {'; '.join(too_long)}", now
        return send
    # Each channel its own sender identity: the campaign's for its channel, the fallback's for the fallback (else
    # the provider's default for that channel).
    if fallback:
        content.update(identity(campaign.fallback_sender, campaign.fallback_sender_name))
    else:
        content.update(identity(campaign.sender, campaign.sender_name))
    send.content = content
    return send


def plan(campaign_id: int | None = None, budget: float = 60.0) -> int:
    """Plan running campaigns (or one) a batch each in turn, so that each starts sending after its first batch
    rather than after the others' whole audiences; until all are planned or ``budget`` seconds have passed (the
    next run goes on). Each round asks again which campaigns are running: one started meanwhile joins in."""
    started, total = timezone.now(), 0
    while (timezone.now() - started).total_seconds() < budget:
        waiting = Campaign.objects.filter(state=Campaign.State.RUNNING, planning_done=False)
        if campaign_id is not None:
            waiting = waiting.filter(pk=campaign_id)
        ids = list(waiting.order_by("pk").values_list("pk", flat=True))
        if not ids:
            break
        for pk in ids:
            total += plan_batch(pk)
    return total


# --- start, pause, resume, cancel, complete ------------------------------------------------------------------


def start(campaign: Campaign, now: datetime | None = None) -> Campaign:
    now = now or timezone.now()
    if not campaign.sendable:
        raise LifecycleError("this campaign only tracks messages sent elsewhere: it has no channel or provider")
    if campaign.state != Campaign.State.DRAFT:
        raise LifecycleError(f"only a draft starts; this campaign is {campaign.state}")
    found = problems(fields_of(campaign))
    if found:
        raise LifecycleError("; ".join(f"{name}: {' '.join(texts)}" for name, texts in found.items()))
    changed = Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.DRAFT).update(
        state=Campaign.State.RUNNING, started_at=now, audience_size=audience_of(campaign).count(), state_reason=""
    )
    if not changed:
        raise LifecycleError("the campaign changed meanwhile: reload it")
    campaign.refresh_from_db()
    log.info("campaign %s started for %s contacts", campaign.pk, campaign.audience_size)
    return campaign


def pause(campaign: Campaign, reason: str = "paused by an operator") -> Campaign:
    if campaign.state != Campaign.State.RUNNING:
        raise LifecycleError(f"only a running campaign pauses; this one is {campaign.state}")
    Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.RUNNING).update(
        state=Campaign.State.PAUSED, state_reason=reason[:500]
    )
    campaign.refresh_from_db()
    log.warning("campaign %s paused: %s", campaign.pk, reason)
    return campaign


def resume(campaign: Campaign) -> Campaign:
    if campaign.state != Campaign.State.PAUSED:
        raise LifecycleError(f"only a paused campaign resumes; this one is {campaign.state}")
    throttle.forget_attempts(campaign.pk)
    Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.PAUSED).update(
        state=Campaign.State.RUNNING, state_reason=""
    )
    campaign.refresh_from_db()
    return campaign


def cancel(campaign: Campaign, now: datetime | None = None) -> int:
    """Stop it for good: what is still planned is cancelled (what a worker holds finishes). Answers how many."""
    now = now or timezone.now()
    if campaign.state in (Campaign.State.COMPLETED, Campaign.State.CANCELLED):
        raise LifecycleError(f"the campaign is already {campaign.state}")
    with transaction.atomic():
        Campaign.objects.filter(pk=campaign.pk).update(
            state=Campaign.State.CANCELLED, finished_at=now, state_reason="cancelled by an operator"
        )
        cancelled = Send.objects.filter(campaign=campaign, state=Send.State.PLANNED).update(
            state=Send.State.CANCELLED, finished_at=now
        )
    campaign.refresh_from_db()
    return cancelled


def complete_finished(now: datetime | None = None) -> list[int]:
    """Running campaigns fully planned with nothing left to send are completed."""
    now = now or timezone.now()
    done = []
    for campaign in Campaign.objects.filter(state=Campaign.State.RUNNING, planning_done=True):
        left = Send.objects.filter(
            campaign=campaign, state__in=[Send.State.PLANNED, Send.State.CLAIMED, Send.State.SENDING]
        ).exists()
        if not left:
            Campaign.objects.filter(pk=campaign.pk, state=Campaign.State.RUNNING).update(
                state=Campaign.State.COMPLETED, finished_at=now
            )
            done.append(campaign.pk)
    return done


def trip_if_failing(campaign_id: int) -> bool:
    """The failure-rate breaker: a campaign whose send failures over the last CAMPAIGN_FAILURE_WINDOW exceed
    CAMPAIGN_FAILURE_RATE_MAX (with at least CAMPAIGN_FAILURE_MIN_SENDS attempts) pauses itself; the alert rule
    ``campaign_paused`` tells the operators."""
    attempts, failures = throttle.recent_attempts(campaign_id)
    if attempts < settings.CAMPAIGN_FAILURE_MIN_SENDS or failures <= settings.CAMPAIGN_FAILURE_RATE_MAX * attempts:
        return False
    reason = (
        f"{BREAKER}: {failures} of {attempts} send attempts failed in the last "
        f"{settings.CAMPAIGN_FAILURE_WINDOW / 60:g} minutes (limit {settings.CAMPAIGN_FAILURE_RATE_MAX:.0%})"
    )
    paused = Campaign.objects.filter(pk=campaign_id, state=Campaign.State.RUNNING).update(
        state=Campaign.State.PAUSED, state_reason=reason
    )
    if paused:
        log.warning("campaign %s paused: %s", campaign_id, reason)
    return bool(paused)


def test_send(campaign: Campaign, to: str, values: dict[str, Any]) -> Send:
    """The campaign's message to one address, sent now and not counted in the campaign. The template is filled
    from the contact at that address, if any, and ``values`` over it."""
    address, contact, content = test_message(campaign, to, values)
    return Send.objects.create(
        channel=campaign.channel,
        provider=campaign.provider,
        to=address,
        content=content,
        crm_record_id=contact.crm_record_id if contact else "",
        priority="high",
        rank=PRIORITY_RANK["high"],
        metadata={"test_of_campaign": campaign.pk},
    )


def test_message(campaign: Campaign, to: str, values: dict[str, Any]) -> tuple[str, Contact | None, dict[str, str]]:
    """What a test send would send, and to whom: the address normalized on the campaign's channel, the contact at
    it (if any) and the rendered content. Raises LifecycleError or ValueError when it cannot be sent."""
    if not campaign.sendable:
        raise LifecycleError("this campaign only tracks messages: it has no channel or provider")
    address = normalize_address(campaign.channel, to)
    contact = Contact.objects.filter(**{address_field(campaign.channel): address}).first()
    known = (
        templating.contact_values(contact.crm_record_id, contact.phone, contact.email, contact.attributes)
        if contact
        else {}
    )
    filled = {**known, **{k: v for k, v in values.items() if isinstance(k, str)}}
    try:
        content = {"text": templating.parse(campaign.body).render(filled)}
        if campaign.channel == "email":
            content["subject"] = templating.parse(campaign.subject).render(filled)
    except templating.TemplateError as exc:
        raise LifecycleError(f"the template: {exc}") from exc
    content.update(identity(campaign.sender, campaign.sender_name))
    return address, contact, content


# --- progress ------------------------------------------------------------------------------------------------


def progress(campaign: Campaign) -> dict[str, int]:
    """Where the campaign's sends are: planned, queued (claimed or sending), sent, suppressed, failed, unknown,
    cancelled; with the audience and how much of it is planned. The counts are the database's own
    (receipts.tallies), kept with every send: counting a million sends by state took most of a second a page."""
    counts = tallies.counts(tallies.SENDS, campaign.pk)
    return {
        "audience": campaign.audience_size or 0,
        "planned_contacts": campaign.planned,
        "planned": counts.get(Send.State.PLANNED, 0),
        "queued": counts.get(Send.State.CLAIMED, 0) + counts.get(Send.State.SENDING, 0),
        "sent": counts.get(Send.State.SENT, 0),
        "suppressed": counts.get(Send.State.SUPPRESSED, 0),
        "failed": counts.get(Send.State.FAILED, 0),
        "unknown": counts.get(Send.State.UNKNOWN, 0),
        "cancelled": counts.get(Send.State.CANCELLED, 0),
    }


def fields_of(campaign: Campaign) -> dict[str, Any]:
    return {name: getattr(campaign, name) for name in SENDING_FIELDS}
