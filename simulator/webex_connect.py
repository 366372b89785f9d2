"""Webex Connect (formerly imiconnect), as the simulator serves it.

SMS: ``POST /resources/v1/messaging`` (Send Message v1; the real host is ``api.<region>.webexconnect.io`` or
``api.imiconnect.io``) with header ``key: <service key>`` (any non-empty key unless ``webex_service_keys`` is set)
and a JSON body::

    {"deliverychannel": "sms",
     "channels": {"sms": {"text": "...", "senderid": "...", "type": "1" | "4"}},   (type: 1 text, 4 unicode;
                  text outside the GSM 03.38 alphabet with type 1, or none, is refused 400 7004: simulator)
     "destination": [{"msisdn": ["15551234567"], "correlationid": "..."}],
     "correlationid": "...", "callbackData": "...", "notifyurl": "https://...", "expiry": "...", "priority": "1"}

v1 has no email channel (its ``deliverychannel`` is sms, voice, push, rt, messenger and the like: "Send Message v1",
developers.webexconnect.io): ``deliverychannel: "email"`` is refused 400 7004. Email is Send Message API v2 (below).
At most 1000 destination entries. Each destination entry gets one ``transid``, shared by all its addresses.
Answer 200 (simulator)::

    {"response": [{"code": "1001", "transid": "<uuid>", "description": "Queued", "correlationid": "..."}, ...]}

one entry per destination, in order. Errors use the Messaging API's codes, ``{"response": {"code": ...,
"description": ...}}``: 7000 Invalid JSON (400), 7001 Authentication failed (401), 7002 Service Key Missing (401),
7003 a mandatory parameter is missing (400), 7004 Invalid parameters (400), 7009 more than 1000 destinations (400),
7020 You have reached maximum transaction limit (with ``Retry-After``; HTTP 429 unless ``webex_throttle_status``
says 200, 400 or 503: Webex documents the code, not a status) over the send limits
(``send_limits["webex_connect"]`` per call, ``sender_limit_per_second`` by ``senderid`` or ``from``; see
simulator/limits.py for what Webex Connect documents about its throughput), checked after the request's checks,
and for an injected 429 (``rate_429``).
Email (and SMS): ``POST /v2/messages`` (Send Message API v2, "Email API", developers.webexconnect.io), header ``key``::

    {"channel": "email", "from": "news@acme.example",
     "to": [{"email": ["a@b.c"], "correlationId": "..."}],
     "options": {"fromName": "Acme News"},
     "content": {"type": "text", "subject": "...", "text": "..."}        (type html: "html", "text" optional),
     "callbackData": "...", "notifyUrl": "https://...", "requestedReceipts": ["submitted", "delivered", ...]}

(SMS: ``"channel": "sms"``, ``to[].msisdn``, ``content {"type": "text" | "unicode", "text"}``.) Mandatory as the
documentation marks them: ``channel`` (sms or email here), ``from`` (an email address for email), ``to`` (1 to 1000
entries, each with its list of addresses), ``content.type``, ``content.subject`` (email), ``content.text`` (and
``content.html`` when the type is html). Answer 201 ``{"requestTimestamp", "messageId", "correlationId", "status":
"queued"}``: one ``messageId`` for the request, which every receipt of it carries as ``transid`` (several recipients
are told apart by ``destination``). Refusals are v2's ``{"code", "message"}``: 7000 Invalid JSON, 7003 a mandatory
parameter missing, 7004 an invalid one (400), 7020 over the send limits as in v1; no key or a wrong one is 401 with
no body, as documented.
``GET /resources/v1/messaging/status/{transid}`` answers the transaction status list (status queued, sent,
delivered, failed or expired).

Receipts: ``deliveryInfoNotification`` JSON POSTed to ``notifyurl`` (v1) or ``notifyUrl`` (v2) when the send gave one,
else to
``/webhooks/webex-connect/``, signed ``X-Hub-Signature: sha256=<hex HMAC-SHA256 of the body>`` with the Webex
Connect webhook secret: 7501 Submitted when sent, then 7500 Delivered or a failure: SMS 7102 (invalid address),
7101 (invalid sender id), 7107 (length exceeded), 7208 (expired); email 7520 Bounce with one subtype in
``Description`` (``Permanent_General``, ``Permanent_NoEmail``; an expired email is ``Transient_MailboxFull``, a soft
bounce), 7523, 7524, 7240, 7241, 7522. SMS receipts say ``deliveryChannel: "SMS"``, ``destinationType: "msisdn"``.

Replies (MO), played with ``POST /_sim/inbound``: pushed to ``/webhooks/webex-connect/`` like the receipts (same
signature, retries and push log): ``{"channel": "SMS", "event": "MO", "from": "<contact>", "to": "<sender id>",
"message": "<text>", "tid": "<uuid>", "ts": "..."}``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from typing import TYPE_CHECKING, Any

from receipts.gsm import is_gsm7
from simulator.http import HttpError, Request, Response, Route
from simulator.model import WEBEX_BOUNCE_SMTP, WEBEX_TEXT, SimMessage, iso_offset

if TYPE_CHECKING:
    from simulator.config import SimConfig
    from simulator.core import Simulator

PROVIDER = "webex_connect"
MSISDN = re.compile(r"^\+?[1-9]\d{6,14}$")
# Labels split on their dots one way only, so a long run of dots is read once (the former
# `[^@\s]+\.[^@\s]+$` backtracked over it: quadratic).
EMAIL = re.compile(r"^[^@\s]+@[^@\s.]+(?:\.[^@\s.]+)+$")
MAX_DESTINATIONS = 1000
# Send Message v1 channels.sms.type: "1 - Text, 2 - Flash, 3 - Binary, 4 - Unicode" (docs.imiconnect.com, SMS).
SMS_TYPES = frozenset({"1", "2", "3", "4"})


def fail(status: int, code: str, description: str) -> Response:
    return Response(status, {"response": {"code": code, "description": description}})


def over_limit(retry_after: int, status: int = 429) -> Response:
    """7020, the code Webex Connect documents for a call over the rate limit ("Rate Limits for Messaging APIs, Event
    API, and Inbound Webhook", developers.webexconnect.io), with ``status`` (``webex_throttle_status``): the page
    names no HTTP status. ``Retry-After`` is the simulator's."""
    response = fail(status, "7020", "You have reached maximum transaction limit")
    response.headers["Retry-After"] = str(retry_after)
    return response


def invalid(description: str) -> HttpError:
    return HttpError(fail(400, "7004", description))


def send(sim: Simulator, request: Request) -> Response:
    key = request.header("key")
    if not key:
        return fail(401, "7002", "Service Key Missing")
    request.principal = f"key:{key[:6]}"
    keys = sim.config.webex_service_keys
    if keys and not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys):
        return fail(401, "7001", "Authentication failed")
    body = request.json(lambda text: fail(400, "7000", "Invalid JSON"))
    if not isinstance(body, dict):
        return fail(400, "7000", "Invalid JSON")
    channel = str(body.get("deliverychannel", "")).lower()
    if not channel:
        return fail(400, "7003", "param 'deliverychannel' is mandatory")
    if channel == "email":
        # v1 has no email channel: email is Send Message API v2 (POST /v2/messages).
        return fail(400, "7004", "Invalid parameters - deliverychannel 'email' (email is sent with /v2/messages)")
    if channel != "sms":
        return fail(400, "7004", f"the simulator sends deliverychannel sms, not {channel!r}")
    channels = body.get("channels")
    if not isinstance(channels, dict) or not isinstance(channels.get(channel), dict):
        return fail(400, "7003", f"param 'channels.{channel}' is mandatory")
    content = channels[channel]
    text = content.get("text") or content.get("html") or content.get("body")
    if not isinstance(text, str) or not text:
        return fail(400, "7003", f"param 'text' missing for channel {channel}")
    kind = str(content.get("type", "1"))
    if kind not in SMS_TYPES:
        raise invalid("channels.sms.type must be 1 (text), 2 (flash), 3 (binary) or 4 (unicode)")
    if kind != "4" and not is_gsm7(text):
        # What a real send of type 1 does with such text is mangle it on the handset; the simulator refuses it, so
        # that a sender that forgets type 4 fails a test rather than a customer (simulator).
        raise invalid("text outside the GSM 03.38 alphabet needs channels.sms.type 4 (unicode)")
    destinations = body.get("destination")
    if not isinstance(destinations, list) or not destinations:
        return fail(400, "7003", "any one of [customerid,msisdn,email] is mandatory")
    if len(destinations) > MAX_DESTINATIONS:
        return fail(400, "7009", "Max number of destinations exceeded (1000)")
    field_name, pattern = "msisdn", MSISDN
    planned = []
    for i, entry in enumerate(destinations):
        addresses = entry.get(field_name) if isinstance(entry, dict) else None
        if isinstance(addresses, str):
            addresses = [addresses]
        if not isinstance(addresses, list) or not addresses:
            return fail(400, "7003", f"destination[{i}]: any one of [customerid,msisdn,email] is mandatory")
        for address in addresses:
            if not isinstance(address, str) or not pattern.match(address.strip()):
                raise invalid(f"destination[{i}]: {field_name} {address!r} is not valid")
        correlation = entry.get("correlationid") or body.get("correlationid") or ""
        planned.append(([a.strip() for a in addresses], str(correlation)))

    notify = body.get("notifyurl")
    if notify is not None and (not isinstance(notify, str) or not notify.startswith(("http://", "https://"))):
        raise invalid("notifyurl must be an http(s) URL")
    sender = str(content.get("senderid") or content.get("from") or "")
    retry_after = sim.admit_send(PROVIDER, sender)
    if retry_after:
        return over_limit(retry_after, sim.config.webex_throttle_status)
    common: dict[str, Any] = {"callbackData": str(body.get("callbackData") or ""), "smsType": kind}
    if notify:
        common["notifyurl"] = notify
    answers = []
    for addresses, correlation in planned:
        transid = ""
        for address in addresses:
            message = sim.create_message(
                PROVIDER,
                channel,
                address,
                sender,
                text,
                message_id=transid,
                extra={**common, "correlationid": correlation},
            )
            transid = message.id  # every address of one destination entry shares the first one's transid
            sim.accepted(message)
        answers.append({"code": "1001", "transid": transid, "description": "Queued", "correlationid": correlation})
    return Response(200, {"response": answers})


