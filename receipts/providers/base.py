"""What every provider module shares: the webhook's side (check the caller, parse the body) and the sending side
(a ``Sender`` returns the provider's id for a message, or raises ``SendError``)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import httpx
from django.conf import settings
from django.http import HttpRequest

from receipts.db import check_json, check_text
from receipts.db import load_json as load_storable_json
from receipts.models import Message
from receipts.normalized import MalformedReceipt, NormalizedReceipt

log = logging.getLogger(__name__)

# Column sizes a receipt's fields end up in (ReceiptEvent.ref, Message.provider_message_id, Message.to).
MAX_ID = 255
MAX_ADDRESS = 320


class Unauthorized(Exception):
    """Bad or missing credentials: answer 401 and store nothing."""


@dataclass(frozen=True)
class Provider:
    """One provider's webhook: how callers prove who they are, and how its bodies read."""

    name: str
    # The headers that carry this provider's own credentials (a signature, a token).
    credential_headers: ClassVar[tuple[str, ...]] = ()

    def secrets(self) -> list[str]:
        raise NotImplementedError

    def verify_signature(self, request: HttpRequest, body: bytes, secrets: list[str]) -> bool | None:
        """True/False when the request carries this provider's signature, None when it carries none."""
        raise NotImplementedError

    def parse(self, body: bytes, content_type: str) -> list[NormalizedReceipt]:
        raise NotImplementedError

    def received(self, request: HttpRequest, body: bytes) -> tuple[bytes, str]:
        """The body and content type to store and parse: the request's own, unless a provider says otherwise."""
        return body, request.META.get("CONTENT_TYPE", "")

    def read(self, body: bytes, content_type: str) -> list[NormalizedReceipt]:
        """``parse``, answering MalformedReceipt for anything this body cannot be, whatever the bytes: the webhook
        answers 400 and keeps the body, and never accepts a receipt that processing could not store."""
        try:
            receipts = self.parse(body, content_type)
        except MalformedReceipt:
            raise
        except RecursionError as exc:
            raise MalformedReceipt("body is nested too deeply") from exc
        except (ValueError, TypeError, ArithmeticError, LookupError) as exc:
            # A shape the parser did not foresee: still the body's fault, and an operator should see it.
            log.warning("%s parser: %s on an unforeseen body", self.name, type(exc).__name__)
            raise MalformedReceipt(f"body could not be read: {type(exc).__name__}: {exc}"[:300]) from exc
        for receipt in receipts:
            check_storable(receipt)
        return receipts

    def offers_credentials(self, request: HttpRequest) -> bool:
        """Whether the request carries anything that could prove its caller, judged before its body is read: a
        caller offering nothing is refused at once, so one that announces a body and never sends it holds no
        thread. (With nothing configured, ``authenticate`` decides, as DEBUG allows.)"""
        if not self.secrets() and not settings.WEBHOOK_BASIC_AUTH:
            return True
        if request.headers.get("Authorization", "").lower().startswith("basic "):
            return True
        return any(request.headers.get(header) for header in self.credential_headers)

    def authenticate(self, request: HttpRequest, body: bytes) -> None:
        secrets = self.secrets()
        basic = settings.WEBHOOK_BASIC_AUTH
        if not secrets and not basic:
            if settings.DEBUG:
                return
            raise Unauthorized(f"no webhook secret is configured for {self.name}; refusing (DEBUG is off)")
        signed = self.verify_signature(request, body, secrets) if secrets else None
        if signed is False:
            raise Unauthorized("signature does not match")
        if signed or basic_auth_ok(request, basic):
            return
        raise Unauthorized("missing or invalid credentials")


def basic_auth_ok(request: HttpRequest, accepted: list[str]) -> bool:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not accepted:
        return False
    try:
        given = base64.b64decode(value.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    # Compare against every entry (rotation) without stopping early.
    return any([hmac.compare_digest(given.encode(), entry.encode()) for entry in accepted])


DIGESTS = {"sha256": hashlib.sha256, "sha512": hashlib.sha512}


def hmac_signature_ok(header: str, body: bytes, secrets: list[str], *, bare: bool = False) -> bool:
    """An HMAC of the raw body against any configured secret: ``sha256=`` or ``sha512=``, then the digest in hex
    or in base64 (Genesys Cloud documents ``sha256=<base64>``, other senders use hex). With ``bare``, a digest
    with no prefix is read too, its algorithm told by its length (Webex Connect documents bare hex)."""
    value = header.strip()
    algorithm, prefixed, rest = value.partition("=")
    if prefixed and algorithm.lower() in DIGESTS:
        candidates = [(DIGESTS[algorithm.lower()], rest)]
    elif bare:
        candidates = [(digest, value) for digest in DIGESTS.values()]
    else:
        return False
    for digest, given in candidates:
        offered = decode_digest(given, digest().digest_size)
        if offered is None:
            continue
        expected = [hmac.new(s.encode(), body, digest).digest() for s in secrets]
        if any([hmac.compare_digest(offered, e) for e in expected]):
            return True
    return False


def b64decode_unpadded(text: str, altchars: bytes | None = None) -> bytes:
    """Strict base64, its padding optional (senders and secrets leave it off); ValueError if it is not base64."""
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=altchars, validate=True)


