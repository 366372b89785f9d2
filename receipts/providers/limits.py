"""Limits on calls to a provider that hold across every process: a token bucket and a circuit breaker.

Both keep their state outside the process, so every web and Celery worker on every machine shares them:

- **Redis** (``REDIS_URL`` set, the production shape). Each decision is one Lua script, so it is atomic across
  machines, and the clock is Redis's own (``TIME``), so workers' clocks do not matter.
- **A SQLite file** (``VAR_DIR/limits.sqlite3``) when there is no Redis: the embedded mode. Each decision is one
  ``BEGIN IMMEDIATE`` transaction, so it is atomic across the processes of one machine, which is what the
  embedded mode is. (The Django database is not used: the state needs no migration, and SQLite's single writer
  lock would make every API call wait behind receipt processing.) Several machines need Redis.

**The bucket.** The provider allows ``limit`` requests per ``window`` (Genesys Cloud: 300 a minute per token). We
keep ``headroom`` of it free (20%): the budget is ``floor(limit * (1 - headroom))`` (240). The bucket holds at
most ``burst`` tokens and refills at ``(budget - burst) / window`` per second, so that any window of that length
grants at most ``burst + (budget - burst) = budget`` requests, wherever the window starts. The headroom is the
margin for what the bucket cannot see: requests granted just before a window and arriving just inside it.
A 429 pauses the bucket for everybody until its ``Retry-After`` has passed (``pause``).

**The breaker.** Closed: calls go through. ``threshold`` failures in a row (5xx, timeouts, connection errors; a
4xx is the provider answering, so it counts as a success) open it: calls are refused at once for ``cooldown``
seconds. Then one caller, and only one, is let through as a probe (half-open); its success closes the circuit,
its failure opens it again for another cool-down. A probe that never reports (its worker died) is replaced after
``probe_timeout``.

The arithmetic lives once in Python (``bucket_take``, ``circuit_allow``, ``circuit_record``) and once in Lua; the
tests run the same cases against both stores.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, cast

import redis
from django.conf import settings

if TYPE_CHECKING:
    from collections.abc import Mapping

    from redis.typing import EncodableT, FieldT

log = logging.getLogger(__name__)

Clock = Callable[[], float]

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
CIRCUIT_STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
STATE_TTL = 7 * 24 * 3600  # idle state expires (Redis): a week without calls forgets the bucket and the breaker


# --- configuration ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    limit: int = 300
    window: float = 60.0
    headroom: float = 0.2
    burst: int = 10

    def __post_init__(self) -> None:
        if self.limit < 2 or self.window <= 0 or not 0 <= self.headroom < 1:
            raise ValueError(f"rate limit needs limit >= 2, window > 0, 0 <= headroom < 1 (got {self})")
        if self.budget < 2:
            raise ValueError(f"rate limit {self.limit} with headroom {self.headroom} leaves a budget under 2")

    @property
    def budget(self) -> int:
        """Most requests granted in any one window."""
        return math.floor(self.limit * (1 - self.headroom) + 1e-9)

    @property
    def capacity(self) -> int:
        return max(1, min(self.burst, self.budget - 1))

    @property
    def refill_per_second(self) -> float:
        return (self.budget - self.capacity) / self.window


@dataclass(frozen=True)
class CircuitPolicy:
    threshold: int = 5
    cooldown: float = 30.0
    probe_timeout: float = 30.0


# --- the arithmetic (the SQLite store runs it; the Lua scripts mirror it) -----------------------------------


@dataclass(frozen=True)
class Grant:
    granted: bool
    wait: float  # seconds until a token (or the end of a pause) when not granted
    tokens: float


def bucket_take(state: dict[str, float], capacity: float, rate: float, now: float) -> tuple[dict[str, float], Grant]:
    tokens = state.get("tokens", capacity)
    ts = state.get("ts", now)
    paused_until = state.get("paused_until", 0.0)
    if now > ts:
        tokens = min(capacity, tokens + (now - ts) * rate)
        ts = now
    if now < paused_until:
        grant = Grant(False, paused_until - now, tokens)
    elif tokens >= 1:
        tokens -= 1
        grant = Grant(True, 0.0, tokens)
    else:
        grant = Grant(False, (1 - tokens) / rate if rate > 0 else 60.0, tokens)
    return {"tokens": tokens, "ts": ts, "paused_until": paused_until}, grant


def bucket_peek(state: dict[str, float], capacity: float, rate: float, now: float) -> tuple[float, float]:
    """Tokens available now, and seconds left of a pause."""
    tokens = state.get("tokens", capacity)
    ts = state.get("ts", now)
    if now > ts:
        tokens = min(capacity, tokens + (now - ts) * rate)
    return tokens, max(0.0, state.get("paused_until", 0.0) - now)


@dataclass(frozen=True)
class CircuitState:
    state: str = CLOSED
    failures: int = 0
    opened_at: float = 0.0
    probe_until: float = 0.0
    opened_total: int = 0
    retry_in: float = 0.0  # seconds until a probe is let through (open), else 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "failures": self.failures,
            "opened_at": self.opened_at,
            "probe_until": self.probe_until,
            "opened_total": self.opened_total,
        }


def _circuit(data: dict[str, Any]) -> CircuitState:
    return CircuitState(
        state=str(data.get("state") or CLOSED),
        failures=int(data.get("failures") or 0),
        opened_at=float(data.get("opened_at") or 0),
        probe_until=float(data.get("probe_until") or 0),
        opened_total=int(data.get("opened_total") or 0),
    )


def circuit_allow(current: CircuitState, policy: CircuitPolicy, now: float) -> tuple[CircuitState, bool]:
    if current.state == CLOSED:
        return current, True
    if current.state == OPEN:
        reopen_at = current.opened_at + policy.cooldown
        if now < reopen_at:
            return CircuitState(**{**current.as_dict(), "retry_in": reopen_at - now}), False
        return CircuitState(
            **{**current.as_dict(), "state": HALF_OPEN, "probe_until": now + policy.probe_timeout}
        ), True
    if now >= current.probe_until:  # half-open, and the probe never reported: let another through
        return CircuitState(**{**current.as_dict(), "probe_until": now + policy.probe_timeout}), True
    return CircuitState(**{**current.as_dict(), "retry_in": current.probe_until - now}), False


def circuit_record(current: CircuitState, success: bool, policy: CircuitPolicy, now: float) -> CircuitState:
    if success:
        return CircuitState(opened_total=current.opened_total)
    failures = current.failures + 1
    if current.state == HALF_OPEN or (current.state == CLOSED and failures >= policy.threshold):
        return CircuitState(OPEN, failures, now, 0.0, current.opened_total + 1)
    return CircuitState(**{**current.as_dict(), "failures": failures})


# --- the stores -------------------------------------------------------------------------------------------


class Store(Protocol):
    kind: str

    def take(self, key: str, capacity: float, rate: float) -> Grant: ...
    def pause(self, key: str, seconds: float) -> None: ...
    def peek(self, key: str, capacity: float, rate: float) -> tuple[float, float]: ...
    def circuit_allow(self, key: str, policy: CircuitPolicy) -> tuple[CircuitState, bool]: ...
    def circuit_record(self, key: str, success: bool, policy: CircuitPolicy) -> CircuitState: ...
    def circuit_state(self, key: str, policy: CircuitPolicy) -> CircuitState: ...
    def circuit_reset(self, key: str) -> None: ...
    def incr(self, key: str, field: str, amount: int = 1) -> None: ...
    def counters(self, key: str) -> dict[str, int]: ...
    def set_values(self, key: str, values: dict[str, str]) -> None: ...
    def values(self, key: str) -> dict[str, str]: ...
    def get(self, key: str) -> str | None: ...
    def set(self, key: str, value: str, ttl: float) -> None: ...
    def delete(self, key: str) -> None: ...
    def acquire_lock(self, key: str, ttl: float) -> str | None: ...
    def release_lock(self, key: str, token: str) -> None: ...


# Redis: every decision is one script. ARGV "now" is empty in production (Redis TIME is the clock); tests pass it.
_NOW = """
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
"""
_FMT = "string.format('%.6f', {})"

TAKE_LUA = (
    _NOW
    + """
