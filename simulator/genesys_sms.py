"""Genesys SMS Aggregation Service, as the simulator serves it.

Send (MT): ``POST /httpapi/receiver`` (the real URL is ``https://smsc-api.genesyscloud.com/httpapi/receiver``; GET
with a query string works too), form-encoded, with the service's parameter names: ``login``, ``password``,
``phone_number`` and ``sender`` ("numeric and in international format, e.g. 12025550100": digits only, a ``+`` is
refused as the service refuses it), ``message``, ``message_id`` (chosen by the client, unique), ``receipt``
(``TRUE`` asks for delivery receipts; the default, as at the real service, is ``FALSE``: no receipts), ``app_id``
and ``conversation_id`` (echoed in the receipts), ``priority`` (BULK_LOW, BULK, INTERACTIVE_LOW, INTERACTIVE).
``to``, ``from`` and ``body`` are accepted as aliases of ``phone_number``, ``sender`` and ``message``. A JSON object
body with the same names is accepted too.

Answers: 200, ``text/plain``, ``result=<code>``, the codes public clients of the API read (the guide lists none; the
name ``result`` is the simulator's, clients read the code after the ``=``): 0 accepted; 1 a parameter missing or
invalid (a ``+`` or any non-digit in ``phone_number`` or ``sender`` too); 2 authentication failed (a missing or
wrong login/password; any non-empty pair is accepted unless ``sms_logins`` is set); 6 throttled, over the send
limits (``send_limits["genesys_sms"]``, ``sender_limit_per_second`` by ``sender``; see simulator/limits.py), checked
after the parameters, and for an injected 429 (``rate_429``); 7 duplicate message id: the same ``message_id`` sent
again creates nothing (counted as a duplicate send) and counts against no limit. ``mt_results`` (``{"<phone_number>":
<code>}``) answers every MT to that number with that code, after the parameter checks, creating nothing (0 and 7
excepted): how tests drive 1, 2, 6, 98 or 99 for one number. Every refusal says why in ``X-Simulator-Reason``.

Receipts (only when ``receipt=TRUE``): form-encoded POSTs to ``/webhooks/genesys-sms/`` with ``type=receipt``,
``message_id``, ``message_state``, ``result_code`` and, when given in the MT, ``app_id`` and ``conversation_id``,
authenticated with ``X-Webhook-Token: <WEBHOOK_SECRET_GENESYS_SMS>``. First ``message_state=6`` (accepted by the
aggregator), then the final one: 2 delivered; 3 expired; 5 undeliverable or 4 deleted with result_code 1, 3, 6,
98 or 99; 8 rejected with result_code 2 or 8. An MT sent again with a ``message_id`` the simulator has (answered
``result=7``) and ``receipt=TRUE`` gets one more receipt, ``message_state=8&result_code=7``: the copy is a
duplicate, rejected, while the first copy goes its own way (a duplicate is never a message's final outcome).
"""

from __future__ import annotations

import base64
import hmac
import re
import time
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from simulator.http import Request, Response, Route

if TYPE_CHECKING:
    from simulator.config import SimConfig
    from simulator.core import Simulator
    from simulator.model import SimMessage

PROVIDER = "genesys_sms"
PHONE = re.compile(r"^[1-9]\d{6,14}$")
SENDER = re.compile(r"^\d{1,15}$")
PRIORITIES = ("BULK_LOW", "BULK", "INTERACTIVE_LOW", "INTERACTIVE")
ALIASES = {"phone_number": "to", "sender": "from", "message": "body"}
ACCEPTED, INVALID, AUTH_FAILED, THROTTLED, DUPLICATE = 0, 1, 2, 6, 7
DUPLICATE_RECEIPT = "duplicate"  # the push event of the receipt for a copy sent again


def answer(code: int, reason: str = "") -> Response:
    """The MT's answer: a 2xx whatever the outcome, the outcome in the body."""
    headers = {"X-Simulator-Reason": reason} if reason else {}
    return Response(200, f"result={code}", headers, content_type="text/plain")


