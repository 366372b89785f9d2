"""Genesys Cloud CX, as the simulator serves it. Field names follow the platform SDK models
(purecloudplatformclientv2 / platform-client-sdk-java ``build/docs/*.md``); where the real API leaves something
open, the choice made here is marked "(simulator)". The client is coded against the same shapes.

OAuth (the real one lives on ``login.{region}``; the simulator serves it on its own host)
    ``POST /oauth/token`` with ``Authorization: Basic base64(client_id:client_secret)`` (or ``client_id`` and
    ``client_secret`` form fields) and form body ``grant_type=client_credentials``
    -> 200 ``{"access_token": "...", "token_type": "bearer", "expires_in": 86400}`` (``expires_in`` is the
    ``token_lifetime`` setting). Wrong grant -> 400 ``{"error": "unsupported_grant_type", "description": ...,
    "error_description": ...}``; unknown client -> 401 ``{"error": "invalid_client", ...}``.

Every ``/api/v2`` call needs ``Authorization: Bearer <token>``. Missing -> 401 code ``authentication.required``;
unknown or expired token -> 401 code ``bad.credentials`` ("Invalid login credentials."). Errors always have the
Genesys shape ``{"message", "code", "status", "contextId", "details": [], "errors": []}``.

Rate limit: ``rate_limit_per_minute`` (300) requests per token (``rate_limit_scope: client`` counts per OAuth
client instead) in fixed 60 s windows starting at the first request. Every ``/api/v2`` answer carries
``inin-ratelimit-allowed`` (the limit), ``inin-ratelimit-count`` (requests in this window) and
``inin-ratelimit-reset`` (seconds until the window resets). Over the limit -> 429 with ``Retry-After: <seconds>``
and ``{"message": "Rate limit exceeded the maximum. Retry the request in [N] seconds", "code":
"too.many.requests.retry.after", "status": 429, ...}``; a 429 is not counted against the window. Injected 429s
(``rate_429``) look the same, with ``Retry-After`` = ``retry_after``.

Send SMS: ``POST /api/v2/conversations/messages/agentless`` (SendAgentlessOutboundMessageRequest)
    ``{"fromAddress": "+15559876543", "toAddress": "+15551234567", "toAddressMessengerType": "sms",
    "textBody": "...", "useExistingActiveConversation": false, "externalContactId": "..."}``; ``toAddress`` E.164,
    ``textBody`` required and at most 765 characters, ``useExistingActiveConversation`` a boolean (default false),
    ``externalContactId`` a string (the recipient's external contact; kept on the message, shown by
    ``GET /_sim/messages/{id}`` in ``extra``). Field names as in the SDK's SendAgentlessOutboundMessageRequest
    (PureCloudPlatformClientV2 269: from_address, to_address, external_contact_id, to_address_messenger_type,
    text_body, messaging_template, use_existing_active_conversation). Only ``sms`` is simulated. -> 202
    SendAgentlessOutboundMessageResponse ``{"id": "<message id, 32 hex>", "conversationId": "<uuid>", "fromAddress",
    "toAddress", "messengerType": "sms", "textBody", "useExistingActiveConversation", "timestamp":
    "2026-11-20T10:15:02.114Z", "selfUri", "message": <MessageData, status queued>}``.
    A send opens a new conversation, unless ``useExistingActiveConversation`` is true and the simulator holds an
    active one between the same two addresses: the last SMS from this ``fromAddress`` to this ``toAddress``, sent
    less than ``conversation_idle_seconds`` (3600) ago; the message then joins its conversation (simulator: the real
    API speaks of a conversation connected to a flow, queue or agent). Analytics jobs still describe one
    conversation per message, so a joined conversation appears once for each of its messages (simulator).

Send limits (``send_limits["genesys_cloud"]``, ``sender_limit_per_second`` by ``fromAddress``, see
simulator/limits.py) apply to agentless SMS and email, after the token's rate limit and the request's checks; over
them -> the same 429 as the rate limit's, ``Retry-After`` the seconds until the window has room.

Send email: ``POST /api/v2/conversations/emails/agentless`` (AgentlessEmailSendRequestDto)
    ``{"senderType": "Outbound", "fromAddress": {"email": "...", "name": "..."}, "toAddresses": [{"email": "...",
    "name": "..."}], "replyToAddress": {...}, "subject": "...", "textBody": "...", "htmlBody": "..."}``; exactly one
    recipient ("We currently support one recipient only"), ``textBody`` or ``htmlBody`` required, ``subject`` at most
    400 characters and ``fromAddress.name`` at most 64 ("Email rate limits", help.mypurecloud.com), else 400.
    -> 202 AgentlessEmailSendResponseDto ``{"id", "conversationId", "senderType", "fromAddress", "toAddresses",
    "replyToAddress", "subject", "dateCreated", "selfUri"}``. An email's status is only in analytics: the
    conversation details jobs and ``GET /api/v2/analytics/conversations/{conversationId}/details`` (one
    conversation, AnalyticsConversationWithoutAttributes); the message details and bulk endpoints are for messages
    (an email id answers 404 there), and no receipt is pushed for it (simulator).

Status of one message: ``GET /api/v2/conversations/messages/{messageId}/details`` -> 200 MessageData
    ``{"id", "providerMessageId", "timestamp" (when accepted), "fromAddress", "toAddress", "direction": "outbound",
    "messengerType": "sms", "status", "normalizedMessage", "normalizedReceipts": [...], "conversationId",
    "selfUri"}``. No ``textBody``: the SDK has none in MessageData from version 269 on, which also dropped the
    ``useNormalizedMessage`` parameter that used to leave out the deprecated ``textBody``, ``media`` and
    ``stickers``; the text is in ``normalizedMessage`` (ConversationNormalizedMessage), the message itself:
    ``{"id", "channel", "type": "Text", "text": <the body>, "direction": "Outbound"}``, ``channel`` as in the
    receipts below with ``time`` when accepted.
    ``status`` moves queued -> sent -> ``delivery-success`` | ``delivery-failed`` (failed and expired alike); a
    "silent" message stays ``sent``. ``normalizedReceipts`` (ConversationNormalizedMessage) hold a ``Sent`` receipt
    once sent, then a ``Delivered`` or ``Failed`` one: ``{"id", "channel": {"platform": "Sms", "type": "Private",
    "messageId", "to": {"id"}, "from": {"id"}, "time"}, "type": "Receipt", "status", "reasons": [{"code",
    "message"}] (Failed only), "isFinalReceipt", "direction": "Outbound"}``. Reason codes are ConversationReason's:
    MessageExpired (the expired outcome), InvalidDestination, RecipientOptedOut, RateLimited, MessageNotAllowed,
    GeneralError, ServerError, UnknownMessage, DataFiltered. Unknown id -> 404 code ``not.found``.

A message through its ``selfUri``: ``GET /api/v2/conversations/messages/{conversationId}/messages/{messageId}``
    -> 200, the same MessageData as its details. A message id that is unknown or not in that conversation -> 404
    code ``not.found``.

Status of many: ``POST /api/v2/conversations/messages/{conversationId}/messages/bulk`` with a JSON array of at most
    ``bulk_max`` (1000) message ids -> 200 ``{"entities": [MessageData, ...], "pageSize", "pageNumber": 1, "total",
    "pageCount": 1}``. Unknown ids are left out. The path's conversation does not restrict the ids unless
    ``bulk_same_conversation_only`` is on (the real API's behaviour here is not documented). More than the limit,
    or not an array of strings -> 400.

Bulk reconciliation: analytics conversation details jobs.
    ``POST /api/v2/analytics/conversations/details/jobs`` (AsyncConversationQuery)
        ``{"interval": "2026-11-20T00:00:00.000Z/2026-11-21T00:00:00.000Z", "order": "asc"|"desc",
        "orderBy": "conversationStart", "limit": n, "conversationFilters": [...], "segmentFilters": [...]}``.
        ``interval`` is required; a conversation is included when it started before the interval's end and had
        not ended before its start (an open conversation counts as active). A filter is ``{"type": "and"|"or",
        "predicates": [{"dimension", "operator": "matches"|"exists"|"notExists", "value"}], "clauses": [{"type",
        "predicates"}]}``; filters in a list are and-ed. Dimensions simulated: conversationId, mediaType,
        messageType, direction, deliveryStatus, addressTo, addressFrom, purpose; any other -> 400 (simulator:
        better a loud refusal than a silent mismatch). -> 202 AsyncQueryResponse ``{"jobId": "<uuid>"}``.
    ``GET /api/v2/analytics/conversations/details/jobs/{jobId}`` -> AsyncQueryStatus ``{"state": "QUEUED" |
        "FULFILLED" | "CANCELLED" | "EXPIRED", "submissionDate", "completionDate" (once fulfilled),
        "expirationDate"}``. A job is QUEUED for ``analytics_job_delay`` seconds, and EXPIRED (results gone) an hour
        after submission. ``DELETE`` on it -> 202, state CANCELLED. Unknown job -> 404 ``not.found``.
    ``GET /api/v2/analytics/conversations/details/jobs/{jobId}/results?cursor=&pageSize=`` (pageSize default and
        maximum ``analytics_page_max``, 1000; larger values are clamped) -> AnalyticsConversationAsyncQueryResponse
        ``{"conversations": [...], "cursor": "<opaque>", "dataAvailabilityDate"}``; ``cursor`` is absent on the last
        page. Before FULFILLED -> 400 code ``bad.request``. The matching set and every status in it are fixed when
        the job is submitted, so paging returns each conversation exactly once.
        A conversation (AnalyticsConversation): ``{"conversationId", "conversationStart", "conversationEnd" (once
        final), "originatingDirection": "outbound", "participants": [
          {"participantId", "participantName": "Agentless", "purpose": "agent", "sessions": [{"sessionId",
           "mediaType", "messageType", "direction": "outbound", "addressFrom", "addressTo", "segments": [...]}]},
          {"participantId", "purpose": "customer", "sessions": [{"sessionId", "mediaType": "message" | "email",
           "messageType": "sms" (messages only), "direction": "outbound", "addressFrom", "addressTo", "remote",
           "deliveryStatus": "Queued" | "Sent" | "DeliverySuccess" | "DeliveryFailed",
           "deliveryStatusChangeDate", "extendedDeliveryStatus": "<reason code>" (failed email only),
           "segments": [{"segmentStart", "segmentEnd", "segmentType": "interact"}]}]}
        ]}``. The status is on the customer's session (simulator); clients should look for ``deliveryStatus`` in
        every session. A failed or expired SMS is DeliveryFailed and nothing more: its reason (``MessageExpired``,
        ``RecipientOptedOut``, ...) is in the message's ``normalizedReceipts``, from the details or the bulk lookup.

Receipts pushed to ``/webhooks/genesys-cloud/`` (open messaging style, one normalized receipt per POST, the same
object as in ``normalizedReceipts``), signed ``X-Hub-Signature-256: sha256=<base64 HMAC-SHA256 of the body>`` with the
Genesys Cloud webhook secret: ``Sent`` when sent, then ``Delivered`` or ``Failed`` with ``reasons``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from simulator.core import JOB_TTL, AnalyticsJob
from simulator.http import HttpError, Request, Response, Route, context_id
from simulator.model import GENESYS_REASON_TEXT, SimMessage, iso

if TYPE_CHECKING:
    from simulator.config import SimConfig
    from simulator.core import Simulator

PROVIDER = "genesys_cloud"
E164 = re.compile(r"^\+[1-9]\d{6,14}$")
# Labels split on their dots one way only, so a long run of dots is read once (the former
# `[^@\s]+\.[^@\s]+$` backtracked over it: quadratic).
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
MESSAGE_STATUS = {
    "queued": "queued",
    "sent": "sent",
    "delivered": "delivery-success",
    "failed": "delivery-failed",
    "expired": "delivery-failed",
}
ANALYTICS_STATUS = {
    "queued": "Queued",
    "sent": "Sent",
    "delivered": "DeliverySuccess",
    "failed": "DeliveryFailed",
    "expired": "DeliveryFailed",
}
SIMULATED_DIMENSIONS = (
    "conversationId",
    "mediaType",
    "messageType",
    "direction",
    "deliveryStatus",
    "addressTo",
    "addressFrom",
    "purpose",
)


def error(status: int, code: str, message: str, **headers: str) -> Response:
    body = {"message": message, "code": code, "status": status, "contextId": context_id(), "details": [], "errors": []}
    return Response(status, body, dict(headers))


def bad_request(message: str) -> Response:
    return error(400, "bad.request", message)


def too_many_requests(retry_after: int, **headers: str) -> Response:
    message = f"Rate limit exceeded the maximum. Retry the request in [{retry_after}] seconds"
    return error(429, "too.many.requests.retry.after", message, **{"Retry-After": str(retry_after), **headers})


def server_error(status: int) -> Response:
    codes = {500: "internal.server.error", 502: "bad.gateway", 503: "service.unavailable", 504: "gateway.timeout"}
    return error(status, codes.get(status, "internal.server.error"), "The service is currently unavailable.")


# --- OAuth ----------------------------------------------------------------------------------------------


def oauth_error(status: int, code: str, description: str) -> Response:
    return Response(status, {"error": code, "description": description, "error_description": description})


def token(sim: Simulator, request: Request) -> Response:
    fields = request.fields()
    client_id, client_secret = fields.get("client_id", ""), fields.get("client_secret", "")
    scheme, _, value = request.header("Authorization").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return oauth_error(401, "invalid_client", "client credentials are not valid Basic authentication")
    request.principal = f"client:{client_id}"
    if fields.get("grant_type") != "client_credentials":
        return oauth_error(400, "unsupported_grant_type", "grant_type must be client_credentials")
    known = sim.config.clients
    valid = bool(client_id and client_secret) and (
        not known or hmac.compare_digest(known.get(client_id, "").encode(), client_secret.encode())
    )
    if not valid:
        return oauth_error(401, "invalid_client", "client not found")
    value, _ = sim.issue_token(client_id)
    return Response(200, {"access_token": value, "token_type": "bearer", "expires_in": sim.config.token_lifetime})


# --- authentication and rate limit around every /api/v2 call --------------------------------------------


def authed(handler: Callable[[Simulator, Request], Response]) -> Callable[[Simulator, Request], Response]:
    def wrapper(sim: Simulator, request: Request) -> Response:
        scheme, _, value = request.header("Authorization").partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            sim.stats.fault("unauthorized")
            return error(
                401, "authentication.required", "No authentication bearer token specified in authorization header."
            )
        found = sim.token(value.strip())
        if found is None:
            sim.stats.fault("unauthorized")
            return error(401, "bad.credentials", "Invalid login credentials.")
        request.principal = f"token:{value.strip()[:8]}"
        key = f"client:{found.client_id}" if sim.config.rate_limit_scope == "client" else f"token:{value.strip()}"
        allowed, count, reset = sim.take_budget(key)
        limit = sim.config.rate_limit_per_minute
        headers = {
            "inin-ratelimit-allowed": str(limit),
            "inin-ratelimit-count": str(count),
            "inin-ratelimit-reset": str(max(0, int(reset + 0.999))),
        }
        if not allowed:
            sim.stats.fault("rate_limited")
            return too_many_requests(max(1, int(reset + 0.999)), **headers)
        try:
            response = handler(sim, request)
        except HttpError as exc:
            response = exc.response
        response.headers.update(headers)
        return response

    return wrapper


# --- sending --------------------------------------------------------------------------------------------


def send_sms(sim: Simulator, request: Request) -> Response:
    body = request.json(bad_request)
    if not isinstance(body, dict):
        return bad_request("The request body must be a SendAgentlessOutboundMessageRequest object.")
    for name in ("fromAddress", "toAddress", "toAddressMessengerType"):
        if not isinstance(body.get(name), str) or not body[name].strip():
            return bad_request(f"{name} is required.")
    messenger = body["toAddressMessengerType"]
    if messenger not in ("sms", "whatsapp", "open"):
        return bad_request(f"toAddressMessengerType {messenger!r} is not one of sms, whatsapp, open.")
    if messenger != "sms":
        return bad_request(f"The simulator only sends toAddressMessengerType sms, not {messenger!r}.")
    to = body["toAddress"].strip()
    if not E164.match(to):
        return bad_request("toAddress must be a phone number in E.164 format, e.g. +13175555555.")
    text = body.get("textBody")
    if not isinstance(text, str) or not text:
        return bad_request("textBody is required for the sms messenger type.")
    limit = sim.config.genesys_sms_max_chars
    if len(text) > limit:
        return bad_request(f"textBody is {len(text)} characters; the maximum for sms is {limit}.")
    reuse = body.get("useExistingActiveConversation")
    if reuse is None:  # left out or null: the default, false
        reuse = False
    elif not isinstance(reuse, bool):
        return bad_request("useExistingActiveConversation must be a boolean.")
    contact = body.get("externalContactId")
    if contact is not None and not isinstance(contact, str):
        return bad_request("externalContactId must be a string.")
    sender = body["fromAddress"].strip()
    with sim.lock:  # the active conversation looked up is the one joined, whatever else is being sent
        retry_after = sim.admit_send(PROVIDER, sender)
        if retry_after:
            return too_many_requests(retry_after)
        message = sim.create_message(
            PROVIDER,
            "sms",
            to,
            sender,
            text,
            conversation_id=sim.active_conversation(sender, to) if reuse else "",
            extra={"externalContactId": contact} if contact else None,
        )
        sim.note_conversation(message)
    sim.accepted(message)
    answer: dict[str, Any] = {
        "id": message.id,
        "conversationId": message.conversation_id,
        "fromAddress": message.from_,
        "toAddress": message.to,
        "messengerType": "sms",
        "textBody": message.body,
        "timestamp": iso(message.created),
        "selfUri": self_uri(message),
        "message": message_data(message, message.created),
    }
    if "useExistingActiveConversation" in body:
        answer["useExistingActiveConversation"] = reuse
    return Response(202, answer)


# Agentless email's character limits ("Email rate limits", help.mypurecloud.com): subject line 400 characters,
# friendly name 64.
EMAIL_SUBJECT_MAX, EMAIL_NAME_MAX = 400, 64


def email_address(value: Any, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or not isinstance(value.get("email"), str) or not EMAIL.match(value["email"]):
        raise HttpError(bad_request(f"{name} must be an EmailAddress object with a valid 'email'."))
    return {k: v for k, v in value.items() if k in ("email", "name") and isinstance(v, str)}


def send_email(sim: Simulator, request: Request) -> Response:
    body = request.json(bad_request)
    if not isinstance(body, dict):
        return bad_request("The request body must be an AgentlessEmailSendRequestDto object.")
    if body.get("senderType") != "Outbound":
        return bad_request("senderType is required and must be 'Outbound'.")
    sender = email_address(body.get("fromAddress"), "fromAddress")
    recipients = body.get("toAddresses")
    if not isinstance(recipients, list) or len(recipients) != 1:
        return bad_request("toAddresses must hold exactly one recipient; one recipient only is supported.")
    recipient = email_address(recipients[0], "toAddresses[0]")
    reply_to = email_address(body["replyToAddress"], "replyToAddress") if body.get("replyToAddress") else None
    text, html = body.get("textBody"), body.get("htmlBody")
    if not (isinstance(text, str) and text) and not (isinstance(html, str) and html):
        return bad_request("textBody or htmlBody is required.")
    subject = body["subject"] if isinstance(body.get("subject"), str) else ""
    if len(subject) > EMAIL_SUBJECT_MAX:
        return bad_request(f"subject must be at most {EMAIL_SUBJECT_MAX} characters, got {len(subject)}.")
    if len(sender.get("name", "")) > EMAIL_NAME_MAX:
        return bad_request(f"fromAddress.name must be at most {EMAIL_NAME_MAX} characters.")
    retry_after = sim.admit_send(PROVIDER, sender["email"])
    if retry_after:
        return too_many_requests(retry_after)
    message = sim.create_message(
        PROVIDER,
        "email",
        recipient["email"],
        sender["email"],
        cast(str, text or html),  # the check above: one of them is a non-empty string
        extra={"subject": subject, "fromName": sender.get("name", "")},
        push=False,
    )
    sim.accepted(message)
    answer = {
        "id": message.id,
        "conversationId": message.conversation_id,
        "senderType": "Outbound",
        "fromAddress": sender,
        "toAddresses": [recipient],
        "subject": subject,
        "dateCreated": iso(message.created),
        "selfUri": f"/api/v2/conversations/emails/{message.conversation_id}",
    }
    if reply_to:
        answer["replyToAddress"] = reply_to
    return Response(202, answer)


# --- status ---------------------------------------------------------------------------------------------


def self_uri(message: SimMessage) -> str:
    return f"/api/v2/conversations/messages/{message.conversation_id}/messages/{message.id}"


def sms_channel(message: SimMessage, at: float) -> dict[str, Any]:
    """ConversationMessagingChannel of an SMS: the same in the message and in its receipts."""
    return {
        "platform": "Sms",
        "type": "Private",
        "messageId": message.id,
        "to": {"id": message.to},
        "from": {"id": message.from_},
        "time": iso(at),
    }


def normalized_message(message: SimMessage) -> dict[str, Any]:
    """The message itself (ConversationNormalizedMessage, type Text), as MessageData's ``normalizedMessage``."""
    return {
        "id": message.id,
        "channel": sms_channel(message, message.created),
        "type": "Text",
        "text": message.body,
        "direction": "Outbound",
    }