local capacity, rate, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'paused_until')
local tokens, ts, paused = tonumber(v[1]) or capacity, tonumber(v[2]) or now, tonumber(v[3]) or 0
if now > ts then
  tokens = math.min(capacity, tokens + (now - ts) * rate)
  ts = now
end
local granted, wait = 0, 0
if now < paused then
  wait = paused - now
elseif tokens >= 1 then
  tokens = tokens - 1
  granted = 1
elseif rate > 0 then
  wait = (1 - tokens) / rate
else
  wait = 60
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', ts))
redis.call('EXPIRE', KEYS[1], ttl)
return {granted, string.format('%.6f', wait), string.format('%.6f', tokens)}
"""
)

PAUSE_LUA = (
    _NOW
    + """
local untill = now + tonumber(ARGV[2])
local current = tonumber(redis.call('HGET', KEYS[1], 'paused_until')) or 0
if untill > current then
  redis.call('HSET', KEYS[1], 'paused_until', string.format('%.6f', untill))
end
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
return string.format('%.6f', now)
"""
)

CIRCUIT_ALLOW_LUA = (
    _NOW
    + """
local cooldown, probe_timeout, ttl = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'probe_until', 'opened_total')
local state = v[1] or 'closed'
local opened_at, probe_until = tonumber(v[3]) or 0, tonumber(v[4]) or 0
local allowed, retry_in = 0, 0
if state == 'closed' then
  allowed = 1
