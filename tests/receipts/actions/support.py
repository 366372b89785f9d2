"""Wire-format builders and a domain-event recorder for the suppression, retry and escalation tests."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from receipts.events import DomainEvent, changes
from receipts.models import Suppression
from tests.conftest import drain, post_webhook

FORM = "application/x-www-form-urlencoded"


def webex_delivery(
    transid: str,
    code: str,
    *,
    to: str,
    channel: str = "email",
    description: str = "",
    status: str = "",
    at: str = "2026-11-20T10:00:00Z",
) -> dict[str, Any]:
    return {
        "deliveryInfoNotification": {
            "deliveryInfo": {
                "deliveryChannel": channel,
                "Description": description,
                "timeStamp": at,
                "code": code,
                "deliveryStatus": status,
                "destination": to,
            },
            "transid": transid,
        }
    }


def webex_inbound(
    event: str, sender: str, *, channel: str = "sms", text: str = "", tid: str = "t-1", at: str = "2026-11-20T10:00:00Z"
) -> dict[str, Any]:
    body: dict[str, Any] = {"event": event, "from": sender, "channel": channel, "tid": tid, "ts": at}
    if text:
        body["textMessage"] = text
    return body


def sms_receipt(message_id: str, state: int, result: int = 0) -> str:
    return f"type=receipt&message_id={message_id}&message_state={state}&result_code={result}"


def genesys_receipt(message_id: str, status: str, *codes: str, at: str = "2026-11-20T10:00:00Z") -> dict[str, Any]:
    return {
        "type": "Receipt",
        "id": f"r-{message_id}-{status}",
        "status": status,
        "reasons": [{"code": code, "message": code} for code in codes],
        "channel": {"messageId": message_id, "time": at},
    }


def deliver(client: Any, provider: str, *bodies: Any) -> None:
    """Post each body as the provider would, then process the inbox as the worker would."""
    for body in bodies:
        if provider == "genesys_sms":
            response = post_webhook(client, provider, body, FORM)
        else:
            response = post_webhook(client, provider, json.dumps(body))
        assert response.status_code == 200, response.content
    drain()


def active(channel: str, address: str) -> list[str]:
    return sorted(
        Suppression.objects.active().filter(channel=channel, address=address).values_list("reason", flat=True)
    )


@contextmanager
def recorded_events() -> Iterator[list[DomainEvent]]:
    seen: list[DomainEvent] = []

    def receiver(sender: Any, events: list[DomainEvent], **kwargs: Any) -> None:
        seen.extend(events)

    changes.connect(receiver)
    try:
        yield seen
    finally:
        changes.disconnect(receiver)