def receipt(message: SimMessage, event: str) -> dict[str, Any]:
    """A normalized receipt (ConversationNormalizedMessage, type Receipt): "sent", or the final one."""
    if event == "sent":
        status, at, final = "Sent", message.sent_at, False
    else:
        status = "Delivered" if message.outcome == "delivered" else "Failed"
        at, final = message.final_at or message.sent_at, True
    body: dict[str, Any] = {
        "id": message.id,
        "channel": sms_channel(message, at),
        "type": "Receipt",
        "status": status,
        "isFinalReceipt": final,
        "direction": "Outbound",
    }
    if status == "Failed":
        body["reasons"] = [{"code": message.reason, "message": GENESYS_REASON_TEXT.get(message.reason, message.reason)}]
    return body


def message_data(message: SimMessage, now: float) -> dict[str, Any]:
    status = message.status_at(now)
    receipts = []
    if status != "queued":
        receipts.append(receipt(message, "sent"))
    if message.is_final_at(now):
        receipts.append(receipt(message, "final"))
    return {
        "id": message.id,
        "providerMessageId": "SM" + hashlib.sha1(message.id.encode(), usedforsecurity=False).hexdigest()[:30],
        "timestamp": iso(message.created),
        "fromAddress": message.from_,
        "toAddress": message.to,
        "direction": "outbound",
        "messengerType": "sms",
        "status": MESSAGE_STATUS[status],
        "normalizedMessage": normalized_message(message),
        "normalizedReceipts": receipts,
        "conversationId": message.conversation_id,
        "selfUri": self_uri(message),
    }


