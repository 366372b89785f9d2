"""The simulator's state: messages and their schedules, the outcome decks, OAuth tokens and rate windows, analytics
jobs, counters. The HTTP server and the provider modules work on one ``Simulator``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import secrets
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from receipts.logging import mask
from simulator.config import OUTCOMES, SimConfig, deck_counts
from simulator.limits import SendLimiter, rate
from simulator.model import SimMessage, check_reason, pick, reason_table
from simulator.stats import Stats

log = logging.getLogger("simulator")

RATE_WINDOW = 60.0
JOB_TTL = 3600.0  # an analytics job's results are kept this long (the real API says so in expirationDate)
CREDENTIALS = frozenset({"secrets", "basic_auth", "clients", "sms_logins", "webex_service_keys"})


@dataclass
class Token:
    client_id: str
    issued: float
    expires: float


@dataclass
class RateWindow:
    started: float
    count: int = 0


@dataclass
class AnalyticsJob:
    id: str
    submitted: float
    ready_at: float
    conversations: list[SimMessage]  # one message per conversation, in the order asked for
    state: str = "QUEUED"
    query: dict[str, Any] = field(default_factory=dict)

    def state_at(self, now: float) -> str:
        if self.state == "QUEUED" and now >= self.ready_at:
            self.state = "FULFILLED"
        if self.state == "FULFILLED" and now >= self.submitted + JOB_TTL:
            self.expire()
        return self.state

    def expire(self, state: str = "EXPIRED") -> None:
        self.state = state
        self.conversations = []  # a long demo submits a job every few minutes; let their results go


class Simulator:
    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.stats = Stats()
        # The seed drives the outcomes, ids and delays; without one, a random seed (printed in the stats).
        self.seed = config.seed if config.seed is not None else int.from_bytes(os.urandom(4), "big")
        self.fault_rng = random.Random(f"{self.seed}/faults")
        self.tokens: dict[str, Token] = {}
        self.windows: dict[str, RateWindow] = {}
        self.jobs: dict[str, AnalyticsJob] = {}
        self.pusher: Any = None  # set by the server: simulator.push.Pusher
        # Seconds, for the send limits and conversation idleness only; tests may set it to step time by hand.
        self.clock: Callable[[], float] = time.monotonic
        self.limiter = SendLimiter()
        self.clear_messages()

    # --- configuration --------------------------------------------------------------------------------

    def reconfigure(self, changes: dict[str, Any]) -> SimConfig:
        new = self.config.updated(changes)
        with self.lock:
            if new.mix != self.config.mix:
                self.decks.clear()  # a new mix starts fresh decks, so every full deck holds it exactly
            self.config = new
        shown = {k: ("***" if k in CREDENTIALS else v) for k, v in changes.items()}
        log.info("config changed: %s", ", ".join(f"{k}={v!r}" for k, v in shown.items()))
        return new

    # --- messages -------------------------------------------------------------------------------------

    def clear_messages(self) -> None:
        with self.lock:
            self.messages: list[SimMessage] = []
            self.by_id: dict[tuple[str, str], list[SimMessage]] = defaultdict(list)  # (provider, id)
            self.by_conversation: dict[str, list[SimMessage]] = defaultdict(list)  # Genesys Cloud
            # Genesys Cloud SMS: (fromAddress, toAddress) -> (conversation id, clock time of its last message)
            self.last_conversation: dict[tuple[str, str], tuple[str, float]] = {}
            self.seq: Counter[str] = Counter()
            self.decks: dict[str, list[str]] = {}
            self.deck_numbers: Counter[str] = Counter()
            self.jobs.clear()

    def draw(self, provider: str) -> str:
        """The next outcome from this provider's shuffled deck (caller holds the lock)."""
        deck = self.decks.get(provider)
        if not deck:
            counts = deck_counts(self.config.mix)
            deck = [outcome for outcome in OUTCOMES for _ in range(counts[outcome])]
            number = self.deck_numbers[provider]
            self.deck_numbers[provider] += 1
            random.Random(f"{self.seed}/deck/{provider}/{number}").shuffle(deck)
            deck.reverse()  # pop() from the end takes the shuffled order front to back
            self.decks[provider] = deck
        return deck.pop()

    def create_message(
        self,
        provider: str,
        channel: str,
        to: str,
        from_: str = "",
        body: str = "",
        *,
        message_id: str = "",
        conversation_id: str = "",
        extra: dict[str, Any] | None = None,
        push: bool | None = None,
        outcome: str = "",
        reason: str = "",
        start: float | None = None,
        preloaded: bool = False,
    ) -> SimMessage:
        config = self.config
        with self.lock:
            seq = self.seq[provider]
            self.seq[provider] += 1
            forced = outcome or config.address_outcomes.get(to, "")
            if forced:
                outcome, _, forced_reason = forced.partition(":")
                reason = reason or forced_reason
            else:
                outcome = self.draw(provider)
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        # Every message draws the same values in the same order, whatever its outcome, so a seed fixes them all.
        rng = random.Random(f"{self.seed}/{provider}/{seq}")
        generated_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        generated_conversation = uuid.UUID(int=rng.getrandbits(128), version=4)
        sent_factor = 1 + rng.uniform(-config.jitter, config.jitter)
        final_delay = rng.uniform(config.delay_min, config.delay_max)
        duplicate = rng.random() < config.rate_duplicate
        out_of_order = rng.random() < config.rate_out_of_order
        table = reason_table(provider, channel, outcome)
        picked = pick(rng, table) if table else ""
        reason = check_reason(provider, channel, outcome, reason or picked)

        start = time.time() if start is None else start
        sent_at = start + max(0.0, config.sent_delay * sent_factor)
        final_at = None if outcome == "silent" else max(start + final_delay, sent_at + 0.01)
        if not message_id:
            message_id = generated_id.hex if provider == "genesys_cloud" else str(generated_id)
        if provider == "genesys_cloud" and not conversation_id:
            conversation_id = str(generated_conversation)
        message = SimMessage(
            seq=seq,
            provider=provider,
            channel=channel,
            id=message_id,
            conversation_id=conversation_id,
            to=to,
            from_=from_,
            body=body,
            created=start,
            sent_at=sent_at,
            final_at=final_at,
            outcome=outcome,
            reason=reason,
            push=config.pushes(provider) if push is None else push,
            duplicate=duplicate,
            out_of_order=out_of_order,
            extra=extra or {},
            preloaded=preloaded,
        )
        with self.lock:
            self.messages.append(message)
            self.by_id[(provider, message_id)].append(message)
            if provider == "genesys_cloud":
                self.by_conversation[conversation_id].append(message)
        if message.push and self.pusher is not None:
            self.pusher.schedule_message(message)
        return message

    def accepted(self, message: SimMessage) -> None:
        """Log a message taken in through a send API."""
        self.stats.sent(message.provider)
        final = "never" if message.final_at is None else f"in {message.final_at - message.created:.1f}s"
        log.info(
            "%s",
            mask(
                f"send {message.provider} {message.channel} id={message.id} to={message.to} "
                f"-> {message.outcome}{' ' + message.reason if message.reason else ''} (final {final}"
                f"{', no push' if not message.push else ''})"
            ),
        )

    def admit_send(self, provider: str, sender: str) -> int:
        """Count one send request against the send limits: 0 when it may go ahead, else the ``Retry-After`` seconds
        of the 429 that refuses it (see simulator/limits.py)."""
        config = self.config
        with self.lock:
            now = self.clock()
            scope, wait = self.limiter.take(
                provider, sender, rate(config.send_limits.get(provider, 0.0)), rate(config.sender_limit_per_second), now
            )
            # Under the lock, so the stats see the admitted sends in the order of their times.
            if scope:
                self.stats.send_refused(provider, scope)
            else:
                self.stats.send_admitted(provider, sender, now)
        if scope:
            log.debug("%s", mask(f"send {provider} from {sender} refused: over the {scope} limit"))
            return ceil_seconds(wait)
        return 0

    def active_conversation(self, from_: str, to: str) -> str:
        """The conversation of the last Genesys Cloud SMS from ``from_`` to ``to`` if it is still active (its last
        message less than ``conversation_idle_seconds`` ago), else "". Caller holds the lock."""
        found = self.last_conversation.get((from_, to))
        if found is None or self.clock() - found[1] >= self.config.conversation_idle_seconds:
            return ""
        return found[0]

    def note_conversation(self, message: SimMessage) -> None:
        """``message`` is now the last of its conversation between its two addresses. Caller holds the lock."""
        self.last_conversation[(message.from_, message.to)] = (message.conversation_id, self.clock())

    def find(self, provider: str, message_id: str) -> list[SimMessage]:
        return list(self.by_id.get((provider, message_id), ()))

    def find_any(self, message_id: str, provider: str = "") -> list[SimMessage]:
        providers = [provider] if provider else ["genesys_cloud", "genesys_sms", "webex_connect"]
        return [m for p in providers for m in self.find(p, message_id)]

    def force_outcome(self, message: SimMessage, outcome: str, reason: str = "", after: float = 0.0) -> SimMessage:
        """Make ``message`` end as ``outcome`` ``after`` seconds from now (pushed, if it pushes)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        reason = check_reason(message.provider, message.channel, outcome, reason)
        now = time.time()
        with self.lock:
            message.outcome = outcome
            message.reason = reason
            message.generation += 1
            message.final_at = None if outcome == "silent" else max(now + after, message.sent_at + 0.01)
        log.info("%s", mask(f"forced {message.provider} id={message.id} to={message.to} -> {outcome} {reason}"))
        if message.push and message.final_at is not None and self.pusher is not None:
            self.pusher.schedule(message, "final", message.final_at)
        return message

    def message_counts(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        with self.lock:
            messages = list(self.messages)
        by_provider: Counter[str] = Counter()
        by_outcome: Counter[str] = Counter()
        by_status: Counter[str] = Counter()
        by_reason: Counter[str] = Counter()
        preloaded = 0
        for m in messages:
            by_provider[m.provider] += 1
            by_outcome[m.outcome] += 1
            by_status[m.status_at(now)] += 1
            if m.reason:
                by_reason[f"{m.provider}:{m.reason}"] += 1
            preloaded += m.preloaded
        return {
            "total": len(messages),
            "preloaded": preloaded,
            "by_provider": dict(by_provider),
            "by_outcome": {k: by_outcome[k] for k in OUTCOMES},
            "by_status": dict(by_status),
            "by_reason": dict(by_reason),
        }

    # --- Genesys Cloud OAuth and rate limit -----------------------------------------------------------

    def issue_token(self, client_id: str) -> tuple[str, Token]:
        now = time.time()
        token = Token(client_id=client_id, issued=now, expires=now + self.config.token_lifetime)
        value = secrets.token_urlsafe(48)
        with self.lock:
            self.tokens[value] = token
        self.stats.token_issued()
        log.info("token issued to client %s (expires in %ss)", client_id, self.config.token_lifetime)
        return value, token

    def token(self, value: str) -> Token | None:
        token = self.tokens.get(value)
        if token is None or time.time() >= token.expires:
            return None
        return token

    def expire_tokens(self) -> int:
        with self.lock:
            n = sum(1 for t in self.tokens.values() if t.expires > time.time())
            for t in self.tokens.values():
                t.expires = 0.0
        log.info("expired %d token(s)", n)
        return n

    def take_budget(self, key: str) -> tuple[bool, int, float]:
        """Count one request against ``key``'s window: (allowed, count in window, seconds to reset)."""
        limit = self.config.rate_limit_per_minute
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            if window is None or now - window.started >= RATE_WINDOW:
                window = self.windows[key] = RateWindow(now)
            reset = window.started + RATE_WINDOW - now
            if limit and window.count >= limit:
                return False, window.count, reset
            window.count += 1
            return True, window.count, reset

    # --- faults ---------------------------------------------------------------------------------------

    def roll_fault(self) -> str:
        """'', '429' or '5xx', at the configured rates."""
        config = self.config
        if not (config.rate_429 or config.rate_5xx):
            return ""
        with self.lock:
            r = self.fault_rng.random()
        if r < config.rate_5xx:
            return "5xx"
        if r < config.rate_5xx + config.rate_429:
            return "429"
        return ""

    def latency(self) -> float:
        config = self.config
        if not (config.latency_ms or config.latency_jitter_ms):
            return 0.0
        with self.lock:
            jitter = self.fault_rng.uniform(0, config.latency_jitter_ms) if config.latency_jitter_ms else 0.0
        return (config.latency_ms + jitter) / 1000

    def pick_5xx(self) -> int:
        with self.lock:
            return self.fault_rng.choice((500, 502, 503, 503, 504))

    # --- reset ----------------------------------------------------------------------------------------

    def reset(self, messages: bool = False, tokens: bool = False) -> None:
        self.stats.reset()
        if messages:
            if self.pusher is not None:
                self.pusher.clear()
            self.clear_messages()
        if tokens:
            with self.lock:
                self.tokens.clear()
                self.windows.clear()
                self.limiter.clear()
        log.info("reset counters%s%s", " and messages" if messages else "", " and tokens" if tokens else "")


def ceil_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))