elseif state == 'open' then
  if now < opened_at + cooldown then
    retry_in = opened_at + cooldown - now
  else
    state, probe_until, allowed = 'half_open', now + probe_timeout, 1
    redis.call('HSET', KEYS[1], 'state', state, 'probe_until', string.format('%.6f', probe_until))
    redis.call('EXPIRE', KEYS[1], ttl)
  end
else
  if now >= probe_until then
    probe_until, allowed = now + probe_timeout, 1
    redis.call('HSET', KEYS[1], 'probe_until', string.format('%.6f', probe_until))
    redis.call('EXPIRE', KEYS[1], ttl)
  else
    retry_in = probe_until - now
  end
end
return {allowed, state, tostring(tonumber(v[2]) or 0), string.format('%.6f', opened_at),
        string.format('%.6f', probe_until), tostring(tonumber(v[5]) or 0), string.format('%.6f', retry_in)}
"""
)

CIRCUIT_RECORD_LUA = (
    _NOW
    + """
local success, threshold, ttl = ARGV[2] == '1', tonumber(ARGV[3]), tonumber(ARGV[4])
local v = redis.call('HMGET', KEYS[1], 'state', 'failures', 'opened_at', 'probe_until', 'opened_total')
local state, failures = v[1] or 'closed', tonumber(v[2]) or 0
local opened_at, probe_until, opened_total = tonumber(v[3]) or 0, tonumber(v[4]) or 0, tonumber(v[5]) or 0
if success then
  state, failures, opened_at, probe_until = 'closed', 0, 0, 0
else
  failures = failures + 1
  if state == 'half_open' or (state == 'closed' and failures >= threshold) then
    state, opened_at, probe_until, opened_total = 'open', now, 0, opened_total + 1
  end
end
redis.call('HSET', KEYS[1], 'state', state, 'failures', failures, 'opened_at', string.format('%.6f', opened_at),
           'probe_until', string.format('%.6f', probe_until), 'opened_total', opened_total)
redis.call('EXPIRE', KEYS[1], ttl)
return {state, tostring(failures), string.format('%.6f', opened_at), string.format('%.6f', probe_until),
        tostring(opened_total)}