def sms_message(sim: Simulator, message_id: str) -> SimMessage | None:
    found = [m for m in sim.find(PROVIDER, message_id) if m.channel == "sms"]
    return found[0] if found else None


def details(sim: Simulator, request: Request) -> Response:
    message = sms_message(sim, request.params["messageId"])
    if message is None:
        return error(404, "not.found", f"Message {request.params['messageId']} was not found.")
    return Response(200, message_data(message, time.time()))


def conversation_message(sim: Simulator, request: Request) -> Response:
    """A message's ``selfUri``: the same MessageData as its details, found only in its own conversation."""
    conversation, message_id = request.params["conversationId"], request.params["messageId"]
    message = sms_message(sim, message_id)
    if message is None or message.conversation_id != conversation:
        return error(404, "not.found", f"Message {message_id} was not found in conversation {conversation}.")
    return Response(200, message_data(message, time.time()))


def bulk(sim: Simulator, request: Request) -> Response:
    ids = request.json(bad_request)
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        return bad_request("The request body must be a JSON array of message ids.")
    if len(ids) > sim.config.bulk_max:
        return bad_request(f"At most {sim.config.bulk_max} message ids can be requested at once, got {len(ids)}.")
    now, conversation = time.time(), request.params["conversationId"]
    entities = []
    for message_id in dict.fromkeys(ids):
        message = sms_message(sim, message_id)
        if message is None:
            continue
        if sim.config.bulk_same_conversation_only and message.conversation_id != conversation:
            continue
        entities.append(message_data(message, now))
    return Response(
        200, {"entities": entities, "pageSize": len(entities), "pageNumber": 1, "total": len(entities), "pageCount": 1}
    )


