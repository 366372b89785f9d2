"""Messages age out after MESSAGE_RETENTION_DAYS with their timelines, in batches; an address is erased on
request with an audit line that keeps nothing of it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from receipts.actions import retention, suppression
from receipts.models import Erasure, InboxState, Message, MessageEvent, ReceiptEvent, ReviewResolution, Suppression
from tests.conftest import drain, post_webhook, register

pytestmark = pytest.mark.django_db

NUMBER = "+15550001111"


def receipt(client: Client, message_id: str, status: str = "delivered", **extra: str) -> None:
    body = {"id": message_id, "status": status, "timestamp": "2026-11-20T10:00:00Z", **extra}
    assert post_webhook(client, "generic", json.dumps(body)).status_code == 200


def test_old_messages_go_with_their_timelines_in_batches_and_their_suppressions_stay(
    client: Client, settings: Any
) -> None:
    settings.MESSAGE_RETENTION_DAYS = 400
    for i in range(5):
        register(provider_message_id=f"old-{i}", to=f"+1555000200{i}")
        receipt(client, f"old-{i}", "sent")
        receipt(client, f"old-{i}", "delivered")
    register(provider_message_id="new-1")
    receipt(client, "new-1")
    drain()
    old = Message.objects.exclude(provider_message_id="new-1")
    stop = suppression.suppress("sms", "+15550002000", "unsubscribe", source="receipt", message=old.first())[0]
    ReviewResolution.objects.create(message=old.first(), action=ReviewResolution.Action.RESOLVE, note="looked at it")
    old.update(created_at=timezone.now() - timedelta(days=401))

    deleted = retention.prune_messages(chunk=2)

    assert deleted == 5
    assert list(Message.objects.values_list("provider_message_id", flat=True)) == ["new-1"]
    assert MessageEvent.objects.count() == 1
    assert ReviewResolution.objects.count() == 0
    stop.refresh_from_db()
    assert stop.message_id is None
    assert stop.is_active()


def test_zero_keeps_every_message(client: Client, settings: Any) -> None:
    settings.MESSAGE_RETENTION_DAYS = 0
    register(provider_message_id="keep-1")
    Message.objects.update(created_at=timezone.now() - timedelta(days=4000))

    assert retention.prune_messages() == 0
    assert Message.objects.count() == 1


@pytest.fixture
def someone(client: Client) -> dict[str, Any]:
    """Two messages to NUMBER with their timelines, one to someone else, an orphan receipt naming NUMBER, a
    suppression and a soft-bounce history for NUMBER."""
    mine = [register(provider_message_id=f"mine-{i}", to=NUMBER) for i in range(2)]
    other = register(provider_message_id="theirs", to="+15550009999")
    for pk in ("mine-0", "mine-1", "theirs"):
        receipt(client, pk)
    receipt(client, "never-registered", to="15550001111")  # waits as an orphan, the number in its text
    drain()
    stop = suppression.suppress("sms", NUMBER, "unsubscribe", source="receipt")[0]
    return {"mine": mine, "other": other, "stop": stop}


def test_erasure_takes_messages_timelines_raw_bodies_and_suppressions_and_blocks_the_address(someone: dict) -> None:
    assert ReceiptEvent.objects.filter(state=InboxState.ORPHAN).count() == 1

    erasure = retention.erase_address("(555) 000-1111", requested_by="ticket 42", note="asked by phone")

    assert not Message.objects.filter(to=NUMBER).exists()
    assert list(Message.objects.values_list("provider_message_id", flat=True)) == ["theirs"]
    assert MessageEvent.objects.count() == 1
    # The raw bodies that carried it are gone, the other person's stays.
    assert [json.loads(b)["id"] for b in ReceiptEvent.objects.values_list("body", flat=True)] == ["theirs"]
    # The suppression goes too (it held the address); the erasure blocks the address instead, and remembers why
    # it was suppressed so that allowing it again restores that.
    assert not Suppression.objects.filter(pk=someone["stop"].pk).exists()
    assert suppression.is_suppressed("sms", NUMBER) == ["erased"]
    assert erasure.suppressed_for == ["unsubscribe"]
    assert (erasure.channel, erasure.messages, erasure.inbox_rows) == ("sms", 2, 3)
    assert erasure.address_sha256 == retention.address_digest("sms", NUMBER)
    # The audit line keeps nothing of the address.
    stored = json.dumps(list(Erasure.objects.values()), default=str)
    assert "0001111" not in stored
    assert "ticket 42" in stored


def test_an_email_is_erased_whatever_its_case(client: Client) -> None:
    register(channel="email", provider_message_id="mail-1", to="ann@example.com")
    receipt(client, "mail-1", "bounced")
    drain()

    erasure = retention.erase_address("Ann@Example.COM", requested_by="dpo")

    assert (erasure.channel, erasure.messages, erasure.inbox_rows) == ("email", 1, 1)
    assert not Message.objects.exists()
    assert not ReceiptEvent.objects.exists()


def test_the_command_erases_and_says_what_went(someone: dict, capsys: pytest.CaptureFixture[str]) -> None:
    call_command("erase_address", "+1 555 000 1111", "--by", "ticket 43")
    out = capsys.readouterr().out
    assert "2 message(s), 3 raw inbox row(s)" in out
    assert "0001111" not in out  # masked
    assert Erasure.objects.count() == 1


def test_the_command_refuses_what_is_not_an_address() -> None:
    with pytest.raises(CommandError):
        call_command("erase_address", "not a number", "--by", "me")
    assert not Erasure.objects.exists()


def test_an_operator_erases_from_the_admin_only_after_confirming(someone: dict) -> None:
    operator = get_user_model().objects.create_superuser("ann", password="pw")
    client = Client()
    client.force_login(operator)
    url = "/admin/receipts/erasure/add/"
    assert client.get(url).status_code == 200

    unconfirmed = client.post(url, {"address": NUMBER, "note": "request"})
    assert unconfirmed.status_code == 200
    assert Message.objects.filter(to=NUMBER).count() == 2

    done = client.post(url, {"address": NUMBER, "note": "request", "confirm": "on"})
    assert done.status_code == 302
    assert not Message.objects.filter(to=NUMBER).exists()
    assert Erasure.objects.get().requested_by == "operator:ann"
    listing = client.get("/admin/receipts/erasure/").content.decode()
    assert "operator:ann" in listing
    assert "0001111" not in listing