"""
)

RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisStore:
    kind = "redis"

    def __init__(self, url: str, clock: Clock | None = None) -> None:
        self.url = url
        self.clock = clock
        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
        self._take = self.client.register_script(TAKE_LUA)
        self._pause = self.client.register_script(PAUSE_LUA)
        self._allow = self.client.register_script(CIRCUIT_ALLOW_LUA)
        self._record = self.client.register_script(CIRCUIT_RECORD_LUA)
        self._release = self.client.register_script(RELEASE_LUA)

    def _now(self) -> str:
        return f"{self.clock():.6f}" if self.clock else ""

    def now(self) -> float:
        if self.clock:
            return self.clock()
        seconds, micros = self.client.time()
        return seconds + micros / 1e6

    def take(self, key: str, capacity: float, rate: float) -> Grant:
        granted, wait, tokens = self._take(keys=[key], args=[self._now(), capacity, rate, STATE_TTL])
        return Grant(bool(int(granted)), float(_s(wait)), float(_s(tokens)))

    def pause(self, key: str, seconds: float) -> None:
        self._pause(keys=[key], args=[self._now(), seconds, STATE_TTL])

    def peek(self, key: str, capacity: float, rate: float) -> tuple[float, float]:
        raw = self.client.hgetall(key)
        state = {_s(k): float(_s(v)) for k, v in raw.items()}
        return bucket_peek(state, capacity, rate, self.now())

    def circuit_allow(self, key: str, policy: CircuitPolicy) -> tuple[CircuitState, bool]:
        result = self._allow(keys=[key], args=[self._now(), policy.cooldown, policy.probe_timeout, STATE_TTL])
        allowed, state, failures, opened_at, probe_until, total, retry_in = (_s(x) for x in result)
        circuit = CircuitState(state, int(failures), float(opened_at), float(probe_until), int(total), float(retry_in))
        return circuit, allowed == "1"

    def circuit_record(self, key: str, success: bool, policy: CircuitPolicy) -> CircuitState:
        args = [self._now(), "1" if success else "0", policy.threshold, STATE_TTL]
        state, failures, opened_at, probe_until, total = (_s(x) for x in self._record(keys=[key], args=args))
        return CircuitState(state, int(failures), float(opened_at), float(probe_until), int(total))

    def circuit_state(self, key: str, policy: CircuitPolicy) -> CircuitState:
        current = _circuit({_s(k): _s(v) for k, v in self.client.hgetall(key).items()})
        return _with_retry_in(current, policy, self.now())

    def circuit_reset(self, key: str) -> None:
        self.client.delete(key)

    def incr(self, key: str, field: str, amount: int = 1) -> None:
        self.client.hincrby(key, field, amount)

    def counters(self, key: str) -> dict[str, int]:
        return {_s(k): int(_s(v)) for k, v in self.client.hgetall(key).items()}

    def set_values(self, key: str, values: dict[str, str]) -> None:
        # redis-py types `mapping` with invariant keys (FieldT, a union), which a dict[str, str] does not match.
        self.client.hset(key, mapping=cast("Mapping[FieldT, EncodableT]", values))
        self.client.expire(key, STATE_TTL)

    def values(self, key: str) -> dict[str, str]:
        return {_s(k): _s(v) for k, v in self.client.hgetall(key).items()}

    def get(self, key: str) -> str | None:
        value = self.client.get(key)
        return None if value is None else _s(value)

    def set(self, key: str, value: str, ttl: float) -> None:
        self.client.set(key, value, px=max(1, int(ttl * 1000)))

    def delete(self, key: str) -> None:
        self.client.delete(key)

    def acquire_lock(self, key: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        return token if self.client.set(key, token, nx=True, px=max(1, int(ttl * 1000))) else None

    def release_lock(self, key: str, token: str) -> None:
        self._release(keys=[key], args=[token])


def _with_retry_in(current: CircuitState, policy: CircuitPolicy, now: float) -> CircuitState:
    retry_in = 0.0
    if current.state == OPEN:
        retry_in = max(0.0, current.opened_at + policy.cooldown - now)
    elif current.state == HALF_OPEN:
        retry_in = max(0.0, current.probe_until - now)
    return CircuitState(**{**current.as_dict(), "retry_in": retry_in})


class SqliteStore:
    """One SQLite file shared by the processes of one machine; every decision is one IMMEDIATE transaction."""

    kind = "sqlite"

    def __init__(self, path: str | Path, clock: Clock | None = None) -> None:
        self.path = str(path)
        self.clock = clock or time.time
        self._local = threading.local()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as db:
            db.execute("CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires_at REAL)")
        with contextlib.suppress(OSError):
            os.chmod(self.path, 0o600)  # it holds the provider's access token

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "pid", None) != os.getpid():  # never reuse one across a fork
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            set_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def now(self) -> float:
        return self.clock()

    def _read(self, db: sqlite3.Connection, key: str, now: float) -> Any:
        row = db.execute("SELECT value, expires_at FROM state WHERE key = ?", (key,)).fetchone()
        if row is None or (row[1] is not None and row[1] <= now):
            return None
        return json.loads(row[0])

    def _write(self, db: sqlite3.Connection, key: str, value: Any, expires_at: float | None) -> None:
        db.execute(
            "INSERT INTO state (key, value, expires_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (key, json.dumps(value), expires_at),
        )

    def take(self, key: str, capacity: float, rate: float) -> Grant:
        with self._tx() as db:
            now = self.now()
            state, grant = bucket_take(self._read(db, key, now) or {}, capacity, rate, now)
            self._write(db, key, state, None)
        return grant

    def pause(self, key: str, seconds: float) -> None:
        with self._tx() as db:
            now = self.now()
            state = self._read(db, key, now) or {}
            state["paused_until"] = max(state.get("paused_until", 0.0), now + seconds)
            self._write(db, key, state, None)

    def peek(self, key: str, capacity: float, rate: float) -> tuple[float, float]:
        with self._tx() as db:
            now = self.now()
            return bucket_peek(self._read(db, key, now) or {}, capacity, rate, now)

    def circuit_allow(self, key: str, policy: CircuitPolicy) -> tuple[CircuitState, bool]:
        with self._tx() as db:
            now = self.now()
            current = _circuit(self._read(db, key, now) or {})
            after, allowed = circuit_allow(current, policy, now)
            if after.as_dict() != current.as_dict():
                self._write(db, key, after.as_dict(), None)
        return after, allowed

    def circuit_record(self, key: str, success: bool, policy: CircuitPolicy) -> CircuitState:
        with self._tx() as db:
            now = self.now()
            after = circuit_record(_circuit(self._read(db, key, now) or {}), success, policy, now)
            self._write(db, key, after.as_dict(), None)
        return after

    def circuit_state(self, key: str, policy: CircuitPolicy) -> CircuitState:
        with self._tx() as db:
            now = self.now()
            return _with_retry_in(_circuit(self._read(db, key, now) or {}), policy, now)

    def circuit_reset(self, key: str) -> None:
        self.delete(key)

    def incr(self, key: str, field: str, amount: int = 1) -> None:
        with self._tx() as db:
            counters = self._read(db, key, self.now()) or {}
            counters[field] = int(counters.get(field, 0)) + amount
            self._write(db, key, counters, None)

    def counters(self, key: str) -> dict[str, int]:
        with self._tx() as db:
            return {k: int(v) for k, v in (self._read(db, key, self.now()) or {}).items()}

    def set_values(self, key: str, values: dict[str, str]) -> None:
        with self._tx() as db:
            current = self._read(db, key, self.now()) or {}
            self._write(db, key, {**current, **values}, None)

    def values(self, key: str) -> dict[str, str]:
        with self._tx() as db:
            return dict(self._read(db, key, self.now()) or {})

    def get(self, key: str) -> str | None:
        with self._tx() as db:
            value = self._read(db, key, self.now())
        return None if value is None else str(value)

    def set(self, key: str, value: str, ttl: float) -> None:
        with self._tx() as db:
            self._write(db, key, value, self.now() + ttl)

    def delete(self, key: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM state WHERE key = ?", (key,))

    def acquire_lock(self, key: str, ttl: float) -> str | None:
        token = uuid.uuid4().hex
        with self._tx() as db:
            now = self.now()
            if self._read(db, key, now) is not None:
                return None
            self._write(db, key, token, now + ttl)
        return token

    def release_lock(self, key: str, token: str) -> None:
        with self._tx() as db:
            if self._read(db, key, self.now()) == token:
                db.execute("DELETE FROM state WHERE key = ?", (key,))


_stores: dict[tuple[int, str], Store] = {}
_stores_lock = threading.Lock()


def default_store() -> Store:
    """Redis when ``REDIS_URL`` is set, else the SQLite file under ``VAR_DIR``; one per process."""
    where = settings.REDIS_URL or str(Path(settings.VAR_DIR) / "limits.sqlite3")
    key = (os.getpid(), where)
    with _stores_lock:
        if key not in _stores:
            _stores[key] = RedisStore(where) if settings.REDIS_URL else SqliteStore(where)
        return _stores[key]


# --- what callers use -------------------------------------------------------------------------------------


class RateLimitWait(Exception):
    """No token within the time the caller was willing to wait."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"rate budget spent; next token in {wait:.1f}s")
        self.wait = wait


