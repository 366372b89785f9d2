from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from django.db import transaction

from crm_sync import actions
from crm_sync.adapters import salesforce
from crm_sync.models import OutboxMessage
from receipts.events import DomainEvent, Kind, publish
from simulator.fake_crm import FakeCrm

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)


@pytest.fixture
def fake_crm() -> Iterator[FakeCrm]:
    with FakeCrm() as crm:
        yield crm


@pytest.fixture
def generic_crm(fake_crm: FakeCrm, settings: Any) -> FakeCrm:
    settings.CRM_BACKEND = "generic"
    settings.CRM_URL = fake_crm.generic_url
    settings.CRM_SIGNING_SECRET = fake_crm.signing_secret
    settings.CRM_TIMEOUT = 5.0
    return fake_crm


@pytest.fixture
def salesforce_crm(fake_crm: FakeCrm, settings: Any) -> Iterator[FakeCrm]:
    settings.CRM_BACKEND = "salesforce"
    settings.SALESFORCE_TOKEN_URL = fake_crm.token_url
    settings.SALESFORCE_CLIENT_ID = fake_crm.client_id
    settings.SALESFORCE_CLIENT_SECRET = fake_crm.client_secret
    settings.CRM_TIMEOUT = 5.0
    salesforce._tokens.clear()
    yield fake_crm
    salesforce._tokens.clear()


def change(kind: str = Kind.STATUS_CHANGED, record: str = "CRM-1", message_id: int | None = 1, **payload: Any):
    return DomainEvent(kind, occurred_at=T0, payload=payload, message_id=message_id, crm_record_id=record)


def publish_changes(*events: DomainEvent) -> None:
    """As receipts' actions do: inside the transaction that made the change."""
    with transaction.atomic():
        publish(list(events))


def relay_until_idle(now: datetime | None = None) -> actions.RelayReport:
    total = actions.RelayReport()
    while True:
        report = actions.relay(now)
        total.batches += report.batches
        total.sent += report.sent
        total.failed += report.failed
        total.dead += report.dead
        total.skipped += report.skipped
        if report.sent + report.skipped == 0:
            return total


def states() -> dict[str, int]:
    counts: dict[str, int] = {}
    for state in OutboxMessage.objects.values_list("state", flat=True):
        counts[state] = counts.get(state, 0) + 1
    return counts
