"""Sending through Genesys Cloud: agentless SMS and email, through the client (OAuth, the shared rate limit, the
circuit breaker)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from receipts.models import Message
from receipts.providers.base import SendError, content_of
from receipts.providers.genesys_cloud.client import GenesysCloudClient, GenesysCloudError


class GenesysCloudSender:
    """Agentless SMS and email through the Genesys Cloud client."""

    def send(self, message: Message) -> str:
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