# --- analytics conversation details jobs -----------------------------------------------------------------


def parse_interval(value: Any) -> tuple[float, float]:
    if not isinstance(value, str) or "/" not in value:
        raise HttpError(bad_request("interval is required, as an ISO-8601 'start/end' string."))
    start_text, _, end_text = value.partition("/")
    try:
        start, end = (datetime.fromisoformat(t.strip().replace("Z", "+00:00")) for t in (start_text, end_text))
    except ValueError as exc:
        raise HttpError(bad_request(f"interval {value!r} is not an ISO-8601 interval.")) from exc
    # An interval without an offset is read as UTC.
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if end <= start:
        raise HttpError(bad_request("interval must end after it starts."))
    return start.timestamp(), end.timestamp()


def facts(message: SimMessage, at: float) -> dict[str, set[str]]:
    """What each simulated dimension holds for one message's conversation, at time ``at``."""
    status = message.status_at(at)
    return {
        "conversationId": {message.conversation_id},
        "mediaType": {"message" if message.channel == "sms" else "email"},
        "messageType": {"sms"} if message.channel == "sms" else set(),
        "direction": {"outbound"},
        "deliveryStatus": {ANALYTICS_STATUS[status]},
        "addressTo": {message.to},
        "addressFrom": {message.from_},
        "purpose": {"agent", "customer"},
    }


