"""Every Celery task has an explicit name, and still answers to the name it had before the tasks were gathered
in receipts/tasks.py, so that a message queued by an older release runs after an upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from config.celery import app as celery_app
from receipts import kicks
from tests.conftest import post_webhook, register, sample

RENAMED = {
    "receipts.tasks.drain_inbox": "receipts.drain_inbox",
    "receipts.tasks.sweep_inbox": "receipts.sweep_inbox",
    "receipts.tasks.expire_receipts": "receipts.expire_receipts",
    "receipts.polling_tasks.poll_high_priority": "receipts.poll_high_priority",
    "receipts.polling_tasks.poll_messages": "receipts.poll_messages",
    "receipts.polling_tasks.reconcile_bulk": "receipts.reconcile_bulk",
    "receipts.policy_tasks.send_retry": "receipts.send_retry",
    "receipts.policy_tasks.dispatch_retries": "receipts.dispatch_retries",
    "receipts.policy_tasks.raise_escalations": "receipts.raise_escalations",
    "receipts.policy_tasks.expire_suppressions": "receipts.expire_suppressions",
    "crm_sync.tasks.relay_outbox": "crm_sync.relay_outbox",
    "crm_sync.tasks.prune_outbox": "crm_sync.prune_outbox",
}
# Tasks born with their explicit names: no former name to answer to.
NEW = {
    "receipts.prune_inbox",
    "receipts.prune_messages",
    "receipts.refresh_rollups",
    "config.evaluate_alerts",
    "campaigns.dispatch_sends",
    "campaigns.reconcile_sends",
    "campaigns.dispatch_provider",
    "campaigns.plan_campaigns",
    "campaigns.fall_back",
}
OPTIONS = ("acks_late", "reject_on_worker_lost", "time_limit", "soft_time_limit")


@pytest.fixture(scope="module")
def registry() -> Any:
    celery_app.loader.import_default_modules()  # what a worker does at start, task autodiscovery included
    return celery_app.tasks


@pytest.mark.parametrize(("former", "name"), RENAMED.items())
def test_a_former_name_runs_the_same_task_with_the_same_options(registry: Any, former: str, name: str) -> None:
    assert registry[former].run is registry[name].run
    assert [getattr(registry[former], o) for o in OPTIONS] == [getattr(registry[name], o) for o in OPTIONS]


def test_every_task_of_ours_is_named_explicitly_or_is_a_former_name(registry: Any) -> None:
    ours = {name for name in registry if name.startswith(("receipts.", "crm_sync.", "config.", "campaigns."))}

    assert ours == set(RENAMED) | set(RENAMED.values()) | NEW


def test_the_kicks_name_current_tasks(registry: Any) -> None:
    assert {kicks.DRAIN_INBOX, kicks.POLL_MESSAGES} <= set(RENAMED.values())
    assert {kicks.DRAIN_INBOX, kicks.POLL_MESSAGES} <= set(registry)


def test_every_beat_entry_names_a_current_task(registry: Any, settings: Any) -> None:
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}

    assert scheduled <= set(RENAMED.values()) | NEW
    assert scheduled <= set(registry)


@pytest.mark.django_db
def test_a_message_queued_under_a_former_name_does_the_work(registry: Any, client: Any) -> None:
    message = register(provider_message_id="msg-7a3b9c2d-1e4f-5a6b-7c8d-9e0f1a2b3c4d")
    assert post_webhook(client, "generic", sample("generic/delivered.json")).status_code == 200

    assert registry["receipts.tasks.sweep_inbox"].apply().get() == 1

    message.refresh_from_db()
    assert message.status == "delivered"