# --- Send Message API v2 ---------------------------------------------------------------------------------

V2_ADDRESS = {"sms": ("msisdn", MSISDN), "email": ("email", EMAIL)}
V2_CONTENT_TYPES = {"sms": ("text", "unicode"), "email": ("text", "html")}


def fail_v2(status: int, code: str, message: str) -> Response:
    """v2's error body: ``{"code": "7004", "message": "Invalid parameter - sendAt"}`` (Send Message API v2)."""
    return Response(status, {"code": code, "message": message})


def missing(name: str) -> HttpError:
    return HttpError(fail_v2(400, "7003", f"Mandatory parameter missing - {name}"))


def bad(name: str) -> HttpError:
    return HttpError(fail_v2(400, "7004", f"Invalid parameter - {name}"))


def text_field(obj: dict[str, Any], name: str, where: str, required: bool = True) -> str:
    value = obj.get(name)
    if value is None or value == "":
        if required:
            raise missing(f"{where}{name}")
        return ""
    if not isinstance(value, str) or not value.strip():
        raise bad(f"{where}{name}")
    return value


def v2_recipients(channel: str, to: Any) -> list[tuple[list[str], str]]:
    field_name, pattern = V2_ADDRESS[channel]
    if to is None or to == []:
        raise missing("to")
    if not isinstance(to, list):
        raise bad("to")
    if len(to) > MAX_DESTINATIONS:
        raise HttpError(fail_v2(400, "7009", "Max number of destinations exceeded (1000)"))
    planned = []
    for i, entry in enumerate(to):
        addresses = entry.get(field_name) if isinstance(entry, dict) else None
        if not isinstance(addresses, list) or not addresses:
            raise missing(f"to[{i}].{field_name}")
        if not all(isinstance(a, str) and pattern.match(a) for a in addresses):
            raise bad(f"to[{i}].{field_name}")
        correlation = entry.get("correlationId", "")
        if not isinstance(correlation, str):
            raise bad(f"to[{i}].correlationId")
        planned.append((list(addresses), correlation))
    return planned