def check_filter(spec: Any, where: str) -> None:
    if not isinstance(spec, dict) or spec.get("type") not in ("and", "or"):
        raise HttpError(bad_request(f"{where} must be an object with type 'and' or 'or'."))
    for predicate in spec.get("predicates") or []:
        if not isinstance(predicate, dict):
            raise HttpError(bad_request(f"{where}.predicates must be objects."))
        dimension = predicate.get("dimension")
        if dimension not in SIMULATED_DIMENSIONS:
            raise HttpError(
                bad_request(
                    f"The simulator does not filter on {dimension!r} (it simulates {', '.join(SIMULATED_DIMENSIONS)})."
                )
            )
        if predicate.get("operator", "matches") not in ("matches", "exists", "notExists"):
            raise HttpError(bad_request(f"operator {predicate.get('operator')!r} is not matches, exists, notExists."))
    for clause in spec.get("clauses") or []:
        check_filter(clause, f"{where}.clauses")


def predicate_holds(predicate: dict[str, Any], known: dict[str, set[str]]) -> bool:
    values = known[predicate["dimension"]]
    operator = predicate.get("operator", "matches")
    if operator == "exists":
        return bool(values)
    if operator == "notExists":
        return not values
    return str(predicate.get("value")) in values


def filter_holds(spec: dict[str, Any], known: dict[str, set[str]]) -> bool:
    results = [predicate_holds(p, known) for p in spec.get("predicates") or []]
    results += [filter_holds(c, known) for c in spec.get("clauses") or []]
    if not results:
        return True
    return all(results) if spec["type"] == "and" else any(results)


