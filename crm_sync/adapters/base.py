"""What the relay hands a CRM adapter, and what it gets back.

The relay claims outbox rows and coalesces them into ``Entry``s: one per message (or per stream for changes with
no message), the latest state in front and the earlier changes riding along as history. An adapter sends a list
of entries, with the batch's ``Fence`` where its protocol can carry one, and answers one ``Result`` per entry, in
order. It never touches the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder

USER_AGENT = "receipt-tracker-crm-sync/1"
json_encoder = DjangoJSONEncoder


@dataclass(frozen=True)
class Change:
    """One outbox row as the CRM sees it."""

    row_id: int
    sequence: int
    idempotency_key: str
    kind: str
    crm_record_id: str
    message_id: int | None
    stream: str
    occurred_at: datetime
    payload: dict[str, Any]

    def as_json(self) -> dict[str, Any]:
        return {
            "idempotency_key": self.idempotency_key,
            "sequence": self.sequence,
            "kind": self.kind,
            "occurred_at": self.occurred_at.isoformat(),
            "payload": self.payload,
        }


@dataclass
class Entry:
    """The changes of one message (or one stream) in one batch, oldest first."""

    stream: str
    subject: str
    changes: list[Change] = field(default_factory=list)

    @property
    def latest(self) -> Change:
        return self.changes[-1]

    @property
    def crm_record_id(self) -> str:
        return self.latest.crm_record_id

    @property
    def row_ids(self) -> list[int]:
        return [c.row_id for c in self.changes]

    @property
    def keys(self) -> list[str]:
        return [c.idempotency_key for c in self.changes]

    def state(self) -> dict[str, Any]:
        """Every payload laid over the one before: the latest value of every field any change carried."""
        merged: dict[str, Any] = {}
        for change in self.changes:
            merged.update(change.payload)
        return merged

    def as_json(self) -> dict[str, Any]:
        latest = self.latest
        return {
            **latest.as_json(),
            "crm_record_id": latest.crm_record_id,
            "message_id": latest.message_id,
            "state": self.state(),
            "history": [c.as_json() for c in self.changes[:-1]],
        }


@dataclass(frozen=True)
class Fence:
    """The relay lease a batch was claimed under and the token its holder drew (higher at every taking). A CRM that
    refuses a batch whose token is below one it has applied for that lease never applies a stale relay's batch."""

    lease: str
    token: int


@dataclass(frozen=True)
class Result:
    ok: bool
    error: str = ""
    # Seconds the CRM asked us to wait (Retry-After); the backoff is never shorter than this.
    retry_after: float | None = None
    skipped: bool = False
    # The CRM refused the change for good (a validation error, a bad field): sending it again cannot help.
    permanent: bool = False

    @classmethod
    def sent(cls) -> Result:
        return cls(ok=True)

    @classmethod
    def failed(cls, error: str, retry_after: float | None = None, permanent: bool = False) -> Result:
        return cls(ok=False, error=error[:2000], retry_after=retry_after, permanent=permanent)

    @classmethod
    def skip(cls, reason: str) -> Result:
        return cls(ok=True, error=reason, skipped=True)


class Adapter(Protocol):
    name: str

    def send(self, entries: list[Entry], fence: Fence | None = None) -> list[Result]: ...

    def close(self) -> None: ...


def coalesce(changes: list[Change]) -> list[Entry]:
    """Group changes by message (else stream), oldest first inside each entry.

    Entries are ordered by their latest change, so the states a CRM record goes through arrive in the order
    they happened; the older changes of a message ride along inside its entry as history.
    """
    entries: dict[tuple[str, str], Entry] = {}
    for change in sorted(changes, key=lambda c: c.sequence):
        subject = f"message:{change.message_id}" if change.message_id is not None else change.stream
        entry = entries.get((change.stream, subject))
        if entry is None:
            entry = entries[(change.stream, subject)] = Entry(change.stream, subject)
        entry.changes.append(change)
    return sorted(entries.values(), key=lambda e: e.latest.sequence)


def retry_after_seconds(response: httpx.Response, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (it may be a number of seconds or an HTTP date)."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def describe(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:500]}"


def http_client() -> httpx.Client:
    return httpx.Client(
        timeout=settings.CRM_TIMEOUT,
        headers={"User-Agent": USER_AGENT},
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
    )