class CircuitOpenError(Exception):
    def __init__(self, name: str, retry_in: float) -> None:
        super().__init__(f"circuit {name} is open; next probe in {retry_in:.1f}s")
        self.retry_in = retry_in


class Limits:
    """The bucket, the breaker and the counters of one provider account (one OAuth client, one API host)."""

    def __init__(
        self,
        name: str,
        rate: RateLimit,
        circuit: CircuitPolicy,
        store: Store,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.rate = rate
        self.policy = circuit
        self.store = store
        self.sleep = sleep
        self.prefix = f"limits:{name}"

    @staticmethod
    def scope(*parts: str) -> str:
        """A short stable name for an account, without its secrets in the clear."""
        return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]

    def key(self, what: str) -> str:
        return f"{self.prefix}:{what}"

    # bucket
    def try_acquire(self) -> Grant:
        return self.store.take(self.key("bucket"), self.rate.capacity, self.rate.refill_per_second)

    def acquire(self, max_wait: float) -> float:
        """Take one token, waiting up to ``max_wait`` seconds; answers how long it waited."""
        waited = 0.0
        while True:
            grant = self.try_acquire()
            if grant.granted:
                if waited:
                    self.count("limiter_waits")
                return waited
            if waited + grant.wait > max_wait:
                self.count("limiter_refusals")
                raise RateLimitWait(grant.wait)
            # A little jitter so that the workers woken by one refill do not all ask in the same millisecond.
            pause = grant.wait + random.uniform(0, min(0.05, grant.wait / 4 + 0.005))
            self.sleep(pause)
            waited += pause

    def pause(self, seconds: float) -> None:
        """Stop every worker's requests for ``seconds`` (a 429's Retry-After)."""
        self.store.pause(self.key("bucket"), seconds)

    def bucket(self) -> tuple[float, float]:
        return self.store.peek(self.key("bucket"), self.rate.capacity, self.rate.refill_per_second)

    # breaker
    def allow(self) -> CircuitState:
        state, allowed = self.store.circuit_allow(self.key("circuit"), self.policy)
        if not allowed:
            self.count("circuit_refusals")
            raise CircuitOpenError(self.name, state.retry_in)
        return state

    def record(self, success: bool) -> CircuitState:
        before = None if success else self.store.circuit_state(self.key("circuit"), self.policy).state
        after = self.store.circuit_record(self.key("circuit"), success, self.policy)
        if not success and after.state == OPEN and before != OPEN:
            log.warning("circuit %s opened after %d failure(s)", self.name, after.failures)
        return after

    def circuit(self) -> CircuitState:
        return self.store.circuit_state(self.key("circuit"), self.policy)

    def reset_circuit(self) -> None:
        self.store.circuit_reset(self.key("circuit"))

    # counters shown in /metrics and the admin (every process adds to the same ones)
    def count(self, field: str, amount: int = 1) -> None:
        try:
            self.store.incr(self.key("stats"), field, amount)
        except Exception as exc:  # counting must never break a call
            log.debug("could not count %s: %s", field, exc)

    def counters(self) -> dict[str, int]:
        return self.store.counters(self.key("stats"))

    def note(self, values: dict[str, str]) -> None:
        try:
            self.store.set_values(self.key("notes"), values)
        except Exception as exc:
            log.debug("could not note %s: %s", list(values), exc)

    def notes(self) -> dict[str, str]:
        return self.store.values(self.key("notes"))

    @contextlib.contextmanager
    def exclusive(self, what: str, ttl: float) -> Iterator[bool]:
        """A lock across processes; yields False (and holds nothing) when another holder has it."""
        key = self.key(f"lock:{what}")
        token = self.store.acquire_lock(key, ttl)
        try:
            yield token is not None
        finally:
            if token is not None:
                self.store.release_lock(key, token)


def set_wal(conn: sqlite3.Connection, attempts: int = 50) -> None:
    """Switch the file to WAL. Several processes opening a new file at once can find it locked: the busy
    timeout does not cover a journal-mode change, so wait and try again (WAL, once set, stays on the file)."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
