"""Provider senders: what `receipts.sending` (retries) and the demo campaign call to send one message.

Each returns the provider's id for the message and raises ``SendError`` (``transient`` when trying later can help).
Genesys Cloud goes through its client (OAuth, the shared rate limit, the circuit breaker); the SMS Aggregation
MT and the Webex Connect messaging API are a single POST each. Their base URLs point at the real services in
production and at the provider simulator in the demo and the tests.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
from django.conf import settings

from receipts.logging import mask
from receipts.models import Message
from receipts.sending import SendError

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(10.0, connect=3.0)


def content_of(message: Message) -> dict[str, str]:
    content = message.content or {}
    if not content.get("text"):
        raise SendError("the message has no text to send")
    return content


def raise_for(response: httpx.Response, provider: str) -> None:
    if response.status_code < 400:
        return
    transient = response.status_code == 429 or response.status_code >= 500
    raise SendError(f"{provider} answered {response.status_code}: {response.text[:200]}", transient=transient)


class GenesysCloudSender:
    """Agentless SMS and email through the Genesys Cloud client."""

    def send(self, message: Message) -> str:
        from receipts.providers.genesys_cloud_client import GenesysCloudClient, GenesysCloudError

        content = content_of(message)
        sender = content.get("from") or settings.GENESYS_CLOUD_FROM_ADDRESS
        client = GenesysCloudClient.from_settings()
        try:
            if message.channel == "email":
                subject = content.get("subject", "")
                result: Any = client.send_email(sender, message.to, subject, text_body=content["text"])
            else:
                result = client.send_sms(sender, message.to, content["text"])
        except GenesysCloudError as exc:
            status = getattr(exc, "status", 0) or 0
            raise SendError(str(exc), transient=status == 429 or status >= 500) from exc
        finally:
            client.close()
        message.conversation_id = getattr(result, "conversation_id", "") or message.conversation_id
        return result.id


class GenesysSmsSender:
    """An MT to the SMS Aggregation Service; we choose the message_id, and ask for delivery receipts."""

    def send(self, message: Message) -> str:
        content = content_of(message)
        message_id = str(uuid.uuid4())
        form = {
            "login": settings.GENESYS_SMS_LOGIN,
            "password": settings.GENESYS_SMS_PASSWORD,
            "phone_number": message.to,
            "sender": content.get("from") or settings.GENESYS_SMS_SENDER,
            "message": content["text"],
            "message_id": message_id,
            "receipt": "TRUE",
            "app_id": settings.GENESYS_SMS_APP_ID,
        }
        try:
            response = httpx.post(settings.GENESYS_SMS_MT_URL, data=form, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            raise SendError(f"SMS Aggregation unreachable: {type(exc).__name__}", transient=True) from exc
        raise_for(response, "SMS Aggregation")
        log.info("SMS Aggregation MT %s to %s", message_id, mask(message.to))
        return message_id


class WebexConnectSender:
    """The Webex Connect v1 messaging API; the answer's transid is the message id receipts carry."""

    def send(self, message: Message) -> str:
        content = content_of(message)
        if message.channel == "email":
            channels = {
                "email": {
                    "subject": content.get("subject", ""),
                    "text": content["text"],
                    "from": content.get("from") or settings.WEBEX_CONNECT_EMAIL_FROM,
                }
            }
            destination = [{"email": [message.to]}]
        else:
            sender = content.get("from") or settings.WEBEX_CONNECT_SENDER_ID
            channels = {"sms": {"text": content["text"], "senderid": sender}}
            destination = [{"msisdn": [message.to.lstrip("+")]}]
        body = {"deliverychannel": message.channel, "channels": channels, "destination": destination}
        url = settings.WEBEX_CONNECT_URL.rstrip("/") + "/resources/v1/messaging"
        try:
            response = httpx.post(url, json=body, headers={"key": settings.WEBEX_CONNECT_SERVICE_KEY}, timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            raise SendError(f"Webex Connect unreachable: {type(exc).__name__}", transient=True) from exc
        raise_for(response, "Webex Connect")
        try:
            return str(response.json()["response"][0]["transid"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SendError(f"Webex Connect answered without a transid: {response.text[:200]}") from exc


SENDERS: dict[str, type[GenesysCloudSender | GenesysSmsSender | WebexConnectSender]] = {
    "genesys_cloud": GenesysCloudSender,
    "genesys_sms": GenesysSmsSender,
    "webex_connect": WebexConnectSender,
}
# The settings without which a provider's built-in sender cannot work: no credentials, no sending.
REQUIRED = {
    "genesys_cloud": ("GENESYS_CLOUD_CLIENT_ID", "GENESYS_CLOUD_CLIENT_SECRET"),
    "genesys_sms": ("GENESYS_SMS_LOGIN", "GENESYS_SMS_PASSWORD"),
    "webex_connect": ("WEBEX_CONNECT_SERVICE_KEY",),
}


def configured_sender(provider: str) -> GenesysCloudSender | GenesysSmsSender | WebexConnectSender | None:
    required = REQUIRED.get(provider)
    if not required or not all(getattr(settings, name) for name in required):
        return None
    return SENDERS[provider]()