def decode_digest(text: str, size: int) -> bytes | None:
    """A digest of ``size`` bytes written in hex or in base64 (standard or URL-safe, padded or not), else None."""
    text = text.strip()
    if len(text) == 2 * size:
        try:
            return bytes.fromhex(text)
        except ValueError:
            pass
    try:
        raw = b64decode_unpadded(text, altchars=b"-_" if "-" in text or "_" in text else None)
    except ValueError:  # binascii.Error, or a header with characters base64 has no use for
        return None
    return raw if len(raw) == size else None


def load_json(body: bytes) -> Any:
    """The body as JSON: UTF-8 only (what we store is what we parse again), and only what a JSON column can store
    (``receipts.db.load_json``: finite numbers, no NUL or lone surrogate, at most 32 levels deep)."""
    if b"\x00" in body:
        raise MalformedReceipt("body holds NUL bytes: not UTF-8 JSON (UTF-16?)")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedReceipt("body is not UTF-8") from exc
    try:
        return load_storable_json(text)
    except json.JSONDecodeError as exc:
        raise MalformedReceipt(f"body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    except ValueError as exc:
        raise MalformedReceipt(f"body is not valid JSON: {exc}") from exc


def check_storable(receipt: NormalizedReceipt) -> None:
    """What processing writes of a receipt fits its columns: PostgreSQL takes no NUL in text or JSON, no lone
    surrogate, no NaN in JSON, and no id longer than its column."""
    try:
        check_text(receipt.provider_message_id, "the message id", MAX_ID)
        check_text(receipt.to, "the recipient", MAX_ADDRESS)
        check_text(receipt.address, "the address", MAX_ADDRESS)
        check_text(receipt.provider_code, "the provider code")
        check_text(receipt.description, "the description")
        check_text(receipt.channel, "the channel")
        check_json(receipt.details, "the receipt's details")
        check_json(receipt.raw, "the receipt")
    except ValueError as exc:
        raise MalformedReceipt(str(exc)) from exc


def require(obj: dict[str, Any], field: str, where: str = "body") -> Any:
    value = obj.get(field)
    if value in (None, ""):
        raise MalformedReceipt(f"{where} has no '{field}'")
    return value


def identifier(obj: dict[str, Any], field: str, where: str = "body", required: bool = True) -> str:
    """An id field: a string or a number, never an object or a list."""
    value = obj.get(field)
    if value in (None, ""):
        if required:
            raise MalformedReceipt(f"{where} has no '{field}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise MalformedReceipt(f"'{field}' in {where} must be a string, got {type(value).__name__}")
    return str(value)


def text(value: Any) -> str:
    return "" if value is None else str(value)


# --- sending --------------------------------------------------------------------------------------------

HTTP_TIMEOUT = httpx.Timeout(10.0, connect=3.0)
_http: tuple[int, httpx.Client] | None = None


def http_client() -> httpx.Client:
    """One client per process for the senders: kept-alive connections, and the TLS context built once (building
    it took 20 ms a message, more than the rest of a send). A forked worker makes its own."""
    global _http
    if _http is None or _http[0] != os.getpid():
        _http = (os.getpid(), httpx.Client(timeout=HTTP_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=10)))
    return _http[1]


class SendError(Exception):
    """The provider refused or could not be reached.

    ``transient``: trying again later can work. ``may_have_sent``: the request may have reached the provider and
    been taken (a timeout once it was out, a 500/502/504 from a gateway), so sending again could send twice; a
    connection refused, a 429 or a 503 say nothing was taken. ``retry_after``: the provider's own wait, seconds.
    ``throttled``: the provider is well and asks us to slow down (a 429, or a throttling code in the answer's body
    whatever its status: SMS Aggregation's result 6, Webex Connect's 7020); nothing was taken, and it is no failure.
    """

    def __init__(
        self,
        message: str,
        *,
        transient: bool = False,
        may_have_sent: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
        held: bool = False,
        throttled: bool = False,
    ) -> None:
        super().__init__(message)
        self.held = held  # refused by our own limits (budget, breaker) before anything left
        self.transient = transient
        self.may_have_sent = may_have_sent
        self.retry_after = retry_after
        self.status = status  # the provider's HTTP status, when it answered
        self.throttled = throttled or status == 429


class Sender(Protocol):
    def send(self, message: Message) -> str:
        """Send ``message`` (unsaved: channel, provider, to, content, ...) and return the provider's id for it.
        Raise SendError when it was not sent."""
        ...


def content_of(message: Message) -> dict[str, str]:
    content = message.content or {}
    if not content.get("text"):
        raise SendError("the message has no text to send")
    return content


# Answers that say the provider did not take the request: sending again cannot send twice.
NOT_TAKEN = frozenset({429, 503})


def raise_for(response: httpx.Response, provider: str) -> None:
    if response.status_code < 400:
        return
    status = response.status_code
    raise SendError(
        f"{provider} answered {status}: {response.text[:200]}",
        transient=status == 429 or status >= 500,
        may_have_sent=status >= 500 and status not in NOT_TAKEN,
        retry_after=retry_after_of(response),
        status=status,
    )


def throttle_error(provider: str, response: httpx.Response, what: str) -> SendError:
    """The provider asked us to slow down (``what`` it said): nothing was taken; try again after its wait."""
    return SendError(
        f"{provider} throttled the send: {what}",
        transient=True,
        throttled=True,
        retry_after=retry_after_of(response),
        status=response.status_code,
    )


def transport_error(provider: str, exc: httpx.HTTPError) -> SendError:
    """A request that got no answer: before it left (nothing sent) or after (maybe sent)."""
    left = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))
    return SendError(f"{provider} unreachable: {type(exc).__name__}", transient=True, may_have_sent=left)


