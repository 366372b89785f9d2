"""Salesforce: OAuth 2.0 client credentials, then upserts through sObject Collections by an external id field.

- Token: ``POST SALESFORCE_TOKEN_URL`` (the org's My Domain ``/services/oauth2/token``) with
  ``grant_type=client_credentials``, the connected app's client id and secret. The answer names the
  ``instance_url`` the API calls go to. The token is kept per process and fetched again once on a 401.
- Upsert: ``PATCH {instance_url}/services/data/v{SALESFORCE_API_VERSION}/composite/sobjects/{SALESFORCE_SOBJECT}/
  {SALESFORCE_EXTERNAL_ID_FIELD}`` with ``{"allOrNone": false, "records": [...]}``, at most 200 records a
  request, one record per CRM record id (Salesforce refuses an external id twice in one request), its fields from
  ``CRM_FIELD_MAP`` applied over the record's changes oldest first. The answer has one result per record, in
  order: each record succeeds or fails on its own.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from crm_sync.adapters.base import Entry, Fence, Result, describe, http_client, retry_after_seconds
from crm_sync.adapters.field_map import field_map, fields_for

log = logging.getLogger(__name__)

MAX_RECORDS = 200  # sObject Collections' limit per request
# Per-record errors that pass: the record is locked by another transaction, the server is busy. Every other code
# (INVALID_FIELD, DUPLICATE_VALUE, REQUIRED_FIELD_MISSING, INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST,
# FIELD_CUSTOM_VALIDATION_EXCEPTION, ENTITY_IS_DELETED, ...) says something about the record or the field map
# that sending again cannot change: the change is dead at once, its reason shown to the operator.
RETRYABLE_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED", "UNKNOWN_EXCEPTION"}
# The org's daily API limit: 403 REQUEST_LIMIT_EXCEEDED. The limit is a rolling 24 hours; nothing says when it
# frees up, so the relay pauses at least this long (and longer after each refused probe).
LIMIT_PAUSE_SECONDS = 3600.0


@dataclass(frozen=True)
class Token:
    access_token: str
    instance_url: str


_tokens: dict[tuple[str, str], Token] = {}
_tokens_lock = threading.Lock()


class TokenError(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class SalesforceAdapter:
    name = "salesforce"

    def __init__(self) -> None:
        self.token_url = settings.SALESFORCE_TOKEN_URL
        self.client_id = settings.SALESFORCE_CLIENT_ID
        self.client_secret = settings.SALESFORCE_CLIENT_SECRET
        self.sobject = settings.SALESFORCE_SOBJECT
        self.external_id = settings.SALESFORCE_EXTERNAL_ID_FIELD
        self.api_version = settings.SALESFORCE_API_VERSION.removeprefix("v")
        self.batch_size = min(settings.SALESFORCE_BATCH_SIZE, MAX_RECORDS)
        self.field_map = field_map()
        self.client = http_client()
        self.usage = ""  # the last Sforce-Limit-Info seen

    def close(self) -> None:
        self.client.close()

    def read_usage(self, response: httpx.Response) -> None:
        """``Sforce-Limit-Info: api-usage=18/15000`` on every API answer: kept for the relay to record."""
        self.usage = response.headers.get("Sforce-Limit-Info", self.usage)

    # --- OAuth ---------------------------------------------------------------------------------------------

    def token(self, refresh: bool = False) -> Token:
        key = (self.token_url, self.client_id)
        with _tokens_lock:
            if not refresh and key in _tokens:
                return _tokens[key]
            _tokens.pop(key, None)
        data = {"grant_type": "client_credentials", "client_id": self.client_id, "client_secret": self.client_secret}
        response = self.client.post(self.token_url, data=data, headers={"Accept": "application/json"})
        if not response.is_success:
            retry_after = retry_after_seconds(response) if response.status_code in (429, 503) else None
            raise TokenError(f"token request failed: {describe(response)}", retry_after)
        body = response.json()
        token = Token(body["access_token"], body.get("instance_url") or self.token_url.split("/services/")[0])
        with _tokens_lock:
            _tokens[key] = token
        return token

    # --- upserts -------------------------------------------------------------------------------------------

    def send(self, entries: list[Entry], fence: Fence | None = None) -> list[Result]:
        # sObject Collections has no field for a fencing token and no conditional write: the fence is the relay's
        # side (docs/crm-sync.md, "One relay at a time"), and a Delivery_Sequence__c field mapped from
        # change.sequence lets a validation rule refuse an older state.
        results: list[Result | None] = [None] * len(entries)
        records: dict[str, list[int]] = {}
        for i, entry in enumerate(entries):
            if entry.crm_record_id:
                records.setdefault(entry.crm_record_id, []).append(i)
            else:
                results[i] = Result.skip("no crm_record_id: nothing to upsert in Salesforce")

        payloads: list[tuple[list[int], dict[str, Any]]] = []
        for record_id, indexes in records.items():
            changes = sorted((c for i in indexes for c in entries[i].changes), key=lambda c: c.sequence)
            fields = fields_for(changes, self.field_map)
            if not fields:
                for i in indexes:
                    results[i] = Result.skip("no field in CRM_FIELD_MAP applies to these changes")
                continue
            record = {"attributes": {"type": self.sobject}, **fields, self.external_id: record_id}
            payloads.append((indexes, record))

        for start in range(0, len(payloads), self.batch_size):
            chunk = payloads[start : start + self.batch_size]
            for (indexes, _), result in zip(chunk, self.upsert([record for _, record in chunk]), strict=True):
                for i in indexes:
                    results[i] = result
        return [r if r is not None else Result.failed("not sent") for r in results]

    def upsert(self, records: list[dict[str, Any]]) -> list[Result]:
        """One sObject Collections request; one result per record."""
        body = {"allOrNone": False, "records": records}
        try:
            response = None
            for refresh in (False, True):
                token = self.token(refresh=refresh)
                url = (
                    f"{token.instance_url}/services/data/v{self.api_version}"
                    f"/composite/sobjects/{self.sobject}/{self.external_id}"
                )
                response = self.client.patch(url, json=body, headers={"Authorization": f"Bearer {token.access_token}"})
                self.read_usage(response)
                if response.status_code != 401:
                    break
        except TokenError as exc:
            return [Result.failed(f"{type(exc).__name__}: {exc}", exc.retry_after)] * len(records)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            return [Result.failed(f"{type(exc).__name__}: {exc}")] * len(records)
        assert response is not None
        if response.status_code == 403 and "REQUEST_LIMIT_EXCEEDED" in response.text:
            log.error("Salesforce's API limit is used up (%s): CRM sync pauses", self.usage or "no Sforce-Limit-Info")
            return [Result.failed(describe(response), LIMIT_PAUSE_SECONDS)] * len(records)
        if not response.is_success:
            retry_after = retry_after_seconds(response) if response.status_code in (429, 503) else None
            return [Result.failed(describe(response), retry_after)] * len(records)
        try:
            answers = response.json()
        except ValueError:
            return [Result.failed(f"not JSON: {describe(response)}")] * len(records)
        if not isinstance(answers, list) or len(answers) != len(records):
            return [Result.failed(f"expected {len(records)} results: {describe(response)}")] * len(records)
        return [record_result(answer) for answer in answers]


def record_result(answer: dict[str, Any]) -> Result:
    if answer.get("success"):
        return Result.sent()
    errors = answer.get("errors") or [{"statusCode": "UNKNOWN_EXCEPTION", "message": "no error given"}]
    text = "; ".join(f"{e.get('statusCode')}: {e.get('message')}" for e in errors)
    permanent = not any(e.get("statusCode") in RETRYABLE_CODES for e in errors)
    return Result.failed(("permanent: " if permanent else "") + text, permanent=permanent)
