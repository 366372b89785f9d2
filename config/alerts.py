"""Alerts: what should wake someone, checked by beat every ``ALERT_INTERVAL`` seconds.

Each rule looks at the rollups or a small indexed set and names what it finds by a key (the rule and what it is
about). A key found that was not open fires: an ``Alert`` row (the admin's banner) and one notice to
``ALERT_WEBHOOK_URL`` (JSON) and ``ALERT_EMAILS`` (Django's mail backend). An open key no longer found resolves,
with a second notice. A notice that fails is logged and tried again at the next check. It lives in ``config``
because its rules read both the receipts and the CRM relay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from campaigns.lifecycle import BREAKER
from campaigns.models import Campaign
from config.dashboard import last_receipt_at
from crm_sync import actions as crm
from receipts.actions import rollups
from receipts.models import NOT_FINAL, Alert, Escalation, InboxState, Message, ReceiptEvent
from receipts.status import Channel, Provider, Status

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    detail: str = ""
    link: str = ""


def findings(now: datetime | None = None) -> list[Finding]:
    """Every condition that holds now, by rule."""
    now = now or timezone.now()
    day = rollups.window_stats("day", now)  # the last 24 hours, read once for the three rate rules
    email = rollups.figures([r for r in day if r["channel"] == Channel.EMAIL])
    found: list[Finding] = []
    found += low_delivery_rates(day)
    found += silent_providers(now)
    found += review_queue(now)
    found += dead_inbox()
    found += crm_lag(now)
    found += open_escalations()
    found += bounce_rate(email)
    found += complaint_rate(email)
    found += breaker_paused_campaigns()
    return found


def breaker_paused_campaigns() -> list[Finding]:
    """Campaigns the failure-rate breaker paused (campaigns.lifecycle): resolved when resumed or cancelled."""
    paused = Campaign.objects.filter(state=Campaign.State.PAUSED, state_reason__startswith=BREAKER)
    return [
        Finding(
            key=f"campaign_paused:{campaign.pk}",
            title=f"Campaign {campaign.name} paused itself: too many of its sends fail",
            detail=campaign.state_reason,
            link=reverse("admin:campaigns_campaign_change", args=[campaign.pk]),
        )
        for campaign in paused.order_by("pk")[:50]
    ]


def low_delivery_rates(rows: list[dict[str, Any]]) -> list[Finding]:
    """A provider delivering under ALERT_DELIVERY_RATE_MIN of its final messages of the last 24 hours (with at
    least ALERT_MIN_FINAL of them, so that three messages cannot page anyone)."""
    found = []
    for (provider,), f in rollups.grouped(rows, "provider").items():
        rate = f["delivery_rate"]
        if rate is not None and f["final"] >= settings.ALERT_MIN_FINAL and rate < settings.ALERT_DELIVERY_RATE_MIN:
            name = Provider(provider).label
            found.append(
                Finding(
                    f"delivery_rate:{provider}",
                    f"{name} delivers {rate:.1%} of its messages (under {settings.ALERT_DELIVERY_RATE_MIN:.0%})",
                    f"{f['delivered']} delivered, {f['failed']} failed of {f['final']} final, last 24 hours",
                    f"{reverse('admin:receipts_message_changelist')}?provider__exact={provider}&status__exact=failed",
                )
            )
    return found


def silent_providers(now: datetime) -> list[Finding]:
    silent_after = timedelta(minutes=settings.PROVIDER_SILENT_MINUTES)
    found = []
    for provider in Provider:
        in_flight = Message.objects.filter(NOT_FINAL, provider=provider, sent_at__lt=now - silent_after)
        if not in_flight.exists():
            continue
        last = last_receipt_at(provider)
        if last is None or now - last > silent_after:
            since = "never" if last is None else f"for {int((now - last).total_seconds() // 60)} minutes"
            found.append(
                Finding(
                    f"silent:{provider}",
                    f"{provider.label} is silent: no receipt {since}, messages in flight",
                    f"No receipt from {provider.label} within PROVIDER_SILENT_MINUTES "
                    f"({settings.PROVIDER_SILENT_MINUTES:g}) while messages sent before then are not final.",
                    reverse("dashboard"),
                )
            )
    return found


def review_queue(now: datetime) -> list[Finding]:
    waiting = Message.objects.filter(needs_review=True).count()
    if waiting <= settings.ALERT_REVIEW_QUEUE_MAX:
        return []
    return [
        Finding(
            "review_queue",
            f"{waiting} messages wait for review (over {settings.ALERT_REVIEW_QUEUE_MAX})",
            link=reverse("admin:receipts_reviewqueue_changelist"),
        )
    ]


def dead_inbox() -> list[Finding]:
    dead = ReceiptEvent.objects.filter(state=InboxState.DEAD).count()
    if not dead:
        return []
    link = f"{reverse('admin:receipts_receiptevent_changelist')}?state__exact=dead"
    return [Finding("inbox_dead", f"{dead} receipts failed every attempt (dead inbox rows)", link=link)]


def crm_lag(now: datetime) -> list[Finding]:
    summary = crm.summary(now)
    found = []
    if summary.lag is not None and summary.lag > timedelta(minutes=settings.ALERT_CRM_LAG_MINUTES):
        minutes = summary.lag.total_seconds() / 60
        found.append(
            Finding(
                "crm_lag",
                f"CRM sync is {minutes:.0f} minutes behind (over {settings.ALERT_CRM_LAG_MINUTES:g})",
                f"{summary.backlog} changes waiting" + (f"; paused: {summary.pause_reason}" if summary.paused else ""),
                reverse("admin:crm_sync_outboxmessage_changelist"),
            )
        )
    if summary.dead:
        found.append(
            Finding(
                "crm_dead",
                f"{summary.dead} CRM changes failed every attempt",
                link=f"{reverse('admin:crm_sync_outboxmessage_changelist')}?state__exact=dead",
            )
        )
    return found


def open_escalations() -> list[Finding]:
    waiting = Escalation.objects.filter(acknowledged_at=None).count()
    if not waiting:
        return []
    return [
        Finding(
            "escalations",
            f"{waiting} escalations of critical messages wait for someone",
            link=f"{reverse('admin:receipts_escalation_changelist')}?acknowledged=no",
        )
    ]


def bounce_rate(f: dict[str, Any]) -> list[Finding]:
    """Email bounces over ALERT_BOUNCE_RATE_MAX of the final emails of the last 24 hours (the reputation alarm
    mailbox providers act on). ``f``: the figures of those emails."""
    bounced = f["by_status"].get(Status.BOUNCED, 0)
    if f["final"] < settings.ALERT_MIN_FINAL or bounced / f["final"] <= settings.ALERT_BOUNCE_RATE_MAX:
        return []
    return [
        Finding(
            "bounce_rate",
            f"Email bounce rate {bounced / f['final']:.1%} (over {settings.ALERT_BOUNCE_RATE_MAX:.0%})",
            f"{bounced} bounced of {f['final']} final emails, last 24 hours",
            f"{reverse('admin:receipts_message_changelist')}?channel__exact=email&status__exact=bounced",
        )
    ]


def complaint_rate(f: dict[str, Any]) -> list[Finding]:
    """Spam complaints over ALERT_COMPLAINT_RATE_MAX of the emails delivered in the last 24 hours (mailbox
    providers start filtering a sender near 0.1%). ``f``: the figures of those emails."""
    if (
        f["delivered"] < settings.ALERT_MIN_FINAL
        or f["complained"] / f["delivered"] <= settings.ALERT_COMPLAINT_RATE_MAX
    ):
        return []
    rate = f["complained"] / f["delivered"]
    return [
        Finding(
            "complaint_rate",
            f"Email complaint rate {rate:.2%} (over {settings.ALERT_COMPLAINT_RATE_MAX:.2%})",
            f"{f['complained']} complaints of {f['delivered']} delivered emails, last 24 hours",
            f"{reverse('admin:receipts_suppression_changelist')}?reason__exact=complaint",
        )
    ]


# --- keeping the open set ------------------------------------------------------------------------------------


def evaluate(now: datetime | None = None) -> dict[str, list[str]]:
    """Fire what is newly found, resolve what cleared, send the notices due. Returns the keys of each."""
    now = now or timezone.now()
    found = {f.key: f for f in findings(now)}
    open_alerts = {a.key: a for a in Alert.objects.filter(resolved_at=None)}
    fired, resolved = [], []
    for key, finding in found.items():
        if key in open_alerts:
            refresh(open_alerts[key], finding)
            continue
        try:
            with transaction.atomic():
                Alert.objects.create(
                    key=key, title=finding.title, detail=finding.detail, link=finding.link, fired_at=now
                )
            fired.append(key)
        except IntegrityError:  # another check opened it meanwhile
            continue
    for key, alert in open_alerts.items():
        if key not in found:
            Alert.objects.filter(pk=alert.pk).update(resolved_at=now)
            notify("resolved", alert, now)
            resolved.append(key)
    for alert in Alert.objects.filter(resolved_at=None, notified=False):
        if notify("firing", alert, now):
            Alert.objects.filter(pk=alert.pk).update(notified=True)
    if fired or resolved:
        log.warning("alerts: %d fired (%s), %d resolved (%s)", len(fired), fired, len(resolved), resolved)
    return {"fired": fired, "resolved": resolved}


def refresh(alert: Alert, finding: Finding) -> None:
    """An open alert says what holds now: its figures (how far behind, how many) are those of the last check, not
    of when it fired. The notices are not sent again for a figure that moved."""
    now_says = {"title": finding.title[:300], "detail": finding.detail, "link": finding.link[:500]}
    if any(getattr(alert, name) != value for name, value in now_says.items()):
        Alert.objects.filter(pk=alert.pk, resolved_at=None).update(**now_says)


def notify(state: str, alert: Alert, now: datetime) -> bool:
    """One notice to the webhook and the mail; True when every configured channel took it."""
    ok = True
    body: dict[str, Any] = {
        "state": state,
        "key": alert.key,
        "title": alert.title,
        "detail": alert.detail,
        "link": f"{settings.ALERT_LINK_BASE.rstrip('/')}{alert.link}" if alert.link else "",
        "fired_at": alert.fired_at.isoformat(),
        "at": now.isoformat(),
    }
    if settings.ALERT_WEBHOOK_URL:
        try:
            httpx.post(settings.ALERT_WEBHOOK_URL, json=body, timeout=10).raise_for_status()
        except httpx.HTTPError as exc:
            log.warning("alert %s: the webhook did not take it (%s)", alert.key, type(exc).__name__)
            ok = False
    if settings.ALERT_EMAILS:
        subject = f"[{state}] {alert.title}"
        text = "\n".join(
            filter(None, [alert.title, alert.detail, body["link"], f"since {alert.fired_at:%Y-%m-%d %H:%M:%S %Z}"])
        )
        try:
            send_mail(subject, text, None, settings.ALERT_EMAILS)
        except OSError as exc:
            log.warning("alert %s: the mail was not sent (%s)", alert.key, type(exc).__name__)
            ok = False
    return ok


def firing_alerts(request: HttpRequest) -> dict[str, Any]:
    """Template context: the open alerts, for the admin's banner (staff only; one small indexed query)."""
    user = getattr(request, "user", None)
    if not request.path.startswith("/admin/") or user is None or not user.is_staff:
        return {}
    return {"firing_alerts": list(Alert.objects.filter(resolved_at=None)[:10])}