def retry_after_of(response: httpx.Response) -> float | None:
    """``Retry-After`` in seconds (the HTTP-date form is not used by these providers: read as absent)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


# --- what a provider is -----------------------------------------------------------------------------------

# What a provider's answer to a send means (its answer-code tables say which code means which).
TAKEN = "taken"  # the provider has the message (sent)
REFUSED = "refused"  # refused for good: failed, with the provider's reason
THROTTLED = "throttled"  # not taken: try again after a wait; no failure
UNKNOWN = "unknown"  # taken or not, we cannot tell: as a 5xx


@dataclass(frozen=True)
class Capabilities:
    """What one provider is and does, declared once on its module (as django-anymail keeps one class per service)
        and read by whoever needs it: the sender registry, campaigns' dispatch, throttle and checks, the webhook URLs.

        ``channels``: what it sends on (empty: it only receives). ``sender_settings``: per channel, the setting naming
        its default sender identity. ``numeric_sms_sender``: an SMS goes out from a number only (no alphanumeric sender
        id). ``idempotent_resend``: it takes our own message id and answers a repeat as the first, so a send whose
        outcome is unknown may go again. ``own_breaker``: campaigns keep its circuit breaker (a provider whose client
        has one says False). ``credentials``: the settings without which its built-in sender cannot work.
        ``webhook``: the path segment of its webhook (``/webhooks/<webhook>/``). ``answer_codes``: the codes its send
        answers carry, and what each means (TAKEN, REFUSED, THROTTLED, UNKNOWN); a code not listed is read by the HTTP
        status. ``pollable``: its status can be asked for (the polling tiers). ``email_subject_max``: the longest email
    subject it takes. ``sender``: its built-in sender class.
    """

    name: str
    webhook: str
    channels: frozenset[str] = frozenset()
    sender_settings: Mapping[str, str] = field(default_factory=dict)
    numeric_sms_sender: bool = False
    idempotent_resend: bool = False
    own_breaker: bool = False
    credentials: tuple[str, ...] = ()
    answer_codes: Mapping[str, str] = field(default_factory=dict)
    pollable: bool = False
    email_subject_max: int = 0  # characters an email subject may have (0: no limit known)
    sender: type | None = None

    @property
    def send_rate_setting(self) -> str:
        """The setting of its send rate (sends a second, 0: no limit of ours)."""
        return f"SEND_RATE_{self.name.upper()}"

    def default_sender(self, channel: str) -> str:
        name = self.sender_settings.get(channel)
        return str(getattr(settings, name, "") or "") if name else ""

    def configured(self) -> bool:
        """Its built-in sender has what it needs."""
        return self.sender is not None and all(getattr(settings, name, "") for name in self.credentials)
