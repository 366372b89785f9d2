"""Any CRM that takes a signed JSON batch: ``POST CRM_URL``.

Headers: ``Idempotency-Key`` (a hash of every change key in the batch, so a retry of the same batch carries the
same key), ``X-Signature-256: sha256=<hex HMAC-SHA256 of the raw body with CRM_SIGNING_SECRET>``. The body::

    {"batch_id": "<the Idempotency-Key>", "sent_at": "...", "lease": "relay", "fencing_token": 1765130000123,
     "changes": [
        {"idempotency_key": "chg_...", "sequence": 42, "kind": "status_changed", "occurred_at": "...",
         "crm_record_id": "003...", "message_id": 7, "payload": {...}, "state": {...},
         "history": [{"idempotency_key": "chg_...", "sequence": 40, "kind": ..., "occurred_at": ..., "payload": ...}]}
    ]}

A 2xx answer accepts the whole batch. The CRM should apply each change key once (a change can come again after
a relay crash, always with the same key) and may use ``sequence`` (rising per record in the order sent, whatever
the commit order) to drop a state older than one it has. It should refuse (409) a batch whose ``fencing_token`` is
below one it has already applied for that ``lease``: such a batch comes from a relay that lost its lease while it
was stalled, and a newer relay has already sent its changes, and newer ones.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from crm_sync.adapters.base import Entry, Fence, Result, describe, http_client, json_encoder, retry_after_seconds

SIGNATURE_HEADER = "X-Signature-256"


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def batch_key(entries: list[Entry]) -> str:
    digest = hashlib.sha256()
    for entry in entries:
        for key in entry.keys:
            digest.update(key.encode() + b"\n")
    return f"batch_{digest.hexdigest()[:40]}"


def encode_batch(entries: list[Entry], fence: Fence | None = None) -> tuple[str, bytes]:
    key = batch_key(entries)
    body: dict[str, Any] = {"batch_id": key, "sent_at": timezone.now().isoformat()}
    if fence is not None:
        body.update(lease=fence.lease, fencing_token=fence.token)
    body["changes"] = [e.as_json() for e in entries]
    return key, json.dumps(body, cls=json_encoder, separators=(",", ":")).encode()


class GenericAdapter:
    name = "generic"

    def __init__(self, url: str | None = None, secret: str | None = None) -> None:
        self.url = url or settings.CRM_URL
        self.secret = settings.CRM_SIGNING_SECRET if secret is None else secret
        self.client = http_client()

    def close(self) -> None:
        self.client.close()

    def send(self, entries: list[Entry], fence: Fence | None = None) -> list[Result]:
        if not entries:
            return []
        key, body = encode_batch(entries, fence)
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            SIGNATURE_HEADER: sign(body, self.secret),
        }
        try:
            response = self.client.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return [Result.failed(f"{type(exc).__name__}: {exc}")] * len(entries)
        if response.is_success:
            return [Result.sent()] * len(entries)
        retry_after = retry_after_seconds(response) if response.status_code in (429, 503) else None
        return [Result.failed(describe(response), retry_after)] * len(entries)