def send(sim: Simulator, request: Request) -> Response:
    fields = request.fields()
    for name, alias in ALIASES.items():
        if not fields.get(name) and fields.get(alias):
            fields[name] = fields[alias]
    login, password = fields.get("login", ""), fields.get("password", "")
    request.principal = f"login:{login}"
    known = sim.config.sms_logins
    if not (login and password) or (
        known and not hmac.compare_digest(known.get(login, "").encode(), password.encode())
    ):
        return answer(AUTH_FAILED, "authentication failure")
    for name in ("phone_number", "sender", "message", "message_id"):
        if not fields.get(name, "").strip():
            return answer(INVALID, f"missing parameter: {name}")
    phone = fields["phone_number"].strip()
    if not PHONE.match(phone):
        return answer(INVALID, "phone_number must be numeric and in international format, e.g. 12025550100")
    sender = fields["sender"].strip()
    if not SENDER.match(sender):
        return answer(INVALID, "sender must be numeric and in international format, e.g. 12025550100")
    priority = fields.get("priority", "")
    if priority and priority not in PRIORITIES:
        return answer(INVALID, f"priority must be one of {', '.join(PRIORITIES)}")
    receipt = fields.get("receipt", "FALSE").strip().upper()
    if receipt not in ("TRUE", "FALSE"):
        return answer(INVALID, "receipt must be TRUE or FALSE")
    forced = sim.config.mt_results.get(phone)
    if forced is not None and forced not in (ACCEPTED, DUPLICATE):
        return answer(forced, f"mt_results[{phone!r}]")
    message_id = fields["message_id"].strip()
    with sim.lock:
        existing = sim.find(PROVIDER, message_id)
        if not existing:
            retry_after = sim.admit_send(PROVIDER, sender)
            if retry_after:
                return answer(THROTTLED, "throttled, resubmit")
            extra = {k: fields[k] for k in ("app_id", "conversation_id", "priority") if fields.get(k)}
            message = sim.create_message(
                PROVIDER,
                "sms",
                phone,
                sender,
                fields["message"],
                message_id=message_id,
                conversation_id=fields.get("conversation_id", ""),
                extra=extra,
                push=sim.config.pushes(PROVIDER) and receipt == "TRUE",
            )
    if existing:
        sim.stats.duplicate_send()
        if receipt == "TRUE" and sim.pusher is not None and sim.config.pushes(PROVIDER):
            sim.pusher.schedule(existing[0], DUPLICATE_RECEIPT, time.time())
        return answer(DUPLICATE, "duplicate message_id")
    sim.accepted(message)
    return answer(ACCEPTED)


def state_and_result(message: SimMessage, event: str) -> tuple[int, int]:
    if event == "sent":
        return 6, 0
    if event == DUPLICATE_RECEIPT:
        return 8, DUPLICATE  # rejected: the message is a duplicate
    if message.outcome == "delivered":
        return 2, 0
    state, _, result = message.reason.partition(":")
    return int(state), int(result or 0)


def receipt_push(message: SimMessage, event: str, config: SimConfig) -> tuple[str, bytes, dict[str, str], str]:
    state, result = state_and_result(message, event)
    fields = {"type": "receipt", "message_id": message.id, "message_state": state, "result_code": result}
    for name in ("app_id", "conversation_id"):
        if message.extra.get(name):
            fields[name] = message.extra[name]
    body = urlencode(fields).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    secret = config.secrets.get(PROVIDER)
    if secret:
        headers["X-Webhook-Token"] = secret
    elif config.basic_auth:
        headers["Authorization"] = "Basic " + base64.b64encode(config.basic_auth.encode()).decode()
    return config.webhook_url(PROVIDER), body, headers, f"message_state={state} result_code={result}"


def routes() -> list[Route]:
    return [
        Route("POST", "/httpapi/receiver", PROVIDER, send),
        Route("GET", "/httpapi/receiver", PROVIDER, send),
    ]