def v2_content(channel: str, content: Any) -> tuple[str, dict[str, str]]:
    """The text the simulator keeps, and the extra fields (subject) its receipts may want."""
    if content is None:
        raise missing("content")  # a template instead of content is not served by the simulator
    if not isinstance(content, dict):
        raise bad("content")
    kind = text_field(content, "type", "content.")
    if kind not in V2_CONTENT_TYPES[channel]:
        raise bad("content.type")
    if channel == "sms":
        text = text_field(content, "text", "content.")
        if len(text) > 4000:
            raise bad("content.text")
        if kind == "text" and not is_gsm7(text):
            raise bad("content.type")  # 'unicode' for text outside GSM 03.38, as v1's type 4 (simulator)
        return text, {}
    subject = text_field(content, "subject", "content.")
    text = text_field(content, "text", "content.", required=kind == "text")
    html = text_field(content, "html", "content.", required=kind == "html")
    return text or html, {"subject": subject}


def send_v2(sim: Simulator, request: Request) -> Response:
    key = request.header("key")
    keys = sim.config.webex_service_keys
    if not key or (keys and not any(hmac.compare_digest(key.encode(), k.encode()) for k in keys)):
        return Response(401, None)  # "401 Unauthorised: No response body"
    request.principal = f"key:{key[:6]}"
    body = request.json(lambda text: fail_v2(400, "7000", "Invalid JSON"))
    if not isinstance(body, dict):
        return fail_v2(400, "7000", "Invalid JSON")
    channel = text_field(body, "channel", "")
    if channel not in V2_ADDRESS:
        raise bad("channel")
    sender = text_field(body, "from", "")
    if channel == "email" and not EMAIL.match(sender):
        raise bad("from")
    planned = v2_recipients(channel, body.get("to"))
    text, extra = v2_content(channel, body.get("content"))
    options = body.get("options", {})
    if not isinstance(options, dict) or not isinstance(options.get("fromName", ""), str):
        raise bad("options")
    receipts = body.get("requestedReceipts", [])
    if not isinstance(receipts, list) or not all(isinstance(r, str) for r in receipts):
        raise bad("requestedReceipts")
    notify = body.get("notifyUrl")
    if notify is not None and (
        not isinstance(notify, str) or notify != notify.strip() or not notify.startswith(("http://", "https://"))
    ):
        raise bad("notifyUrl")  # "with proper spacing": a space before or after makes it invalid
    callback = body.get("callbackData", "")
    if not isinstance(callback, str) or len(callback) > 2000:
        raise bad("callbackData")
    retry_after = sim.admit_send(PROVIDER, sender)
    if retry_after:
        response = fail_v2(sim.config.webex_throttle_status, "7020", "You have reached maximum transaction limit")
        response.headers["Retry-After"] = str(retry_after)
        return response
    common: dict[str, Any] = {**extra, "callbackData": callback, "api": "v2"}
    if notify:
        common["notifyurl"] = notify
    if options.get("fromName"):
        common["fromName"] = options["fromName"]
    message_id = ""
    for addresses, correlation in planned:
        for address in addresses:
            message = sim.create_message(
                PROVIDER,
                channel,
                address,
                sender,
                text,
                message_id=message_id,
                extra={**common, "correlationid": correlation},
            )
            message_id = message.id  # one messageId for the request: receipts tell recipients apart by destination
            sim.accepted(message)
    answer = {
        "requestTimestamp": iso_offset(time.time()),
        "messageId": message_id,
        "correlationId": planned[0][1],
        "status": "queued",
    }
    return Response(201, answer)


