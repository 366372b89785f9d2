"""Webex Connect: ``deliveryInfoNotification`` for SMS and email, and inbound ``MO``, ``Unsubscribe``,
``Subscribe`` events. Optional ``x-hub-signature`` (``sha256=``/``sha512=``) and/or Basic auth. Sending: SMS with
Send Message v1, email with Send Message API v2; the id each answers is the ``transid`` receipts carry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from django.conf import settings
from django.http import HttpRequest

from receipts.gsm import is_gsm7
from receipts.models import Message
from receipts.normalized import MalformedReceipt, NormalizedReceipt, Outcome, parse_time
from receipts.providers.base import (
    TAKEN,
    THROTTLED,
    Capabilities,
    Provider,
    SendError,
    content_of,
    hmac_signature_ok,
    http_client,
    identifier,
    load_json,
    raise_for,
    text,
    throttle_error,
    transport_error,
)
from receipts.status import Engagement, Status
from receipts.status import FailureCategory as C
from receipts.status import Provider as ProviderName

CODES: dict[str, Outcome] = {
    "7501": Outcome(Status.SENT),
    "7500": Outcome(Status.DELIVERED),
    "7502": Outcome(engagement=Engagement.READ),
    "7528": Outcome(engagement=Engagement.CLICKED),
    "7521": Outcome(engagement=Engagement.COMPLAINED),
    "7522": Outcome(Status.REJECTED, C.SENDER_CONFIG),
    "7101": Outcome(Status.REJECTED, C.SENDER_CONFIG),
    "7102": Outcome(Status.FAILED, C.INVALID_DESTINATION),
    "7523": Outcome(Status.FAILED, C.INVALID_DESTINATION),
    "7524": Outcome(Status.FAILED, C.INVALID_DESTINATION),
    "7107": Outcome(Status.REJECTED, C.CONTENT_REJECTED),
    "7208": Outcome(Status.EXPIRED, C.TEMPORARY_NETWORK, retryable=True),
    "7240": Outcome(Status.REJECTED, C.SUPPRESSED),
    "7241": Outcome(Status.REJECTED, C.OPTED_OUT),
}
BOUNCE = "7520"
HARD_BOUNCE = Outcome(Status.BOUNCED, C.INVALID_DESTINATION)
SOFT_BOUNCE = Outcome(Status.DEFERRED, C.TEMPORARY_NETWORK, retryable=True, soft_bounce=True)
UNKNOWN_FAILURE = Outcome(Status.FAILED, C.UNKNOWN, unmapped=True)
UNKNOWN = Outcome(unmapped=True)

# Inbound SMS keywords (trimmed, any case).
OPT_OUT_WORDS = frozenset({"STOP", "UNSUBSCRIBE", "END", "QUIT", "STOPALL", "REVOKE", "OPTOUT", "CANCEL"})
OPT_IN_WORDS = frozenset({"START", "UNSTOP"})
INBOUND_EVENTS = {"Unsubscribe": Engagement.UNSUBSCRIBED, "Subscribe": Engagement.SUBSCRIBED}


def bounce_outcome(description: str) -> tuple[Outcome, str]:
    # The documentation's sample lists every subtype joined by '/'; a real bounce carries one.
    subtype = description.split("/")[0].strip()
    if subtype.startswith("Transient_"):
        return SOFT_BOUNCE, subtype
    if subtype.startswith("Permanent_"):
        return HARD_BOUNCE, subtype
    return UNKNOWN_FAILURE, subtype


def code_outcome(code: str, delivery_status: str, description: str) -> tuple[Outcome, dict[str, Any]]:
    if code == BOUNCE:
        outcome, subtype = bounce_outcome(description)
        return outcome, {"bounce_type": subtype}
    coded = CODES.get(code)
    if coded is not None:
        return coded, {}
    if delivery_status.lower() == "failed":
        return UNKNOWN_FAILURE, {}
    return UNKNOWN, {}


def click_details(description: str, additional: str) -> dict[str, Any]:
    url, _, ip = description.partition("|")
    return {"url": url.strip(), "ip": ip.strip(), "user_agent": additional.strip()}


def parse_delivery(notification: Any) -> NormalizedReceipt:
    if not isinstance(notification, dict):
        raise MalformedReceipt("'deliveryInfoNotification' must be an object")
    info = notification.get("deliveryInfo")
    if not isinstance(info, dict):
        raise MalformedReceipt("deliveryInfoNotification has no 'deliveryInfo' object")
    transid = identifier(notification, "transid", "deliveryInfoNotification")
    code = identifier(info, "code", "deliveryInfo")
    description = text(info.get("Description"))
    delivery_status = text(info.get("deliveryStatus"))
    outcome, details = code_outcome(code, delivery_status, description)
    if outcome.engagement == Engagement.CLICKED:
        details = click_details(description, text(info.get("additionalInfo")))
    elif info.get("additionalInfo"):
        details = {**details, "additional_info": text(info.get("additionalInfo"))}
    channel = text(info.get("deliveryChannel")).lower()
    return NormalizedReceipt(
        provider=ProviderName.WEBEX_CONNECT,
        provider_code=code,
        outcome=outcome,
        provider_message_id=transid,
        to=text(info.get("destination")),
        channel="email" if channel == "email" else "sms",
        occurred_at=parse_time(info.get("timeStamp")),
        description=f"{delivery_status}: {description}" if description else delivery_status,
        details=details,
        raw=notification,
    )


def parse_inbound(data: dict[str, Any]) -> NormalizedReceipt:
    event = text(data.get("event"))
    sender = data.get("from")
    if isinstance(sender, list):
        sender = sender[0] if sender else ""
    address = text(sender).strip("[] ")
    if not address:
        raise MalformedReceipt(f"{event} event has no 'from'")
    channel = "email" if text(data.get("channel")).lower() == "email" else "sms"
    engagement = INBOUND_EVENTS.get(event)
    message_text = text(data.get("textMessage") or data.get("message")).strip()
    if engagement is None:  # MO: a reply, or an opt-out/opt-in keyword
        word = message_text.upper()
        if channel == "sms" and word in OPT_OUT_WORDS:
            engagement = Engagement.UNSUBSCRIBED
        elif channel == "sms" and word in OPT_IN_WORDS:
            engagement = Engagement.SUBSCRIBED
        else:
            engagement = Engagement.REPLIED
    details: dict[str, Any] = {"event_id": text(data.get("tid") or data.get("messageId"))}
    if channel == "sms" and message_text:
        details["text"] = message_text[:160]
    return NormalizedReceipt(
        provider=ProviderName.WEBEX_CONNECT,
        provider_code=event,
        outcome=Outcome(engagement=engagement),
        channel=channel,
        occurred_at=parse_time(data.get("ts")),
        description=event,
        details=details,
        raw={k: v for k, v in data.items() if k not in ("attachments", "htmlMessage", "textMessage")},
        address=address,
    )


@dataclass(frozen=True)
class WebexConnect(Provider):
    name: str = ProviderName.WEBEX_CONNECT

    credential_headers: ClassVar[tuple[str, ...]] = ("X-Hub-Signature",)

    def secrets(self) -> list[str]:
        return settings.WEBHOOK_SECRET_WEBEX_CONNECT

    def verify_signature(self, request: HttpRequest, body: bytes, secrets: list[str]) -> bool | None:
        header = request.headers.get("X-Hub-Signature")
        if not header:
            return None
        return hmac_signature_ok(header, body, secrets, bare=True)

    def parse(self, body: bytes, content_type: str) -> list[NormalizedReceipt]:
        data = load_json(body)
        items = data if isinstance(data, list) else [data]
        receipts = []
        for item in items:
            if not isinstance(item, dict):
                raise MalformedReceipt("expected a JSON object")
            if "deliveryInfoNotification" in item:
                receipts.append(parse_delivery(item["deliveryInfoNotification"]))
            elif item.get("event") in ("MO", *INBOUND_EVENTS):
                receipts.append(parse_inbound(item))
            else:
                raise MalformedReceipt("not a Webex Connect deliveryInfoNotification or MO/Unsubscribe/Subscribe event")
        if not receipts:
            raise MalformedReceipt("body carries no receipt")
        return receipts


# --- sending --------------------------------------------------------------------------------------------

# Messaging API codes that say "too fast": nothing was taken, send again after a wait, no failure. 7020 "You have
# reached maximum transaction limit" is what Webex Connect documents for calls over the tenant's rate limit ("Rate
# Limits for Messaging APIs, Event API, and Inbound Webhook", developers.webexconnect.io); the page names the code in
# the answer's body and no HTTP status, so it is read whatever the status (200, 400, 429). No other throttling code
# was found documented.
THROTTLE_CODES = frozenset({"7020"})
SMS_TEXT, SMS_UNICODE = "1", "4"  # Send Message v1 channels.sms.type


def answer_codes(response: httpx.Response) -> list[str]:
    """The Messaging API codes in an answer: v1's ``{"response": {"code": ...}}`` for the call, ``{"response":
    [{"code": ...}, ...]}`` one per destination; v2's top-level ``{"code", "message"}``. Nothing for a body that is not
    JSON."""
    try:
        body = response.json()
    except ValueError:
        return []
    if not isinstance(body, dict):
        return []
    found = body.get("response")
    entries = found if isinstance(found, list) else [found, body]
    return [str(e["code"]) for e in entries if isinstance(e, dict) and e.get("code") not in (None, "")]


class WebexConnectSender:
    """SMS through Send Message v1 (``/resources/v1/messaging``: its answer's ``transid`` is the id receipts carry);
    email through Send Message API v2 (``/v2/messages``: v1 has no email channel), whose ``messageId`` receipts
    carry as their ``transid``."""

    def send(self, message: Message) -> str:
        content = content_of(message)
        if message.channel == "email":
            return self.send_email(message, content)
        sender = content.get("from") or settings.WEBEX_CONNECT_SENDER_ID
        text = content["text"]
        # channels.sms.type: "1 - Text, 2 - Flash, 3 - Binary, 4 - Unicode" (docs.imiconnect.com, Messaging API,
        # SMS): text outside the GSM 03.38 alphabet must say Unicode, or it goes out mangled as GSM-7.
        sms = {"type": SMS_TEXT if is_gsm7(text) else SMS_UNICODE, "text": text, "senderid": sender}
        body: dict[str, Any] = {
            "deliverychannel": "sms",
            "channels": {"sms": sms},
            "destination": [{"msisdn": [message.to.lstrip("+")]}],
        }
        if message.correlation_id:  # ours, echoed in the answer and the receipts: how to find a send at Webex
            body["correlationid"] = message.correlation_id
        response = self.post("/resources/v1/messaging", body)
        try:
            return str(response.json()["response"][0]["transid"])
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise SendError(f"Webex Connect answered without a transid: {response.text[:200]}") from exc

    def send_email(self, message: Message, content: dict[str, str]) -> str:
        """Send Message API v2 for email ("Email API", developers.webexconnect.io): ``channel``, ``from``,
        ``to[].email``, ``content {type, subject, text}`` are mandatory; the display name is ``options.fromName``."""
        subject = content.get("subject", "")
        if not subject.strip():
            raise SendError("an email needs a subject (Webex Connect's content.subject is mandatory)")
        sender = content.get("from") or settings.WEBEX_CONNECT_EMAIL_FROM
        if not sender:
            raise SendError("no email from address: set WEBEX_CONNECT_EMAIL_FROM")
        recipient: dict[str, Any] = {"email": [message.to]}
        if message.correlation_id:
            recipient["correlationId"] = message.correlation_id
        body: dict[str, Any] = {
            "channel": "email",
            "from": sender,
            "to": [recipient],
            "content": {"type": "text", "subject": subject, "text": content["text"]},
        }
        name = content.get("from_name") or settings.WEBEX_CONNECT_EMAIL_FROM_NAME
        if name:
            body["options"] = {"fromName": name}
        response = self.post("/v2/messages", body)
        try:
            return str(response.json()["messageId"])
        except (ValueError, KeyError, TypeError) as exc:
            raise SendError(f"Webex Connect answered without a messageId: {response.text[:200]}") from exc

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        url = settings.WEBEX_CONNECT_URL.rstrip("/") + path
        try:
            response = http_client().post(url, json=body, headers={"key": settings.WEBEX_CONNECT_SERVICE_KEY})
        except httpx.HTTPError as exc:
            raise transport_error("Webex Connect", exc) from exc
        throttled = THROTTLE_CODES.intersection(answer_codes(response))
        if throttled:
            raise throttle_error("Webex Connect", response, f"{response.status_code} code {min(throttled)}")
        raise_for(response, "Webex Connect")
        return response


CAPABILITIES = Capabilities(
    name=ProviderName.WEBEX_CONNECT,
    webhook="webex-connect",
    channels=frozenset({"sms", "email"}),
    sender_settings={"sms": "WEBEX_CONNECT_SENDER_ID", "email": "WEBEX_CONNECT_EMAIL_FROM"},
    own_breaker=True,
    credentials=("WEBEX_CONNECT_SERVICE_KEY",),
    # v1's 1001 Queued per destination, v2's 201 "queued"; 7020 in any answer is a throttle. Other codes (7000 to
    # 7009: invalid request, authentication) are read by the HTTP status they come with.
    answer_codes={"1001": TAKEN, **dict.fromkeys(THROTTLE_CODES, THROTTLED)},
    sender=WebexConnectSender,
)
