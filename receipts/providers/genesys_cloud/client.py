"""The Genesys Cloud CX Platform API, as this tracker uses it: OAuth, message status, bulk and analytics, send.

One ``httpx`` client per process, every call through the shared limits of ``receipts.providers.limits``:

- **OAuth client credentials** at ``https://login.{region}/oauth/token``. The token is kept in the shared store
  (Redis, or the embedded SQLite file) so that every worker uses one token, refreshed 60 s before it expires and
  once more when the API answers 401. One process at a time fetches it (a short shared lock).
- **A shared token bucket** (``GENESYS_RATE_LIMIT_PER_MINUTE`` less ``GENESYS_RATE_HEADROOM``) before every API
  request. A 429 pauses every worker for its ``Retry-After`` (plus jitter) and the request is tried again;
  ``inin-ratelimit-*`` headers, when present (Genesys has deprecated them), are read: a count at the allowance
  pauses the bucket until their reset, and the last values show in ``/metrics``.
- **A shared circuit breaker**: 5xx, timeouts and connection errors count as failures; after
  ``CIRCUIT_FAILURE_THRESHOLD`` in a row calls are refused at once (``GenesysCloudUnavailable``) until a probe,
  after ``CIRCUIT_COOLDOWN_SECONDS``, succeeds.
- **Retries** (tenacity): a 429 always (the request was not processed); 5xx and transport errors only for
  requests that are safe to repeat (reads, lookups, analytics queries), never for a send.

Results are typed (``MessageData``, ``AgentlessSendResult``, ``ConversationPage``...), each keeping the JSON it
came from in ``raw``: the receipts pipeline parses a MessageData exactly as a webhook would
(``receipts.providers.genesys_cloud.parser``). Errors carry Genesys's ``status``, ``code``, ``message`` and
``contextId``. Shapes follow the platform SDK models (MessageData, SendAgentlessOutboundMessageResponse,
AgentlessEmailSendResponseDto, AsyncConversationQuery, AsyncQueryResponse, AsyncQueryStatus,
AnalyticsConversationAsyncQueryResponse, AnalyticsSession).
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from receipts.providers.limits import (
    CircuitOpenError,
    CircuitPolicy,
    Limits,
    RateLimit,
    RateLimitWait,
    Store,
    default_store,
)

log = logging.getLogger(__name__)

# Region name (as the SDKs and the Genesys Cloud docs name them) -> the domain the API and login hosts live under.
REGIONS: dict[str, str] = {
    "us-east-1": "mypurecloud.com",
    "us-east-2": "use2.us-gov-pure.cloud",
    "us-west-2": "usw2.pure.cloud",
    "ca-central-1": "cac1.pure.cloud",
    "sa-east-1": "sae1.pure.cloud",
    "mx-central-1": "mxc1.pure.cloud",
    "eu-west-1": "mypurecloud.ie",
    "eu-west-2": "euw2.pure.cloud",
    "eu-central-1": "mypurecloud.de",
    "eu-central-2": "euc2.pure.cloud",
    "me-central-1": "mec1.pure.cloud",
    "ap-south-1": "aps1.pure.cloud",
    "ap-northeast-1": "mypurecloud.jp",
    "ap-northeast-2": "apne2.pure.cloud",
    "ap-northeast-3": "apne3.pure.cloud",
    "ap-southeast-1": "apse1.pure.cloud",
    "ap-southeast-2": "mypurecloud.com.au",
    "eusc-de-east-1": "edee1.eusc-pure.cloud",  # the EU sovereign cloud (PureCloudRegionHosts.eusc_de_east_1)
}

TOKEN_REFRESH_MARGIN = 60.0  # seconds before expiry a token is replaced
DEFAULT_TOKEN_LIFETIME = 86400.0
MAX_ATTEMPTS = 4
BULK_LOOKUP_MAX = 1000  # message ids per messages/bulk request
SMS_MAX_LENGTH = 765
# Agentless email's character limits ("Email rate limits", help.mypurecloud.com): subject line 400, friendly name 64.
EMAIL_SUBJECT_MAX_LENGTH = 400
EMAIL_NAME_MAX_LENGTH = 64

JOB_DONE, JOB_RUNNING = "FULFILLED", ("QUEUED", "PENDING")


def region_domain(region: str) -> str:
    """``us-east-1``, ``us_east_1`` or the domain itself (``mypurecloud.ie``) -> ``mypurecloud.ie``."""
    name = region.strip().lower().replace("_", "-")
    if name in REGIONS:
        return REGIONS[name]
    if name in REGIONS.values() or "." in name:
        return name
    known = ", ".join(sorted(REGIONS))
    raise ImproperlyConfigured(f"GENESYS_CLOUD_REGION {region!r} is not a region name ({known}) nor a domain")


# --- errors -----------------------------------------------------------------------------------------------


class GenesysCloudError(Exception):
    """An answer that is not a success, with Genesys's own error fields (ErrorBody)."""

    def __init__(
        self,
        status: int | None,
        code: str = "",
        message: str = "",
        context_id: str = "",
        *,
        retry_after: float | None = None,
        details: list[Any] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.context_id = context_id
        self.retry_after = retry_after
        self.details = details or []
        super().__init__(f"Genesys Cloud {status or '-'} {code or ''}: {message}".strip() + self._context())

    def _context(self) -> str:
        return f" (contextId {self.context_id})" if self.context_id else ""


class GenesysCloudAuthError(GenesysCloudError):
    """401/403, or the token endpoint refused the client credentials."""


class GenesysCloudNotFound(GenesysCloudError):
    pass


class GenesysCloudRateLimited(GenesysCloudError):
    """429 every time we tried, or a Retry-After longer than the caller will wait."""


class GenesysCloudServerError(GenesysCloudError):
    pass


class GenesysCloudUnavailable(GenesysCloudError):
    """Nothing was answered: the circuit is open, our own budget is spent, or the connection failed."""


class GenesysCloudJobFailed(GenesysCloudError):
    """An analytics job ended FAILED, CANCELLED or EXPIRED, or did not finish in time."""


def error_from(response: httpx.Response) -> GenesysCloudError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    status = response.status_code
    kind: type[GenesysCloudError] = GenesysCloudError
    if status in (401, 403):
        kind = GenesysCloudAuthError
    elif status == 404:
        kind = GenesysCloudNotFound
    elif status == 429:
        kind = GenesysCloudRateLimited
    elif status >= 500:
        kind = GenesysCloudServerError
    message = str(body.get("message") or body.get("error_description") or response.reason_phrase or "")
    return kind(
        int(body.get("status") or status),
        str(body.get("code") or body.get("error") or ""),
        message[:500],
        str(body.get("contextId") or response.headers.get("inin-correlation-id") or ""),
        retry_after=retry_after_seconds(response, message),
        details=body.get("details") if isinstance(body.get("details"), list) else None,
    )


RETRY_IN_MESSAGE = re.compile(r"\[(\d+(?:\.\d+)?)\]\s*seconds")


def retry_after_seconds(response: httpx.Response, message: str = "") -> float | None:
    """``Retry-After`` in seconds or as an HTTP date; else the ``[42] seconds`` Genesys writes in the message."""
    value = response.headers.get("Retry-After", "").strip()
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value) if value else None
            if when is not None:
                return max(0.0, (when - datetime.now(UTC)).total_seconds())
    found = RETRY_IN_MESSAGE.search(message)
    return float(found.group(1)) if found else None