def status(sim: Simulator, request: Request) -> Response:
    found = sim.find(PROVIDER, request.params["transid"])
    if not found:
        return fail(404, "7004", "transaction not found")
    now = time.time()
    rows = []
    for m in found:
        state = m.status_at(now)
        code = m.reason.partition(":")[0] if state in ("failed", "expired") else None
        rows.append(
            {
                "transactionid": m.id,
                "api_version": "v1",
                "type": "outbound-api",
                "from": m.from_,
                "to": m.to,
                "channel": m.channel.upper() if m.channel == "sms" else m.channel,
                "status": state,
                "date_created": iso_offset(m.created),
                "last_updated": iso_offset(m.changed_at(now)),
                "error_code": code,
                "error_message": WEBEX_TEXT.get(code, ("", ""))[1] if code else None,
            }
        )
    return Response(200, rows)


def delivery_info(message: SimMessage, event: str) -> dict[str, Any]:
    if event == "sent":
        code, subtype, at = "7501", "", message.sent_at
    elif message.outcome == "delivered":
        code, subtype, at = "7500", "", message.final_at or message.sent_at
    else:
        code, _, subtype = message.reason.partition(":")
        at = message.final_at or message.sent_at
    delivery_status, description = WEBEX_TEXT.get(code, ("Failed", "Failed"))
    additional = ""
    if code == "7520":
        description = subtype or "Permanent_General"
        additional = WEBEX_BOUNCE_SMTP.get(description, "")
    description = description.format(to=message.to)
    email = message.channel == "email"
    info = {
        "deliveryChannel": "email" if email else "SMS",
        "Description": description,
        "destinationType": "email" if email else "msisdn",
        "timeStamp": iso_offset(at),
        "code": code,
        "deliveryStatus": delivery_status,
        "destination": message.to,
        "additionalInfo": additional,
    }
    return {
        "deliveryInfoNotification": {
            "deliveryInfo": info,
            "correlationid": message.extra.get("correlationid", ""),
            "callbackData": message.extra.get("callbackData", ""),
            "transid": message.id,
            "subtid": "",
        }
    }


