"""The simulator's knobs: one dataclass, set at start (command line or constructor) and changed at runtime through
``POST /_sim/config``. Nothing here imports Django; ``secrets_from_settings`` reads Django settings only when asked.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

OUTCOMES = ("delivered", "failed", "expired", "silent")
PROVIDERS = ("genesys_cloud", "genesys_sms", "webex_connect")
FAULT_SCOPES = ("oauth", "genesys_cloud", "genesys_sms", "webex_connect")
WEBHOOK_PATHS = {
    "genesys_cloud": "/webhooks/genesys-cloud/",
    "genesys_sms": "/webhooks/genesys-sms/",
    "webex_connect": "/webhooks/webex-connect/",
}
# Fixed once the server runs: changing them at runtime would mean nothing or break determinism.
STARTUP_ONLY = frozenset({"host", "port", "seed", "push_concurrency"})


class ConfigError(ValueError):
    """A setting has the wrong type or an impossible value; the message names it."""


def parse_mix(text: str) -> dict[str, float]:
    """``delivered=90,failed=4,expired=2,silent=4`` -> weights. Outcomes left out weigh 0."""
    mix: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or name not in OUTCOMES:
            raise ConfigError(f"mix entry {part!r}: expected <outcome>=<weight>, outcome one of {', '.join(OUTCOMES)}")
        try:
            mix[name] = float(value)
        except ValueError as exc:
            raise ConfigError(f"mix entry {part!r}: weight must be a number") from exc
    return check_mix(mix)


def check_mix(mix: dict[str, Any]) -> dict[str, float]:
    unknown = set(mix) - set(OUTCOMES)
    if unknown:
        raise ConfigError(f"mix has unknown outcome(s) {sorted(unknown)}; choose from {', '.join(OUTCOMES)}")
    weights = {k: float(v) for k, v in mix.items()}
    if any(v < 0 or math.isnan(v) for v in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError("mix weights must be >= 0 and add up to more than 0")
    return {k: weights.get(k, 0.0) for k in OUTCOMES}


def check_send_limits(limits: dict[str, Any]) -> dict[str, float]:
    unknown = set(limits) - set(PROVIDERS)
    if unknown:
        raise ConfigError(f"send_limits has unknown provider(s) {sorted(unknown)}; choose from {', '.join(PROVIDERS)}")
    out = {}
    for provider, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ConfigError(f"send_limits[{provider!r}] must be a number of sends a second >= 0, got {value!r}")
        out[provider] = float(value)
    return out


def deck_counts(mix: dict[str, float]) -> dict[str, int]:
    """How many of each outcome one shuffled deck holds, so that every full deck has the mix exactly.

    Integer weights adding up to at most 1000 give a deck of their sum (90/4/2/4 -> 100 cards); anything else is
    scaled to 1000 cards by largest remainder.
    """
    total = sum(mix.values())
    if all(float(v).is_integer() for v in mix.values()) and total <= 1000:
        return {k: int(v) for k, v in mix.items()}
    exact = {k: v * 1000 / total for k, v in mix.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    short = 1000 - sum(counts.values())
    for k in sorted(exact, key=lambda k: exact[k] - counts[k], reverse=True)[:short]:
        counts[k] += 1
    return counts


def default_mix() -> dict[str, float]:
    return {"delivered": 90.0, "failed": 4.0, "expired": 2.0, "silent": 4.0}


@dataclass
class SimConfig:
    # --- server ---
    host: str = "127.0.0.1"
    port: int = 0  # 0: any free port (tests); the command defaults to 8100
    seed: int | None = None  # same seed, same outcomes, ids and delays, in the same order
    # --- schedule and outcomes ---
    mix: dict[str, float] = field(default_factory=default_mix)
    sent_delay: float = 0.5  # seconds from accepted (queued) to sent
    delay_min: float = 1.0  # seconds from accepted to the final status: uniform in [delay_min, delay_max]
    delay_max: float = 3.0
    jitter: float = 0.2  # the sent delay varies by +/- this fraction
    # Addresses whose messages always get one outcome: {"+15550000001": "failed:InvalidDestination"}.
    address_outcomes: dict[str, str] = field(default_factory=dict)
    # --- faults ---
    rate_429: float = 0.0  # fraction of provider requests answered 429 regardless of the budget
    rate_5xx: float = 0.0  # fraction answered 500/502/503/504
    retry_after: int = 1  # Retry-After (seconds) on an injected 429
    latency_ms: float = 0.0  # added to every provider request
    latency_jitter_ms: float = 0.0  # plus uniform [0, jitter)
    # Where faults and latency apply; "oauth" (login.{region}, a separate service) is left out unless added.
    fault_scopes: list[str] = field(default_factory=lambda: list(PROVIDERS))
    # --- Genesys Cloud ---
    rate_limit_per_minute: int = 300  # per token (or per client, see rate_limit_scope); 0 disables
    rate_limit_scope: str = "token"  # "token" or "client"
    token_lifetime: int = 86400  # expires_in of issued tokens, seconds
    clients: dict[str, str] = field(default_factory=dict)  # client_id -> secret; empty accepts any pair
    analytics_job_delay: float = 0.5  # seconds a job stays QUEUED before FULFILLED
    analytics_page_max: int = 1000
    bulk_max: int = 1000
    bulk_same_conversation_only: bool = False  # True: bulk answers only the ids in the path's conversation
    genesys_sms_max_chars: int = 765
    # An agentless SMS with useExistingActiveConversation joins the conversation of the last message from the same
    # fromAddress to the same toAddress if that was sent less than this many seconds ago (simulator).
    conversation_idle_seconds: float = 3600.0
    # --- send throughput (see simulator/limits.py) ---
    # provider -> send requests a second accepted on its send endpoints; 0 or missing: unlimited.
    send_limits: dict[str, float] = field(default_factory=dict)
    sender_limit_per_second: float = 0.0  # per (provider, sender id / from address), as carriers limit one; 0: off
    # --- SMS Aggregation and Webex Connect send credentials (empty accepts any non-empty value) ---
    sms_logins: dict[str, str] = field(default_factory=dict)  # login -> password
    webex_service_keys: list[str] = field(default_factory=list)
    # --- refusals and throttles in the providers' own shapes (see simulator/genesys_sms.py, webex_connect.py) ---
    # SMS Aggregation phone_number (digits) -> the result code every MT to it is answered with (1, 2, 6, 98, ...).
    mt_results: dict[str, int] = field(default_factory=dict)
    # The HTTP status Webex Connect's 7020 (throttled) comes with: Webex documents the code, not a status.
    webex_throttle_status: int = 429
    # --- receipts pushed to the app ---
    push: bool = True
    push_providers: list[str] = field(default_factory=lambda: list(PROVIDERS))
    app_url: str = "http://127.0.0.1:8000"
    webhook_urls: dict[str, str] = field(default_factory=dict)  # provider -> full URL, overrides app_url + path
    secrets: dict[str, str] = field(default_factory=dict)  # provider -> webhook secret (HMAC key or SMS token)
    basic_auth: str = ""  # user:password, sent when a provider has no secret
    rate_duplicate: float = 0.0  # fraction of receipts pushed twice
    rate_out_of_order: float = 0.0  # fraction of messages whose intermediate receipt arrives after the final one
    push_retries: int = 3  # after the first attempt; Webex Connect retries 3 times
    push_retry_spacing: float = 5.0  # seconds before the first retry
    push_retry_backoff: float = 2.0  # each further retry waits this many times longer (1.0: fixed, like Webex)
    push_timeout: float = 5.0
    push_concurrency: int = 8

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        self.mix = check_mix(self.mix)
        for name in ("rate_429", "rate_5xx", "rate_duplicate", "rate_out_of_order"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        for name in (
            "sent_delay",
            "delay_min",
            "delay_max",
            "jitter",
            "latency_ms",
            "latency_jitter_ms",
            "analytics_job_delay",
            "push_retry_spacing",
            "push_timeout",
            "conversation_idle_seconds",
            "sender_limit_per_second",
        ):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.delay_max < self.delay_min:
            raise ConfigError(f"delay_max ({self.delay_max}) must be >= delay_min ({self.delay_min})")
        if self.rate_limit_scope not in ("token", "client"):
            raise ConfigError("rate_limit_scope must be 'token' or 'client'")
        for name in ("rate_limit_per_minute", "push_retries", "retry_after", "token_lifetime"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0")
        if self.push_concurrency < 1 or self.bulk_max < 1 or self.analytics_page_max < 1:
            raise ConfigError("push_concurrency, bulk_max and analytics_page_max must be >= 1")
        if self.push_retry_backoff < 1:
            raise ConfigError("push_retry_backoff must be >= 1")
        bad_scopes = set(self.fault_scopes) - set(FAULT_SCOPES)
        if bad_scopes:
            raise ConfigError(f"fault_scopes: unknown {sorted(bad_scopes)}; choose from {', '.join(FAULT_SCOPES)}")
        self.send_limits = check_send_limits(self.send_limits)
        if math.isnan(self.sender_limit_per_second) or math.isinf(self.sender_limit_per_second):
            raise ConfigError("sender_limit_per_second must be a finite number >= 0")
        bad_providers = (set(self.push_providers) | set(self.webhook_urls) | set(self.secrets)) - set(PROVIDERS)
        if bad_providers:
            raise ConfigError(f"unknown provider(s) {sorted(bad_providers)}; choose from {', '.join(PROVIDERS)}")
        for number, code in self.mt_results.items():
            if isinstance(code, bool) or not isinstance(code, int) or not 0 <= code <= 99:
                raise ConfigError(f"mt_results[{number!r}] must be an SMS Aggregation result code 0..99, got {code!r}")
        if self.webex_throttle_status not in (200, 400, 429, 503):
            raise ConfigError("webex_throttle_status must be 200, 400, 429 or 503")
        for address, spec in self.address_outcomes.items():
            outcome = spec.partition(":")[0]
            if outcome not in OUTCOMES:
                raise ConfigError(f"address_outcomes[{address!r}]: {spec!r} must start with one of {OUTCOMES}")

    def webhook_url(self, provider: str) -> str:
        return self.webhook_urls.get(provider) or self.app_url.rstrip("/") + WEBHOOK_PATHS[provider]

    def pushes(self, provider: str) -> bool:
        return self.push and provider in self.push_providers

    def public(self) -> dict[str, Any]:
        """The settings as JSON, secrets and credentials shown only as whether they are set."""
        data = dataclasses.asdict(self)
        data["secrets"] = {k: bool(v) for k, v in self.secrets.items()}
        data["basic_auth"] = bool(self.basic_auth)
        data["clients"] = sorted(self.clients)
        data["sms_logins"] = sorted(self.sms_logins)
        data["webex_service_keys"] = len(self.webex_service_keys)
        return data

    def updated(self, changes: dict[str, Any]) -> SimConfig:
        """A copy with ``changes`` applied (the body of ``POST /_sim/config``), checked like the original."""
        if not isinstance(changes, dict):
            raise ConfigError("expected a JSON object of settings")
        known = {f.name: f for f in dataclasses.fields(self)}
        values = dataclasses.asdict(self)
        for name, value in changes.items():
            if name not in known:
                raise ConfigError(f"unknown setting {name!r}")
            if name in STARTUP_ONLY:
                raise ConfigError(f"{name} can only be set at start")
            if name == "mix" and isinstance(value, str):
                value = parse_mix(value)
            values[name] = coerce(name, value, values[name])
        new = SimConfig(**values)
        return new


def coerce(name: str, value: Any, current: Any) -> Any:
    """Accept JSON's types for a setting whose current value shows the type wanted."""
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false")
        return value
    if isinstance(current, int) and not isinstance(current, bool):
        if isinstance(value, bool) or not isinstance(value, int | float) or float(value) != int(value):
            raise ConfigError(f"{name} must be an integer")
        return int(value)
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{name} must be a number")
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name} must be a string")
        return value
    if isinstance(current, list):
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{name} must be a list of strings")
        return list(value)
    if isinstance(current, dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{name} must be an object")
        return dict(value)
    return value


def secrets_from_settings() -> tuple[dict[str, str], str]:
    """The webhook secrets the app itself reads (first entry of each list), and its first Basic credential."""
    # Here, not at the top: the simulator runs without Django; only this helper reads the app's settings.
    from django.conf import settings

    names = {
        "genesys_cloud": "WEBHOOK_SECRET_GENESYS_CLOUD",
        "genesys_sms": "WEBHOOK_SECRET_GENESYS_SMS",
        "webex_connect": "WEBHOOK_SECRET_WEBEX_CONNECT",
    }
    secrets = {}
    for provider, setting in names.items():
        values = getattr(settings, setting, None) or []
        if isinstance(values, str):
            values = [v for v in values.split(",") if v]
        if values:
            secrets[provider] = values[0].strip()
    basic = getattr(settings, "WEBHOOK_BASIC_AUTH", None) or []
    if isinstance(basic, str):
        basic = [v for v in basic.split(",") if v]
    return secrets, (basic[0].strip() if basic else "")