def create_job(sim: Simulator, request: Request) -> Response:
    query = request.json(bad_request)
    if not isinstance(query, dict):
        return bad_request("The request body must be an AsyncConversationQuery object.")
    start, end = parse_interval(query.get("interval"))
    filters = []
    for kind in ("conversationFilters", "segmentFilters"):
        specs = query.get(kind) or []
        if not isinstance(specs, list):
            return bad_request(f"{kind} must be a list.")
        for i, spec in enumerate(specs):
            check_filter(spec, f"{kind}[{i}]")
            filters.append(spec)
    order = query.get("order", "asc")
    if order not in ("asc", "desc", "unordered"):
        return bad_request("order must be asc, desc or unordered.")
    limit = query.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        return bad_request("limit must be a positive integer.")

    now = time.time()
    with sim.lock:
        candidates = [m for m in sim.messages if m.provider == PROVIDER]
    matched: list[SimMessage] = []
    for message in candidates:
        if message.created >= end or message.created > now:
            continue
        ended = message.final_at if message.is_final_at(now) else None
        if ended is not None and ended < start:
            continue
        if filters:
            known = facts(message, now)
            if not all(filter_holds(f, known) for f in filters):
                continue
        matched.append(message)
    matched.sort(key=lambda m: (m.created, m.seq), reverse=order == "desc")
    if limit:
        matched = matched[:limit]
    job_id = str(uuid.uuid4())
    job = AnalyticsJob(job_id, now, now + sim.config.analytics_job_delay, matched, query=query)
    with sim.lock:
        sim.jobs[job_id] = job
    sim.stats.analytics_job()
    return Response(202, {"jobId": job_id})