def inbound_message(from_: str, to: str, text: str, at: float) -> SimMessage:
    """A reply from a contact (MO), as the pusher carries it: never stored among the sent messages."""
    return SimMessage(
        seq=-1,
        provider=PROVIDER,
        channel="sms",
        id=str(uuid.uuid4()),
        conversation_id="",
        to=to,
        from_=from_,
        body=text,
        created=at,
        sent_at=at,
        final_at=None,
        outcome="silent",
        reason="",
        push=True,
    )


def mo_event(message: SimMessage) -> dict[str, Any]:
    """The outbound webhook's incoming-message event for an SMS: ``event``, ``channel``, ``from`` and the text in
    ``message`` as in Webex Connect's incoming message notifications (docs.imiconnect.com, "Incoming Message
    Notifications"; its older SMS form names the addresses ``oa``/``da``), ``to`` the sender id written to."""
    return {
        "channel": "SMS",
        "event": "MO",
        "from": message.from_,
        "to": message.to,
        "message": message.body,
        "tid": message.id,
        "ts": iso_offset(message.created),
    }


def receipt_push(message: SimMessage, event: str, config: SimConfig) -> tuple[str, bytes, dict[str, str], str]:
    payload = mo_event(message) if event == "mo" else delivery_info(message, event)
    body = json.dumps(payload, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json"}
    secret = config.secrets.get(PROVIDER)
    if secret:
        # As Webex Connect documents it: the hex HMAC, no prefix (developers.webexconnect.io, outbound webhooks).
        headers["X-Hub-Signature"] = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    elif config.basic_auth:
        headers["Authorization"] = "Basic " + base64.b64encode(config.basic_auth.encode()).decode()
    url = message.extra.get("notifyurl") or config.webhook_url(PROVIDER)
    if event == "mo":
        return url, body, headers, f"MO {message.body[:20]!r}"
    info = payload["deliveryInfoNotification"]["deliveryInfo"]
    return url, body, headers, f"{info['code']} {info['deliveryStatus']} {info['Description']}".strip()


def routes() -> list[Route]:
    return [
        Route("POST", "/resources/v1/messaging", PROVIDER, send),
        Route("POST", "/v2/messages", PROVIDER, send_v2),
        Route("GET", "/resources/v1/messaging/status/{transid}", PROVIDER, status),
    ]
