"""A fake CRM: a real HTTP server on 127.0.0.1 for the tests, the demo and the benchmark.

It implements

- the generic endpoint, ``POST /crm/changes``: checks ``X-Signature-256`` and ``Idempotency-Key``, records every
  change it accepts (history included) with the time it arrived, and refuses (409, nothing applied) a batch whose
  ``fencing_token`` is below one it has already applied for that batch's ``lease``, as the customer's CRM should;
- Salesforce's ``POST /services/oauth2/token`` (client credentials) and the sObject Collections upsert,
  ``PATCH /services/data/vXX.X/composite/sobjects/{SObject}/{ExternalIdField}`` (bearer token, at most 200
  records, one result per record, records kept by external id; ``guard_rising`` plays an org's validation rule
  that refuses to lower a field);

and injects faults: down (every request answers a status), the next N requests failing, a share of 429s with
``Retry-After``, latency, holding responses (the request is received and recorded, the answer waits: a relay
killed meanwhile never learns it was delivered), per-record Salesforce errors, expired tokens.

Use ``FakeCrm`` in-process (``with FakeCrm() as crm: ...``) or run ``manage.py fake_crm --port N`` and drive it
over HTTP: ``GET /_fake/summary``, ``GET /_fake/changes``, ``POST /_fake/faults``, ``POST /_fake/reset``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import re
import secrets
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

GENERIC_PATH = "/crm/changes"
TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a path, not a secret
SALESFORCE_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{3})?(?:Z|[+-]\d{4})$")
UPSERT_PATH = re.compile(r"^/services/data/v(\d+\.\d+)/composite/sobjects/(\w+)/(\w+)$")
MAX_RECORDS = 200


@dataclass
class ReceivedChange:
    key: str
    crm_record_id: str
    message_id: int | None
    sequence: int
    kind: str
    received_at: float
    batch_id: str
    history: bool  # it came in an entry's history, not as its latest change


@dataclass
class ReceivedRequest:
    method: str
    path: str
    status: int
    received_at: float
    idempotency_key: str = ""
    changes: int = 0


@dataclass
class Upsert:
    external_id: str
    fields: dict[str, Any]
    received_at: float


@dataclass
class Faults:
    down: int | None = None  # every CRM request answers this status
    fail_next: list[tuple[int, float | None]] = field(default_factory=list)
    retry_after: float | None = None  # sent with 429 and 503 from ``down``
    throttle_share: float = 0.0  # this share of requests answers 429
    throttle_retry_after: float = 1.0
    error_share: float = 0.0  # this share of requests answers 503
    latency: float = 0.0
    holding: bool = False
    rejected_records: dict[str, tuple[str, str]] = field(default_factory=dict)
    api_limit: int = 15000  # Salesforce's daily API request limit; each API call counts one


class FakeCrm:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        signing_secret: str = "fake-crm-signing-secret",  # noqa: S107 - a fake's well-known test secret
        client_id: str = "fake-client-id",
        client_secret: str = "fake-client-secret",  # noqa: S107
        seed: int = 7,
    ) -> None:
        self.signing_secret = signing_secret
        self.client_id = client_id
        self.client_secret = client_secret
        self.faults = Faults()
        self.lock = threading.Lock()
        self.released = threading.Event()
        self.released.set()
        self.rng = random.Random(seed)
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.server.crm = self  # type: ignore[attr-defined]
        self.thread: threading.Thread | None = None
        self.reset()

    # --- lifecycle -----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        # typeshed allows bytes for an AF_INET address; once bound, the server holds getsockname()'s str.
        return f"http://{cast(str, host)}:{port}"

    @property
    def generic_url(self) -> str:
        return self.url + GENERIC_PATH

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def start(self) -> FakeCrm:
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-crm", daemon=True
        )
        self.thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> FakeCrm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        with self.lock:
            self.faults = Faults()
            self.requests: list[ReceivedRequest] = []
            self.received: list[ReceivedChange] = []
            self.tokens: set[str] = set()
            self.records: dict[str, dict[str, Any]] = {}
            self.record_ids: dict[str, str] = {}
            self.upserts: list[Upsert] = []
            self.api_used = 0
            self.fences: dict[str, int] = {}  # per relay lease, the highest fencing token applied
            self.rising_field: str | None = None
        self.released.set()

    # --- faults --------------------------------------------------------------------------------------------

    def go_down(self, status: int = 503, retry_after: float | None = None) -> None:
        with self.lock:
            self.faults.down, self.faults.retry_after = status, retry_after

    def come_back(self) -> None:
        with self.lock:
            self.faults.down = None

    def fail_next(self, count: int, status: int = 503, retry_after: float | None = None) -> None:
        with self.lock:
            self.faults.fail_next.extend([(status, retry_after)] * count)

    def throttle(self, share: float, retry_after: float = 1.0) -> None:
        with self.lock:
            self.faults.throttle_share, self.faults.throttle_retry_after = share, retry_after

    def fail_share(self, share: float) -> None:
        """Answer this share of requests (chosen at random, seeded) with 503."""
        with self.lock:
            self.faults.error_share = share

    def set_latency(self, seconds: float) -> None:
        with self.lock:
            self.faults.latency = seconds

    def hold(self) -> None:
        """Record requests as they come but keep their answers until ``release``."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def reject_record(self, external_id: str, code: str = "ENTITY_IS_DELETED", message: str = "deleted") -> None:
        with self.lock:
            self.faults.rejected_records[external_id] = (code, message)

    def guard_rising(self, field_name: str) -> None:
        """Refuse a Salesforce record whose ``field_name`` is below the value the record holds, as a validation rule
        ``field_name < PRIORVALUE(field_name)`` would (FIELD_CUSTOM_VALIDATION_EXCEPTION), until ``reset``."""
        with self.lock:
            self.rising_field = field_name

    def use_up_api_limit(self) -> None:
        """Every later API call answers 403 REQUEST_LIMIT_EXCEEDED, as Salesforce does once the org's daily limit is
        spent, until ``reset``."""
        with self.lock:
            self.api_used = self.faults.api_limit

    def count_api_call(self) -> tuple[bool, str]:
        """One more API call: whether the limit allows it, and the ``Sforce-Limit-Info`` to answer with."""
        with self.lock:
            allowed = self.api_used < self.faults.api_limit
            self.api_used += 1 if allowed else 0
            return allowed, f"api-usage={self.api_used}/{self.faults.api_limit}"

    def expire_tokens(self) -> None:
        with self.lock:
            self.tokens.clear()

    # --- what it received ----------------------------------------------------------------------------------

    def changes(self) -> list[ReceivedChange]:
        with self.lock:
            return list(self.received)

    def key_counts(self) -> Counter:
        return Counter(c.key for c in self.changes())

    def wait_for(self, predicate: Any, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("the fake CRM did not see what was expected in time")
            time.sleep(0.02)

    def summary(self) -> dict[str, Any]:
        with self.lock:
            counts = Counter(c.key for c in self.received)
            return {
                "requests": len(self.requests),
                "by_status": dict(Counter(str(r.status) for r in self.requests)),
                "changes_received": len(self.received),
                "unique_keys": len(counts),
                "duplicated_keys": sum(1 for n in counts.values() if n > 1),
                "salesforce_records": len(self.records),
                "salesforce_upserts": len(self.upserts),
            }

    def in_order_per_record(self) -> dict[str, list[int]]:
        """Per CRM record, the changes that arrived out of order (empty when all is in order).

        In order means: the latest states of a record's entries arrive with rising sequence numbers, and each
        history item is older than the latest state it rides with. Only first arrivals count (a duplicate after
        a relay crash repeats what was already applied).
        """
        seen: set[str] = set()
        last: dict[str, int] = {}
        out_of_order: dict[str, list[int]] = defaultdict(list)
        changes = self.changes()
        for i, change in enumerate(changes):
            if change.key in seen:
                continue
            seen.add(change.key)
            record = change.crm_record_id
            if change.history:
                carrier = next(c for c in changes[i:] if not c.history and c.batch_id == change.batch_id)
                if change.sequence >= carrier.sequence:
                    out_of_order[record].append(change.sequence)
            else:
                if change.sequence < last.get(record, 0):
                    out_of_order[record].append(change.sequence)
                last[record] = max(change.sequence, last.get(record, 0))
        return dict(out_of_order)

    # --- the server side -----------------------------------------------------------------------------------

    def fault_for(self) -> tuple[int, float | None] | None:
        with self.lock:
            faults = self.faults
            if faults.down is not None:
                return faults.down, faults.retry_after
            if faults.fail_next:
                return faults.fail_next.pop(0)
            if faults.throttle_share and self.rng.random() < faults.throttle_share:
                return 429, faults.throttle_retry_after
            if faults.error_share and self.rng.random() < faults.error_share:
                return 503, None
            return None

    def note(self, request: ReceivedRequest) -> None:
        with self.lock:
            self.requests.append(request)

    def accept_batch(self, batch: dict[str, Any], key: str, at: float) -> tuple[int, int | None]:
        """Apply a batch: (changes applied, None), or (0, the token applied) for a batch fenced below it."""
        received = []
        for entry in batch.get("changes", []):
            record = entry.get("crm_record_id") or ""
            message_id = entry.get("message_id")
            for item, is_history in [*((h, True) for h in entry.get("history", [])), (entry, False)]:
                received.append(
                    ReceivedChange(
                        key=item["idempotency_key"],
                        crm_record_id=record,
                        message_id=message_id,
                        sequence=int(item.get("sequence") or 0),
                        kind=item.get("kind", ""),
                        received_at=at,
                        batch_id=key,
                        history=is_history,
                    )
                )
        token = batch.get("fencing_token")
        lease = str(batch.get("lease") or "")
        with self.lock:  # the check and the apply at once: two batches of one lease may arrive together
            if token is not None:
                applied = self.fences.get(lease)
                if applied is not None and int(token) < applied:
                    return 0, applied
                self.fences[lease] = int(token)
            self.received.extend(received)
        return len(received), None

    def lower_than_held(self, external_id: str, record: dict[str, Any]) -> bool:
        """The record would lower the guarded field (the caller holds the lock)."""
        if self.rising_field is None:
            return False
        held = self.records.get(external_id, {}).get(self.rising_field)
        new = record.get(self.rising_field)
        return isinstance(held, int | float) and isinstance(new, int | float) and new < held

    def issue_token(self) -> str:
        token = "00DFAKE!" + secrets.token_urlsafe(24)
        with self.lock:
            self.tokens.add(token)
        return token

    def token_valid(self, token: str) -> bool:
        with self.lock:
            return token in self.tokens

    def upsert(self, sobject: str, external_field: str, records: list[Any], at: float) -> list[dict[str, Any]]:
        results: list[dict[str, Any]] = []
        with self.lock:
            counts = Counter(r.get(external_field) for r in records if isinstance(r, dict))
            for record in records:
                external_id = record.get(external_field) if isinstance(record, dict) else None
                errors = []
                if not isinstance(record, dict) or (record.get("attributes") or {}).get("type") != sobject:
                    errors.append(("INVALID_TYPE", f"each record needs attributes.type {sobject}"))
                elif not external_id:
                    errors.append(("REQUIRED_FIELD_MISSING", f"{external_field} is required for upsert"))
                elif counts[external_id] > 1:
                    errors.append(("DUPLICATE_EXTERNAL_ID", f"{external_field} {external_id} appears twice"))
                elif external_id in self.faults.rejected_records:
                    errors.append(self.faults.rejected_records[external_id])
                elif self.lower_than_held(external_id, record):
                    errors.append(("FIELD_CUSTOM_VALIDATION_EXCEPTION", f"{self.rising_field} may not go down"))
                elif bad := [
                    k for k, v in record.items() if k.endswith("_At__c") and not SALESFORCE_DATETIME.match(str(v))
                ]:
                    # The fields our map fills with times are dateTime fields: Salesforce takes its documented
                    # forms only (yyyy-MM-ddTHH:mm:ss.SSS with Z or +HHmm), not microseconds or +00:00.
                    errors.append(("INVALID_TYPE_ON_FIELD_IN_RECORD", f"{bad[0]}: value not of required type"))
                if errors:
                    results.append(
                        {
                            "id": None,
                            "success": False,
                            "errors": [{"statusCode": c, "message": m, "fields": []} for c, m in errors],
                        }
                    )
                    continue
                assert external_id is not None  # a record without one got REQUIRED_FIELD_MISSING above
                fields = {k: v for k, v in record.items() if k not in ("attributes", external_field)}
                created = external_id not in self.records
                if created:
                    self.record_ids[external_id] = "003FAKE" + hashlib.sha256(external_id.encode()).hexdigest()[:11]
                self.records.setdefault(external_id, {}).update(fields)
                self.upserts.append(Upsert(external_id, fields, at))
                results.append({"id": self.record_ids[external_id], "success": True, "errors": [], "created": created})
        return results


def not_datetimes(record: dict[str, Any]) -> list[str]:
    """The dateTime fields our map fills (ours end _At__c; Contact's EmailBouncedDate) holding another form."""
    times = [k for k in record if k.endswith("_At__c") or k == "EmailBouncedDate"]
    return [k for k in times if record[k] is not None and not SALESFORCE_DATETIME.match(str(record[k]))]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeCRM/1"

    @property
    def crm(self) -> FakeCrm:
        return self.server.crm  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # --- plumbing ------------------------------------------------------------------------------------------

    def body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def answer(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the caller is gone (a killed relay)
            self.close_connection = True

    def injected(self, method: str, path: str) -> bool:
        """Answer with an injected fault, if one is due. True when it answered."""
        if self.crm.faults.latency:
            time.sleep(self.crm.faults.latency)
        fault = self.crm.fault_for()
        if fault is None:
            return False
        status, retry_after = fault
        self.crm.note(ReceivedRequest(method, path, status, time.time()))
        headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None and status in (429, 503) else {}
        self.answer(status, {"error": "injected fault", "status": status}, headers)
        return True

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/_fake/summary":
            self.answer(200, self.crm.summary())
        elif path == "/_fake/changes":
            self.answer(200, [asdict(c) for c in self.crm.changes()])
        elif path == "/_fake/records":
            with self.crm.lock:
                self.answer(200, self.crm.records)
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        body = self.body()
        if path.startswith("/_fake/"):
            self.control(path, body)
        elif path == GENERIC_PATH:
            self.generic(body)
        elif path == TOKEN_PATH:
            self.token(body)
        else:
            self.answer(404, {"error": "not found"})

    def do_PATCH(self) -> None:
        path = urlsplit(self.path).path
        body = self.body()
        match = UPSERT_PATH.match(path)
        if not match:
            self.answer(404, [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}])
            return
        self.salesforce_upsert(match.group(2), match.group(3), body)

    # --- endpoints -----------------------------------------------------------------------------------------

    def generic(self, body: bytes) -> None:
        if self.injected("POST", GENERIC_PATH):
            return
        now = time.time()
        key = self.headers.get("Idempotency-Key", "")
        status = 200
        if self.crm.signing_secret:
            expected = "sha256=" + hmac.new(self.crm.signing_secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(expected, self.headers.get("X-Signature-256", "")):
                status = 401
        if status == 200 and not key:
            status = 400
        try:
            batch = json.loads(body) if status == 200 else {}
        except ValueError:
            status, batch = 400, {}
        if status != 200:
            self.crm.note(ReceivedRequest("POST", GENERIC_PATH, status, now, key))
            self.answer(status, {"error": {401: "bad signature", 400: "bad request"}[status]})
            return
        accepted, applied = self.crm.accept_batch(batch, key, now)
        if applied is not None:  # a relay that lost its lease: a newer one has sent these changes, and newer ones
            self.crm.note(ReceivedRequest("POST", GENERIC_PATH, 409, now, key))
            self.answer(409, {"error": "stale fencing token", "applied_token": applied})
            return
        self.crm.note(ReceivedRequest("POST", GENERIC_PATH, 200, now, key, accepted))
        self.crm.released.wait()  # holding: the CRM has it, the relay does not know yet
        self.answer(200, {"accepted": accepted})

    def token(self, body: bytes) -> None:
        if self.injected("POST", TOKEN_PATH):
            return
        form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
        client_id, client_secret = form.get("client_id", ""), form.get("client_secret", "")
        scheme, _, credentials = self.headers.get("Authorization", "").partition(" ")
        if scheme == "Basic":
            client_id, _, client_secret = base64.b64decode(credentials).decode().partition(":")
        now = time.time()
        if form.get("grant_type") != "client_credentials":
            self.crm.note(ReceivedRequest("POST", TOKEN_PATH, 400, now))
            self.answer(400, {"error": "unsupported_grant_type", "error_description": "grant type not supported"})
            return
        if (client_id, client_secret) != (self.crm.client_id, self.crm.client_secret):
            self.crm.note(ReceivedRequest("POST", TOKEN_PATH, 400, now))
            self.answer(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
            return
        self.crm.note(ReceivedRequest("POST", TOKEN_PATH, 200, now))
        self.answer(
            200,
            {
                "access_token": self.crm.issue_token(),
                "signature": base64.b64encode(secrets.token_bytes(32)).decode(),
                "token_format": "opaque",
                "instance_url": self.crm.url,
                "id": f"{self.crm.url}/id/00DFAKE000000001/005FAKE000000001",
                "token_type": "Bearer",
                "issued_at": str(int(now * 1000)),
            },
        )

    def salesforce_upsert(self, sobject: str, external_field: str, body: bytes) -> None:
        path = f"/composite/sobjects/{sobject}/{external_field}"
        if self.injected("PATCH", path):
            return
        now = time.time()
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not self.crm.token_valid(token):
            self.crm.note(ReceivedRequest("PATCH", path, 401, now))
            self.answer(401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])
            return
        try:
            request = json.loads(body)
            records = request["records"]
            assert isinstance(records, list)
        except (ValueError, KeyError, TypeError, AssertionError):
            self.crm.note(ReceivedRequest("PATCH", path, 400, now))
            self.answer(400, [{"message": "records is required", "errorCode": "JSON_PARSER_ERROR"}])
            return
        allowed, usage = self.crm.count_api_call()
        limit_info = {"Sforce-Limit-Info": usage}
        if not allowed:
            self.crm.note(ReceivedRequest("PATCH", path, 403, now))
            error = {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
            self.answer(403, [error], limit_info)
            return
        if len(records) > MAX_RECORDS:
            self.crm.note(ReceivedRequest("PATCH", path, 400, now))
            error = {"message": f"more than {MAX_RECORDS} records", "errorCode": "EXCEEDED_ID_LIMIT"}
            self.answer(400, [error], limit_info)
            return
        results = self.crm.upsert(sobject, external_field, records, now)
        self.crm.note(ReceivedRequest("PATCH", path, 200, now, changes=len(records)))
        self.crm.released.wait()
        self.answer(200, results, limit_info)

    def control(self, path: str, body: bytes) -> None:
        options = json.loads(body or b"{}")
        if path == "/_fake/reset":
            self.crm.reset()
        elif path == "/_fake/faults":
            if "down" in options:
                if options["down"]:
                    self.crm.go_down(int(options["down"]), options.get("retry_after"))
                else:
                    self.crm.come_back()
            if options.get("fail_next"):
                status = int(options.get("status", 503))
                self.crm.fail_next(int(options["fail_next"]), status, options.get("retry_after"))
            if "throttle" in options:
                self.crm.throttle(float(options["throttle"]), float(options.get("retry_after") or 1.0))
            if "errors" in options:
                self.crm.fail_share(float(options["errors"]))
            if "latency" in options:
                self.crm.set_latency(float(options["latency"]))
            if options.get("hold"):
                self.crm.hold()
            elif "hold" in options:
                self.crm.release()
        else:
            self.answer(404, {"error": "not found"})
            return
        self.answer(200, {"ok": True})
