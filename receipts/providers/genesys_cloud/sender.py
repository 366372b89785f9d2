"""Sending through Genesys Cloud: agentless SMS and email, through the client (OAuth, the shared rate limit, the
circuit breaker)."""

from __future__ import annotations

import os
from typing import Any, ClassVar

import httpx
from django.conf import settings

from receipts.models import Message
from receipts.providers.base import NOT_TAKEN, Capabilities, SendError, content_of
from receipts.providers.genesys_cloud.client import (
    EMAIL_SUBJECT_MAX_LENGTH,
    GenesysCloudClient,
    GenesysCloudError,
    GenesysCloudUnavailable,
)
from receipts.status import Provider as ProviderName


class GenesysCloudSender:
    """Agentless SMS and email through the Genesys Cloud client. ``message.metadata`` may ask for threading:
    ``use_existing_conversation`` (reuse the contact's active conversation) and ``external_contact_id``.

    One client per process: its connections stay open and its TLS context is built once."""

    _clients: ClassVar[dict[tuple[Any, ...], GenesysCloudClient]] = {}

    def client(self) -> GenesysCloudClient:
        key = (
            os.getpid(),
            settings.GENESYS_CLOUD_BASE_URL,
            settings.GENESYS_CLOUD_LOGIN_URL,
            settings.GENESYS_CLOUD_REGION,
            settings.GENESYS_CLOUD_CLIENT_ID,
        )
        if key not in self._clients:
            self._clients[key] = GenesysCloudClient.from_settings()
        return self._clients[key]

    def send(self, message: Message) -> str:
        content = content_of(message)
        # One setting a channel: the SMS number is no email fromAddress (Genesys Cloud answers 400 to it).
        email = message.channel == "email"
        sender = content.get("from") or (
            settings.GENESYS_CLOUD_EMAIL_FROM if email else settings.GENESYS_CLOUD_FROM_ADDRESS
        )
        if not sender:
            setting = "GENESYS_CLOUD_EMAIL_FROM" if email else "GENESYS_CLOUD_FROM_ADDRESS"
            raise SendError(f"no Genesys Cloud {message.channel} from-address: set {setting}")
        metadata = message.metadata or {}
        client = self.client()
        try:
            if email:
                subject = content.get("subject", "")
                result: Any = client.send_email(
                    sender,
                    message.to,
                    subject,
                    text_body=content["text"],
                    from_name=content.get("from_name") or settings.GENESYS_CLOUD_EMAIL_FROM_NAME,
                    max_wait=settings.SEND_MAX_WAIT,
                )
            else:
                result = client.send_sms(
                    sender,
                    message.to,
                    content["text"],
                    use_existing_conversation=bool(metadata.get("use_existing_conversation")),
                    external_contact_id=str(metadata.get("external_contact_id") or ""),
                    max_wait=settings.SEND_MAX_WAIT,
                )
        except GenesysCloudError as exc:
            raise send_error(exc) from exc
        except ValueError as exc:  # too long for the API: refused before anything left
            raise SendError(str(exc)) from exc
        message.conversation_id = getattr(result, "conversation_id", "") or message.conversation_id
        return result.id


def send_error(exc: GenesysCloudError) -> SendError:
    """What the client's error says about the message: refused (4xx), not taken (our circuit or budget, a
    connection that never opened, 429, 503), or maybe taken (a 5xx or a lost answer)."""
    status = exc.status or 0
    if isinstance(exc, GenesysCloudUnavailable):
        if exc.code in ("circuit.open", "ratelimit.budget"):  # our own limits: nothing left, wait our turn
            return SendError(str(exc), transient=True, retry_after=exc.retry_after, held=True)
        connected = exc.code == "transport" and not isinstance(
            exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
        )
        return SendError(str(exc), transient=True, may_have_sent=connected, retry_after=exc.retry_after)
    return SendError(
        str(exc),
        transient=status == 429 or status >= 500,
        may_have_sent=status >= 500 and status not in NOT_TAKEN,
        retry_after=exc.retry_after,
        status=status or None,
    )


CAPABILITIES = Capabilities(
    name=ProviderName.GENESYS_CLOUD,
    webhook="genesys-cloud",
    channels=frozenset({"sms", "email"}),
    sender_settings={"sms": "GENESYS_CLOUD_FROM_ADDRESS", "email": "GENESYS_CLOUD_EMAIL_FROM"},
    numeric_sms_sender=True,  # fromAddress: a number provisioned in the org
    own_breaker=False,  # its client keeps one (receipts.providers.limits), shared with polling
    credentials=("GENESYS_CLOUD_CLIENT_ID", "GENESYS_CLOUD_CLIENT_SECRET"),
    answer_codes={},  # read by HTTP status and the error body's code (send_error)
    pollable=True,
    email_subject_max=EMAIL_SUBJECT_MAX_LENGTH,  # "Agentless Email - subject line 400 characters"
    sender=GenesysCloudSender,
)