def find_job(sim: Simulator, request: Request) -> Any:
    job = sim.jobs.get(request.params["jobId"])
    if job is None:
        raise HttpError(error(404, "not.found", f"Job {request.params['jobId']} was not found."))
    return job


def job_status(sim: Simulator, request: Request) -> Response:
    job = find_job(sim, request)
    state = job.state_at(time.time())
    body = {
        "state": state,
        "submissionDate": iso(job.submitted),
        "expirationDate": iso(job.submitted + JOB_TTL),
    }
    if state == "FULFILLED":
        body["completionDate"] = iso(job.ready_at)
    return Response(200, body)


def delete_job(sim: Simulator, request: Request) -> Response:
    job = find_job(sim, request)
    job.expire("CANCELLED")
    return Response(202, None)


def encode_cursor(job_id: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{job_id}:{offset}".encode()).decode().rstrip("=")


def decode_cursor(job_id: str, cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        owner, _, offset = text.rpartition(":")
        if owner != job_id:
            raise ValueError
        return int(offset)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise HttpError(bad_request("cursor is not a cursor of this job.")) from exc


def job_results(sim: Simulator, request: Request) -> Response:
    job = find_job(sim, request)
    state = job.state_at(time.time())
    if state != "FULFILLED":
        return bad_request(f"The job is {state}; results are available once it is FULFILLED.")
    size_text = request.arg("pageSize")
    maximum = sim.config.analytics_page_max
    try:
        page_size = min(int(size_text), maximum) if size_text else maximum
    except ValueError:
        return bad_request("pageSize must be an integer.")
    if page_size < 1:
        return bad_request("pageSize must be at least 1.")
    cursor = request.arg("cursor")
    offset = decode_cursor(job.id, cursor) if cursor else 0
    page = job.conversations[offset : offset + page_size]
    body: dict[str, Any] = {
        "conversations": [analytics_conversation(message, job.submitted) for message in page],
        "dataAvailabilityDate": iso(job.submitted),
    }
    if offset + page_size < len(job.conversations):
        body["cursor"] = encode_cursor(job.id, offset + page_size)
    return Response(200, body)


def derived_ids(seed: str, n: int) -> list[str]:
    """``n`` stable UUID-shaped ids for a conversation's participants and sessions (one hash, formatted by hand:
    uuid.UUID is slow when a page holds a thousand conversations)."""
    h = hashlib.md5(seed.encode(), usedforsecurity=False).hexdigest()
    tail = f"{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
    return [f"{i:x}{h[1:8]}-{tail}" for i in range(n)]


def analytics_conversation(message: SimMessage, at: float) -> dict[str, Any]:
    """One conversation (each agentless send opens its own) as AnalyticsConversation."""
    status = message.status_at(at)
    final = message.is_final_at(at)
    started = iso(message.created)
    media = {"mediaType": "message", "messageType": "sms"} if message.channel == "sms" else {"mediaType": "email"}
    addresses = {"direction": "outbound", "addressFrom": message.from_, "addressTo": message.to}
    segment: dict[str, Any] = {"segmentStart": started, "segmentType": "interact"}
    ended = iso(message.final_at or message.sent_at) if final else ""
    if final:
        segment["segmentEnd"] = ended
    agent_participant, agent_session, customer_participant, customer_session = derived_ids(message.id, 4)
    customer: dict[str, Any] = {
        "sessionId": customer_session,
        **media,
        **addresses,
        "remote": message.to,
        "deliveryStatus": ANALYTICS_STATUS[status],
        "deliveryStatusChangeDate": ended or iso(message.changed_at(at)),
        "segments": [segment],
    }
    if status in ("failed", "expired") and message.channel == "email":
        # An email matter only: for a failed SMS analytics says DeliveryFailed and no more (its reason is in the
        # message's own normalizedReceipts, from the details or the bulk lookup).
        customer["extendedDeliveryStatus"] = message.reason
    conversation: dict[str, Any] = {
        "conversationId": message.conversation_id,
        "conversationStart": started,
        "originatingDirection": "outbound",
        "participants": [
            {
                "participantId": agent_participant,
                "participantName": "Agentless",
                "purpose": "agent",
                "sessions": [{"sessionId": agent_session, **media, **addresses, "segments": [segment]}],
            },
            {"participantId": customer_participant, "purpose": "customer", "sessions": [customer]},
        ],
    }
    if final:
        conversation["conversationEnd"] = ended
    return conversation


# --- receipts pushed to the app --------------------------------------------------------------------------


def receipt_push(message: SimMessage, event: str, config: SimConfig) -> tuple[str, bytes, dict[str, str], str]:
    payload = receipt(message, event)
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    secret = config.secrets.get(PROVIDER)
    if secret:
        # As Genesys documents it (developer.genesys.cloud, open messaging, "Validate webhook notifications"):
        # the HMAC-SHA256 of the body, base64.
        digest = base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()
        headers["X-Hub-Signature-256"] = f"sha256={digest}"
    elif config.basic_auth:
        headers["Authorization"] = "Basic " + base64.b64encode(config.basic_auth.encode()).decode()
    reasons = "/".join(r["code"] for r in payload.get("reasons", []))
    summary = payload["status"] + (f" {reasons}" if reasons else "")
    return config.webhook_url(PROVIDER), body, headers, summary


def conversation_details(sim: Simulator, request: Request) -> Response:
    """``GET /api/v2/analytics/conversations/{conversationId}/details``: one conversation as the jobs describe it
    (for a conversation several SMS joined, its latest message: simulator). Email status is read here."""
    conversation = request.params["conversationId"]
    with sim.lock:
        found = list(sim.by_conversation.get(conversation, ()))
    if not found:
        return error(404, "not.found", f"Conversation {conversation} was not found.")
    return Response(200, analytics_conversation(found[-1], time.time()))


def routes() -> list[Route]:
    base = "/api/v2"
    jobs = f"{base}/analytics/conversations/details/jobs"
    return [
        Route("POST", "/oauth/token", "oauth", token),
        Route("POST", f"{base}/conversations/messages/agentless", PROVIDER, authed(send_sms)),
        Route("POST", f"{base}/conversations/emails/agentless", PROVIDER, authed(send_email)),
        Route("GET", f"{base}/conversations/messages/{{messageId}}/details", PROVIDER, authed(details)),
        Route(
            "GET",
            f"{base}/conversations/messages/{{conversationId}}/messages/{{messageId}}",
            PROVIDER,
            authed(conversation_message),
        ),
        Route("POST", f"{base}/conversations/messages/{{conversationId}}/messages/bulk", PROVIDER, authed(bulk)),
        Route(
            "GET", f"{base}/analytics/conversations/{{conversationId}}/details", PROVIDER, authed(conversation_details)
        ),
        Route("POST", jobs, PROVIDER, authed(create_job)),
        Route("GET", f"{jobs}/{{jobId}}", PROVIDER, authed(job_status)),
        Route("DELETE", f"{jobs}/{{jobId}}", PROVIDER, authed(delete_job)),
        Route("GET", f"{jobs}/{{jobId}}/results", PROVIDER, authed(job_results)),
    ]
