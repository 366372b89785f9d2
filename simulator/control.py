"""Control endpoints under ``/_sim/``: never rate limited, faulted or delayed, so tests can steer the simulator
while it misbehaves for everyone else.

- ``GET /_sim/health`` -> ``{"status": "ok"}``
- ``GET /_sim/config``; ``POST /_sim/config`` with a JSON object of settings to change (e.g. ``{"rate_429": 1.0}``
  to start a 429 storm, ``{"rate_5xx": 0}`` to end an outage) -> the settings now in force
- ``GET /_sim/stats`` -> counters: requests by endpoint and status, faults, tokens issued, sends, messages by
  provider/outcome/status/reason, pushes (attempts, delivered, retries, rejected, gave_up, duplicates), and
  ``send_throughput: {<provider>: {"accepted", "over_limit", "over_sender_limit", "peak", "sender_peak", "limit",
  "sender_limit"}}`` against the send limits (simulator/limits.py; ``peak``: the most accepted in any one second)
- ``POST /_sim/reset`` -> counters, request and push logs back to zero; ``{"messages": true}`` also forgets every
  message, job and outcome deck; ``{"tokens": true}`` also forgets tokens, rate windows and send limit windows
- ``GET /_sim/requests?since=&endpoint=&method=&limit=`` -> the request log ``[{"t", "method", "endpoint",
  "status", "principal"}]``; ``endpoint`` is the route template, e.g.
  ``/api/v2/conversations/messages/{messageId}/details``
- ``GET /_sim/pushes?since=&limit=`` -> the push log ``[{"t", "provider", "id", "event", "summary", "attempt",
  "duplicate", "status"}]``
- ``POST /_sim/messages`` preloads messages without sending them: ``{"provider": "genesys_cloud", "channel":
  "sms", "count": 10000}`` or ``"messages": [{"to": ..., "id": ..., "outcome": ..., "reason": ...}]``; optional
  ``"outcome"`` / ``"reason"`` for all, ``"settled": true`` (default: their schedule lies ``age_seconds``, 600, in
  the past, so they are final already; false: they start now), ``"push": false`` (default), ``"ids": true``
  (default; false answers only the count) -> ``{"count": n, "messages": [{"id", "conversationId", "to", "outcome",
  "reason"}]}``
- ``GET /_sim/messages/{id}`` -> ``{"messages": [...]}`` the simulator's view (schedule, outcome, status now)
- ``POST /_sim/messages/{id}/outcome`` ``{"outcome": "failed", "reason": "InvalidDestination", "after": 0,
  "provider": ..., "to": ...}`` forces how a message ends, ``after`` seconds from now (pushed if it pushes)
- ``POST /_sim/tokens/expire`` -> every issued Genesys Cloud token is expired now (the next call gets 401)
- ``POST /_sim/inbound`` ``{"provider": "webex_connect", "from": "+15551234567", "to": "<sender id>", "text":
  "YES"}`` plays a contact's reply: a Webex Connect ``MO`` event pushed to the app's webhook, now, as receipts are
  pushed (signed, retried, in the push log) -> 202 ``{"queued": {"provider", "event": "MO", "id": <its tid>,
  "url", "body": <the event>}}``; 400 on bad input, 409 while pushing is off for the provider
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from simulator import webex_connect
from simulator.config import PROVIDERS, ConfigError
from simulator.http import HttpError, Request, Response, Route

if TYPE_CHECKING:
    from simulator.core import Simulator

MAX_PRELOAD = 1_000_000


def fail(status: int, text: str) -> Response:
    return Response(status, {"error": text})


def body_object(request: Request) -> dict[str, Any]:
    data = request.json(lambda text: fail(400, text))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HttpError(fail(400, "expected a JSON object"))
    return data


def health(sim: Simulator, request: Request) -> Response:
    return Response(200, {"status": "ok"})


def get_config(sim: Simulator, request: Request) -> Response:
    return Response(200, {**sim.config.public(), "effective_seed": sim.seed})


def set_config(sim: Simulator, request: Request) -> Response:
    try:
        sim.reconfigure(body_object(request))
    except ConfigError as exc:
        return fail(400, str(exc))
    return get_config(sim, request)


def stats(sim: Simulator, request: Request) -> Response:
    data = sim.stats.snapshot()
    data["messages"] = sim.message_counts()
    data["tokens_active"] = sum(1 for t in list(sim.tokens.values()) if t.expires > time.time())
    data["pushes"]["pending"] = sim.pusher.pending() if sim.pusher is not None else 0
    data["analytics_jobs_open"] = len(sim.jobs)
    for provider, counts in data["send_throughput"].items():
        counts["limit"] = sim.config.send_limits.get(provider, 0.0)
        counts["sender_limit"] = sim.config.sender_limit_per_second
    data["seed"] = sim.seed
    return Response(200, data)


def reset(sim: Simulator, request: Request) -> Response:
    body = body_object(request)
    everything = bool(body.get("all"))
    sim.reset(messages=everything or bool(body.get("messages")), tokens=everything or bool(body.get("tokens")))
    return Response(200, {"reset": True})


def number(request: Request, name: str, default: float) -> float:
    text = request.arg(name)
    try:
        return float(text) if text else default
    except ValueError as exc:
        raise HttpError(fail(400, f"{name} must be a number")) from exc


def requests_log(sim: Simulator, request: Request) -> Response:
    rows = sim.stats.recent_requests(
        since=number(request, "since", 0.0),
        endpoint=request.arg("endpoint"),
        method=request.arg("method"),
        limit=int(number(request, "limit", 200_000)),
    )
    return Response(200, {"requests": rows})


def pushes_log(sim: Simulator, request: Request) -> Response:
    rows = sim.stats.recent_pushes(since=number(request, "since", 0.0), limit=int(number(request, "limit", 50_000)))
    return Response(200, {"pushes": rows})


def preload(sim: Simulator, request: Request) -> Response:
    body = body_object(request)
    provider = body.get("provider", "genesys_cloud")
    if provider not in PROVIDERS:
        return fail(400, f"provider must be one of {', '.join(PROVIDERS)}")
    channel = body.get("channel", "sms")
    if channel not in ("sms", "email"):
        return fail(400, "channel must be sms or email")
    items = body.get("messages")
    count = body.get("count")
    if items is None:
        if not isinstance(count, int) or isinstance(count, bool) or not 0 < count <= MAX_PRELOAD:
            return fail(400, f"give 'messages' (a list) or 'count' (1..{MAX_PRELOAD})")
        items = [{} for _ in range(count)]
    elif not isinstance(items, list) or not all(isinstance(i, dict) for i in items) or len(items) > MAX_PRELOAD:
        return fail(400, "'messages' must be a list of objects")
    settled = body.get("settled", True)
    age = float(body.get("age_seconds", 600))
    push = bool(body.get("push", False))
    start = time.time() - age if settled else None
    default_to = "user{n}@example.com" if channel == "email" else "+1555{n:07d}"
    created = []
    try:
        for n, item in enumerate(items):
            message = sim.create_message(
                provider,
                channel,
                str(item.get("to") or default_to.format(n=n % 10_000_000)),
                str(item.get("from") or ("noreply@example.com" if channel == "email" else "+15559876543")),
                str(item.get("body") or "Preloaded message"),
                message_id=str(item.get("id") or ""),
                conversation_id=str(item.get("conversationId") or ""),
                extra={k: str(item[k]) for k in ("app_id", "correlationid", "callbackData") if item.get(k)},
                push=push,
                outcome=str(item.get("outcome") or body.get("outcome") or ""),
                reason=str(item.get("reason") or body.get("reason") or ""),
                start=start,
                preloaded=True,
            )
            created.append(message)
    except ValueError as exc:
        return fail(400, f"message {len(created)}: {exc}")
    answer: dict[str, Any] = {"count": len(created)}
    if body.get("ids", True):
        answer["messages"] = [
            {"id": m.id, "conversationId": m.conversation_id, "to": m.to, "outcome": m.outcome, "reason": m.reason}
            for m in created
        ]
    return Response(201, answer)


def show_message(sim: Simulator, request: Request) -> Response:
    found = sim.find_any(request.params["id"], request.arg("provider"))
    if not found:
        return fail(404, "no such message")
    now = time.time()
    return Response(200, {"messages": [m.describe(now) for m in found]})


def force_outcome(sim: Simulator, request: Request) -> Response:
    body = body_object(request)
    found = sim.find_any(request.params["id"], str(body.get("provider", "")))
    if body.get("to"):
        found = [m for m in found if m.to == body["to"]]
    if not found:
        return fail(404, "no such message")
    try:
        after = float(body.get("after", 0))
        for message in found:
            sim.force_outcome(message, str(body.get("outcome", "")), str(body.get("reason", "")), after)
    except ValueError as exc:
        return fail(400, str(exc))
    now = time.time()
    return Response(200, {"messages": [m.describe(now) for m in found]})


def expire_tokens(sim: Simulator, request: Request) -> Response:
    return Response(200, {"expired": sim.expire_tokens()})


def inbound(sim: Simulator, request: Request) -> Response:
    body = body_object(request)
    if body.get("provider") != webex_connect.PROVIDER:
        return fail(400, "provider must be webex_connect (the only provider whose replies are simulated)")
    from_, to, text = body.get("from"), body.get("to"), body.get("text")
    if not isinstance(from_, str) or not webex_connect.MSISDN.match(from_.strip()):
        return fail(400, "from must be the contact's phone number, e.g. +15551234567")
    if not isinstance(to, str) or not to.strip():
        return fail(400, "to must be the sender id (or number) the contact replies to")
    if not isinstance(text, str) or not text:
        return fail(400, "text must be a non-empty string")
    if sim.pusher is None or not sim.config.pushes(webex_connect.PROVIDER):
        return fail(409, "pushing is off for webex_connect; turn it on with POST /_sim/config")
    message = webex_connect.inbound_message(from_.strip(), to.strip(), text, time.time())
    url, payload, _, _ = webex_connect.receipt_push(message, "mo", sim.config)
    sim.pusher.schedule(message, "mo", message.created)
    queued = {"provider": message.provider, "event": "MO", "id": message.id, "url": url, "body": json.loads(payload)}
    return Response(202, {"queued": queued})


def routes() -> list[Route]:
    return [
        Route("GET", "/_sim/health", "control", health),
        Route("GET", "/_sim/config", "control", get_config),
        Route("POST", "/_sim/config", "control", set_config),
        Route("GET", "/_sim/stats", "control", stats),
        Route("POST", "/_sim/reset", "control", reset),
        Route("GET", "/_sim/requests", "control", requests_log),
        Route("GET", "/_sim/pushes", "control", pushes_log),
        Route("POST", "/_sim/messages", "control", preload),
        Route("GET", "/_sim/messages/{id}", "control", show_message),
        Route("POST", "/_sim/messages/{id}/outcome", "control", force_outcome),
        Route("POST", "/_sim/tokens/expire", "control", expire_tokens),
        Route("POST", "/_sim/inbound", "control", inbound),
    ]