# --- typed results ----------------------------------------------------------------------------------------


def _str(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    return "" if value is None else str(value)


@dataclass(frozen=True)
class MessageData:
    """GET conversations/messages/{id}/details, or one entity of a bulk lookup. ``raw`` is what the parser reads."""

    id: str
    status: str
    timestamp: str
    conversation_id: str
    messenger_type: str
    direction: str
    normalized_receipts: list[dict[str, Any]]
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> MessageData:
        receipts = obj.get("normalizedReceipts")
        return cls(
            id=_str(obj, "id"),
            status=_str(obj, "status"),
            timestamp=_str(obj, "timestamp"),
            conversation_id=_str(obj, "conversationId"),
            messenger_type=_str(obj, "messengerType"),
            direction=_str(obj, "direction"),
            normalized_receipts=receipts if isinstance(receipts, list) else [],
            raw=obj,
        )


@dataclass(frozen=True)
class AgentlessSendResult:
    """SendAgentlessOutboundMessageResponse."""

    id: str
    conversation_id: str
    messenger_type: str
    timestamp: str
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AgentlessSendResult:
        return cls(
            id=_str(obj, "id"),
            conversation_id=_str(obj, "conversationId"),
            messenger_type=_str(obj, "messengerType"),
            timestamp=_str(obj, "timestamp"),
            raw=obj,
        )


@dataclass(frozen=True)
class EmailSendResult:
    """AgentlessEmailSendResponseDto."""

    id: str
    conversation_id: str
    date_created: str
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> EmailSendResult:
        return cls(
            id=_str(obj, "id"),
            conversation_id=_str(obj, "conversationId"),
            date_created=_str(obj, "dateCreated"),
            raw=obj,
        )


@dataclass(frozen=True)
class AsyncJobStatus:
    """AsyncQueryStatus: ``state`` is QUEUED, PENDING, FULFILLED, FAILED, CANCELLED or EXPIRED."""

    state: str
    error_message: str
    expiration_date: str
    raw: dict[str, Any]

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AsyncJobStatus:
        return cls(_str(obj, "state").upper(), _str(obj, "errorMessage"), _str(obj, "expirationDate"), obj)


@dataclass(frozen=True)
class AnalyticsSession:
    """The parts of an AnalyticsSession that tell a message's delivery, with its participant's purpose."""

    session_id: str
    purpose: str
    media_type: str
    direction: str
    message_type: str
    delivery_status: str
    delivery_status_change_date: str
    extended_delivery_status: str
    error_code_description: str

    @classmethod
    def from_json(cls, obj: dict[str, Any], purpose: str) -> AnalyticsSession:
        return cls(
            session_id=_str(obj, "sessionId"),
            purpose=purpose,
            media_type=_str(obj, "mediaType"),
            direction=_str(obj, "direction"),
            message_type=_str(obj, "messageType"),
            delivery_status=_str(obj, "deliveryStatus"),
            delivery_status_change_date=_str(obj, "deliveryStatusChangeDate"),
            extended_delivery_status=_str(obj, "extendedDeliveryStatus"),
            error_code_description=_str(obj, "errorCodeDescription"),
        )


@dataclass(frozen=True)
class AnalyticsConversation:
    conversation_id: str
    conversation_start: str
    sessions: list[AnalyticsSession]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> AnalyticsConversation:
        sessions = []
        for participant in obj.get("participants") or []:
            if not isinstance(participant, dict):
                continue
            purpose = _str(participant, "purpose")
            for session in participant.get("sessions") or []:
                if isinstance(session, dict):
                    sessions.append(AnalyticsSession.from_json(session, purpose))
        return cls(_str(obj, "conversationId"), _str(obj, "conversationStart"), sessions, obj)


@dataclass(frozen=True)
class ConversationPage:
    """AnalyticsConversationAsyncQueryResponse: one page of a job's results, and the cursor to the next."""

    conversations: list[AnalyticsConversation]
    cursor: str
    data_availability_date: str

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> ConversationPage:
        conversations = [AnalyticsConversation.from_json(c) for c in obj.get("conversations") or []]
        return cls(conversations, _str(obj, "cursor"), _str(obj, "dataAvailabilityDate"))


# --- the client -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    api_url: str
    login_url: str
    client_id: str
    client_secret: str = field(repr=False)
    timeout: float = 10.0
    max_wait: float = 30.0  # longest one call waits for a token or a Retry-After before giving up

    @classmethod
    def from_settings(cls) -> Config:
        domain = region_domain(settings.GENESYS_CLOUD_REGION)
        return cls(
            api_url=(settings.GENESYS_CLOUD_BASE_URL or f"https://api.{domain}").rstrip("/"),
            login_url=(settings.GENESYS_CLOUD_LOGIN_URL or f"https://login.{domain}").rstrip("/"),
            client_id=settings.GENESYS_CLOUD_CLIENT_ID,
            client_secret=settings.GENESYS_CLOUD_CLIENT_SECRET,
            timeout=settings.GENESYS_CLOUD_TIMEOUT,
            max_wait=settings.GENESYS_MAX_WAIT,
        )

    @property
    def configured(self) -> bool:
        return bool(self.client_id and self.client_secret)


def limits_from_settings(config: Config, store: Store | None = None) -> Limits:
    rate = RateLimit(
        limit=settings.GENESYS_RATE_LIMIT_PER_MINUTE,
        window=settings.GENESYS_RATE_WINDOW,
        headroom=settings.GENESYS_RATE_HEADROOM,
        burst=settings.GENESYS_RATE_BURST,
    )
    policy = CircuitPolicy(
        threshold=settings.CIRCUIT_FAILURE_THRESHOLD,
        cooldown=settings.CIRCUIT_COOLDOWN_SECONDS,
        probe_timeout=max(settings.GENESYS_CLOUD_TIMEOUT * 2, 5.0),
    )
    # The provider counts per OAuth client: every deployment using the same client shares one budget.
    name = "genesys_cloud:" + Limits.scope(config.api_url, config.client_id)
    return Limits(name, rate, policy, store or default_store())


class _Retryable(Exception):
    """Internal: carries an error that may be tried again, and how long to wait first."""

    def __init__(self, error: GenesysCloudError, wait: float | None = None) -> None:
        super().__init__(str(error))
        self.error, self.wait = error, wait  # None: back off exponentially, with jitter


class GenesysCloudClient:
    def __init__(
        self,
        config: Config,
        limits: Limits,
        *,
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not config.configured:
            raise ImproperlyConfigured("set GENESYS_CLOUD_CLIENT_ID and GENESYS_CLOUD_CLIENT_SECRET")
        self.config = config
        self.limits = limits
        self.sleep = sleep
        self.http = http or httpx.Client(
            timeout=config.timeout,
            headers={"User-Agent": "receipt-tracker/1.0", "Accept": "application/json"},
            limits=httpx.Limits(max_connections=20, max_keepalive_connections=10),
        )
        self._token: tuple[str, float] | None = None  # this process's copy: (access token, expires at)
        self.bulk_max = BULK_LOOKUP_MAX
        self._token_lock = threading.Lock()

    @classmethod
    def from_settings(cls, store: Store | None = None) -> GenesysCloudClient:
        config = Config.from_settings()
        return cls(config, limits_from_settings(config, store))

    def close(self) -> None:
        self.http.close()

    # --- OAuth ------------------------------------------------------------------------------------------

    @property
    def _token_key(self) -> str:
        return self.limits.key("oauth-token")

    def access_token(self) -> str:
        """A token valid for at least another minute: this process's copy, the shared one, or a new one."""
        try:
            return self._access_token()
        except _Retryable as exc:
            raise exc.error from None

    def _access_token(self) -> str:
        now = time.time()
        if self._token and self._token[1] - TOKEN_REFRESH_MARGIN > now:
            return self._token[0]
        with self._token_lock:
            shared = self._shared_token()
            if shared:
                return shared
            return self._refresh_token(stale=self._token[0] if self._token else None)

    def _shared_token(self) -> str | None:
        cached = self.limits.store.get(self._token_key)
        if not cached:
            return None
        data = json.loads(cached)
        if data["expires_at"] - TOKEN_REFRESH_MARGIN <= time.time():
            return None
        self._token = (data["access_token"], data["expires_at"])
        return data["access_token"]

    def _refresh_token(self, stale: str | None) -> str:
        """Fetch a token, one process at a time; a token another process fetched meanwhile is used instead."""
        lock = self.limits.key("oauth-lock")
        deadline = time.monotonic() + self.config.timeout + 5
        while True:
            holder = self.limits.store.acquire_lock(lock, ttl=self.config.timeout + 5)
            if holder:
                break
            if time.monotonic() > deadline:
                holder = None
                break  # the holder is stuck: fetch one ourselves rather than wait for ever
            self.sleep(0.05)
            shared = self._shared_token()
            if shared and shared != stale:
                return shared
        try:
            shared = self._shared_token()
            if shared and shared != stale:
                return shared
            return self._fetch_token()
        finally:
            if holder:
                self.limits.store.release_lock(lock, holder)

    def _fetch_token(self) -> str:
        try:
            self.limits.allow()
        except CircuitOpenError as exc:
            raise GenesysCloudUnavailable(None, "circuit.open", str(exc), retry_after=exc.retry_in) from None
        try:
            response = self.http.post(
                f"{self.config.login_url}/oauth/token",
                data={"grant_type": "client_credentials"},
                auth=(self.config.client_id, self.config.client_secret),
                headers={"Content-Type": "application/x-www-form-urlencoded"},
            )
        except httpx.HTTPError as exc:
            self.limits.record(success=False)
            error: GenesysCloudError = GenesysCloudUnavailable(
                None, "transport", f"token request failed: {type(exc).__name__}"
            )
            raise _Retryable(error) from exc
        self.limits.count("token_requests")
        if response.status_code == 429:  # the login service's own limit: wait, but do not pause the API's bucket
            error = error_from(response)
            raise _Retryable(error, (error.retry_after or 1.0) + jitter(error.retry_after))
        if response.status_code >= 500:
            self.limits.record(success=False)
            raise _Retryable(error_from(response))
        self.limits.record(success=True)
        if response.status_code != 200:
            error = error_from(response)
            raise GenesysCloudAuthError(error.status, error.code, error.message, error.context_id)
        body = response.json()
        token = str(body["access_token"])
        lifetime = float(body["expires_in"]) if body.get("expires_in") is not None else DEFAULT_TOKEN_LIFETIME
        expires_at = time.time() + lifetime
        self.limits.store.set(
            self._token_key,
            json.dumps({"access_token": token, "expires_at": expires_at}),
            ttl=max(1.0, lifetime - TOKEN_REFRESH_MARGIN),
        )
        self._token = (token, expires_at)
        log.info("Genesys Cloud token fetched; valid for %d s", lifetime)
        return token

    def _drop_token(self, token: str) -> None:
        """The API refused this token (401): forget it here and, if it is still the shared one, there too."""
        if self._token and self._token[0] == token:
            self._token = None
        cached = self.limits.store.get(self._token_key)
        if cached and json.loads(cached).get("access_token") == token:
            self.limits.store.delete(self._token_key)

    # --- one request ------------------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
        max_wait: float | None = None,
    ) -> Any:
        """One API call with the shared limits, retries and the 401 refresh. Answers the decoded JSON body."""
        budget = self.config.max_wait if max_wait is None else max_wait
        started = time.monotonic()

        def should_retry(exc: BaseException) -> bool:
            if not isinstance(exc, _Retryable):
                return False
            return time.monotonic() - started + (exc.wait or 0.0) <= budget

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.wait is not None:
                return exc.wait
            return backoff_with_jitter(state.attempt_number)

        retrying = Retrying(
            stop=stop_after_attempt(MAX_ATTEMPTS),
            retry=retry_if_exception(should_retry),
            wait=wait,
            sleep=self.sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt:
                    remaining = max(0.0, budget - (time.monotonic() - started))
                    return self._attempt(method, path, json_body, params, idempotent, remaining)
        except _Retryable as exc:
            raise exc.error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, method: str, path: str, json_body: Any, params: dict[str, Any] | None, idempotent: bool, max_wait: float
    ) -> Any:
        refreshed = False
        while True:
            token = self._access_token()
            response = self._send(method, path, json_body, params, token, max_wait, idempotent)
            if response.status_code == 401 and not refreshed:
                # Revoked or expired early: one new token, one more try.
                self.limits.count("token_refused")
                self._drop_token(token)
                refreshed = True
                continue
            return self._answer(response, idempotent)

    def _send(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: dict[str, Any] | None,
        token: str,
        max_wait: float,
        idempotent: bool,
    ) -> httpx.Response:
        try:
            self.limits.allow()
        except CircuitOpenError as exc:
            raise GenesysCloudUnavailable(None, "circuit.open", str(exc), retry_after=exc.retry_in) from None
        try:
            self.limits.acquire(max_wait)
        except RateLimitWait as exc:
            raise GenesysCloudUnavailable(None, "ratelimit.budget", str(exc), retry_after=exc.wait) from None
        try:
            response = self.http.request(
                method,
                f"{self.config.api_url}{path}",
                json=json_body,
                params=params,
                headers={"Authorization": f"Bearer {token}"},
            )
        except httpx.HTTPError as exc:
            self.limits.record(success=False)
            self.limits.count("requests_transport_error")
            error = GenesysCloudUnavailable(None, "transport", f"{method} {path}: {type(exc).__name__}")
            if idempotent:
                raise _Retryable(error) from exc
            raise error from exc
        self._read_rate_headers(response)
        return response

    def _answer(self, response: httpx.Response, idempotent: bool) -> Any:
        status = response.status_code
        if status == 429:
            self.limits.count("requests_rate_limited")
            error = error_from(response)
            wait = (error.retry_after if error.retry_after is not None else 1.0) + jitter(error.retry_after)
            self.limits.pause(wait)  # every worker waits, not only this one
            log.warning("Genesys Cloud answered 429; every worker pauses %.1fs", wait)
            raise _Retryable(error, wait)
        if status >= 500:
            self.limits.record(success=False)
            self.limits.count("requests_server_error")
            error = error_from(response)
            if idempotent and status in (500, 502, 503, 504):
                raise _Retryable(error, error.retry_after)
            raise error
        self.limits.record(success=True)
        if status >= 400:
            self.limits.count("requests_client_error")
            raise error_from(response)
        self.limits.count("requests_ok")
        if status == 204 or not response.content:
            return None
        return response.json()

    def _read_rate_headers(self, response: httpx.Response) -> None:
        allowed = response.headers.get("inin-ratelimit-allowed")
        count = response.headers.get("inin-ratelimit-count")
        reset = response.headers.get("inin-ratelimit-reset")
        if not (allowed and count):
            return
        self.limits.note({"ratelimit_allowed": allowed, "ratelimit_count": count, "ratelimit_reset": reset or ""})
        try:
            if int(count) >= int(allowed) and reset:
                self.limits.pause(min(float(reset), 120.0))
        except ValueError:
            return

    # --- message status ---------------------------------------------------------------------------------

    def message_details(self, message_id: str) -> MessageData:
        """GET /api/v2/conversations/messages/{messageId}/details."""
        body = self.request("GET", f"/api/v2/conversations/messages/{quote(message_id, safe='')}/details")
        return MessageData.from_json(body)

    def messages_bulk(self, conversation_id: str, message_ids: list[str]) -> list[MessageData]:
        """POST /api/v2/conversations/messages/{conversationId}/messages/bulk, 1000 ids a request."""
        found: list[MessageData] = []
        path = f"/api/v2/conversations/messages/{quote(conversation_id, safe='')}/messages/bulk"
        for start in range(0, len(message_ids), self.bulk_max):
            chunk = message_ids[start : start + self.bulk_max]
            body = self.request("POST", path, json_body=chunk)
            entities = body.get("entities") if isinstance(body, dict) else body
            found += [MessageData.from_json(e) for e in entities or [] if isinstance(e, dict)]
        return found

    def analytics_conversation(self, conversation_id: str) -> AnalyticsConversation:
        """GET /api/v2/analytics/conversations/{conversationId}/details (AnalyticsConversationWithoutAttributes,
        permission ``analytics:conversationDetail:view``): an email's status, ``sessions[].deliveryStatus``
        ("The email or SMS delivery status"). The messaging endpoints know messages only: an email id answers 404
        there."""
        body = self.request("GET", f"/api/v2/analytics/conversations/{quote(conversation_id, safe='')}/details")
        return AnalyticsConversation.from_json(body if isinstance(body, dict) else {})

    # --- analytics conversation details jobs ------------------------------------------------------------

    def submit_conversation_details_job(self, query: dict[str, Any]) -> str:
        """POST /api/v2/analytics/conversations/details/jobs (AsyncConversationQuery) -> jobId."""
        body = self.request("POST", "/api/v2/analytics/conversations/details/jobs", json_body=query)
        return str(body["jobId"])

    def conversation_details_job_status(self, job_id: str) -> AsyncJobStatus:
        body = self.request("GET", f"/api/v2/analytics/conversations/details/jobs/{quote(job_id, safe='')}")
        return AsyncJobStatus.from_json(body)

    def conversation_details_job_results(
        self, job_id: str, cursor: str = "", page_size: int = 1000
    ) -> ConversationPage:
        params: dict[str, Any] = {"pageSize": page_size}
        if cursor:
            params["cursor"] = cursor
        path = f"/api/v2/analytics/conversations/details/jobs/{quote(job_id, safe='')}/results"
        return ConversationPage.from_json(self.request("GET", path, params=params))

    def delete_conversation_details_job(self, job_id: str) -> None:
        self.request("DELETE", f"/api/v2/analytics/conversations/details/jobs/{quote(job_id, safe='')}")

    def conversation_details(
        self,
        query: dict[str, Any],
        *,
        page_size: int = 1000,
        poll_interval: float = 2.0,
        timeout: float = 240.0,
    ) -> Iterator[ConversationPage]:
        """Submit a job, wait for it, then page its results with the cursor; the job is deleted at the end."""
        job_id = self.submit_conversation_details_job(query)
        try:
            deadline = time.monotonic() + timeout
            while True:
                status = self.conversation_details_job_status(job_id)
                if status.state == JOB_DONE:
                    break
                if status.state not in JOB_RUNNING:
                    raise GenesysCloudJobFailed(None, f"job.{status.state.lower()}", status.error_message or job_id)
                if time.monotonic() > deadline:
                    raise GenesysCloudJobFailed(None, "job.timeout", f"job {job_id} still {status.state}")
                self.sleep(poll_interval)
            cursor = ""
            while True:
                page = self.conversation_details_job_results(job_id, cursor, page_size)
                yield page
                if not page.cursor or page.cursor == cursor:
                    return
                cursor = page.cursor
        finally:
            try:
                self.delete_conversation_details_job(job_id)
            except GenesysCloudError as exc:  # frees the org's job slot; a failure here costs nothing else
                log.info("could not delete analytics job %s: %s", job_id, exc)

    # --- send (agentless) -------------------------------------------------------------------------------

    def send_sms(
        self,
        from_address: str,
        to_address: str,
        text_body: str,
        *,
        messenger_type: str = "sms",
        use_existing_conversation: bool = False,
        external_contact_id: str = "",
        max_wait: float | None = None,
    ) -> AgentlessSendResult:
        """POST /api/v2/conversations/messages/agentless. Never retried on 5xx: a retry could send twice.
        ``use_existing_conversation``: the message joins the contact's active conversation (threading)."""
        if len(text_body) > SMS_MAX_LENGTH:
            raise ValueError(f"textBody is {len(text_body)} characters; Genesys Cloud takes at most {SMS_MAX_LENGTH}")
        body: dict[str, Any] = {
            "fromAddress": from_address,
            "toAddress": to_address,
            "toAddressMessengerType": messenger_type,
            "textBody": text_body,
        }
        if use_existing_conversation:
            body["useExistingActiveConversation"] = True
        if external_contact_id:
            body["externalContactId"] = external_contact_id
        answer = self.request(
            "POST", "/api/v2/conversations/messages/agentless", json_body=body, idempotent=False, max_wait=max_wait
        )
        return AgentlessSendResult.from_json(answer)

    def send_email(
        self,
        from_address: str,
        to_address: str,
        subject: str,
        *,
        text_body: str = "",
        html_body: str = "",
        from_name: str = "",
        reply_to: str = "",
        max_wait: float | None = None,
    ) -> EmailSendResult:
        """POST /api/v2/conversations/emails/agentless (AgentlessEmailSendRequestDto). A subject over 400 characters
        or a display name over 64 is refused here, before anything leaves (ValueError), as Genesys Cloud would."""
        if len(subject) > EMAIL_SUBJECT_MAX_LENGTH:
            raise ValueError(
                f"the subject is {len(subject)} characters; Genesys Cloud agentless email takes at most "
                f"{EMAIL_SUBJECT_MAX_LENGTH}"
            )
        if len(from_name) > EMAIL_NAME_MAX_LENGTH:
            raise ValueError(
                f"the sender name is {len(from_name)} characters; Genesys Cloud takes at most {EMAIL_NAME_MAX_LENGTH}"
            )
        body: dict[str, Any] = {
            "senderType": "Outbound",
            "fromAddress": {"email": from_address, **({"name": from_name} if from_name else {})},
            "toAddresses": [{"email": to_address}],
            "subject": subject,
        }
        if text_body:
            body["textBody"] = text_body
        if html_body:
            body["htmlBody"] = html_body
        if reply_to:
            body["replyToAddress"] = {"email": reply_to}
        answer = self.request(
            "POST", "/api/v2/conversations/emails/agentless", json_body=body, idempotent=False, max_wait=max_wait
        )
        return EmailSendResult.from_json(answer)


def jitter(base: float | None) -> float:
    """Spread the workers a 429 stopped together, so that they do not all come back in the same instant."""
    return random.uniform(0, max(0.25, 0.2 * (base or 1.0)))


def backoff_with_jitter(attempt: int, base: float = 0.5, cap: float = 8.0) -> float:
    return random.uniform(0, min(cap, base * 2**attempt))


_clients: dict[tuple[int, Config], GenesysCloudClient] = {}
_clients_lock = threading.Lock()


def client() -> GenesysCloudClient:
    """This process's client, built from settings (one connection pool per process)."""
    config = Config.from_settings()
    key = (os.getpid(), config)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = GenesysCloudClient(config, limits_from_settings(config))
        return _clients[key]
