"""The fake CRM itself, driven over HTTP the way another process (the benchmark, a demo) drives it."""

from __future__ import annotations

import hashlib
import hmac
import json

import httpx

from simulator.fake_crm import FakeCrm


def post_batch(crm: FakeCrm, keys: list[str], secret: str | None = None) -> httpx.Response:
    body = json.dumps(
        {
            "batch_id": "b1",
            "changes": [
                {"idempotency_key": k, "sequence": i + 1, "kind": "status_changed", "crm_record_id": "R", "history": []}
                for i, k in enumerate(keys)
            ],
        }
    ).encode()
    signature = hmac.new((secret or crm.signing_secret).encode(), body, hashlib.sha256).hexdigest()
    headers = {"Idempotency-Key": "b1", "X-Signature-256": f"sha256={signature}", "Content-Type": "application/json"}
    return httpx.post(crm.generic_url, content=body, headers=headers)


def test_the_generic_endpoint_checks_the_signature_and_records_each_change() -> None:
    with FakeCrm() as crm:
        assert post_batch(crm, ["k1", "k2"]).json() == {"accepted": 2}
        assert post_batch(crm, ["k2"]).status_code == 200
        assert post_batch(crm, ["k3"], secret="wrong").status_code == 401

        summary = httpx.get(f"{crm.url}/_fake/summary").json()
        assert summary["changes_received"] == 3
        assert summary["unique_keys"] == 2
        assert summary["duplicated_keys"] == 1
        assert summary["by_status"] == {"200": 2, "401": 1}
        assert [c["key"] for c in httpx.get(f"{crm.url}/_fake/changes").json()] == ["k1", "k2", "k2"]


def test_faults_are_switched_over_http() -> None:
    with FakeCrm() as crm:
        httpx.post(f"{crm.url}/_fake/faults", json={"down": 503, "retry_after": 7})
        down = post_batch(crm, ["k1"])
        assert (down.status_code, down.headers["Retry-After"]) == (503, "7")

        httpx.post(f"{crm.url}/_fake/faults", json={"down": None, "fail_next": 1, "status": 429, "retry_after": 2})
        assert post_batch(crm, ["k1"]).status_code == 429
        assert post_batch(crm, ["k1"]).status_code == 200

        httpx.post(f"{crm.url}/_fake/reset")
        assert httpx.get(f"{crm.url}/_fake/summary").json()["requests"] == 0


def test_the_token_endpoint_wants_client_credentials() -> None:
    with FakeCrm() as crm:
        good = {"grant_type": "client_credentials", "client_id": crm.client_id, "client_secret": crm.client_secret}
        answer = httpx.post(crm.token_url, data=good).json()
        assert answer["token_type"] == "Bearer" and answer["instance_url"] == crm.url
        bad = httpx.post(crm.token_url, data={**good, "client_secret": "nope"})
        assert (bad.status_code, bad.json()["error"]) == (400, "invalid_client")
        url = f"{crm.url}/services/data/v62.0/composite/sobjects/Contact/Ext__c"
        records = [{"attributes": {"type": "Contact"}, "Ext__c": "A", "F": 1}]
        assert httpx.patch(url, json={"records": records}).status_code == 401
        headers = {"Authorization": f"Bearer {answer['access_token']}"}
        [result] = httpx.patch(url, json={"allOrNone": False, "records": records}, headers=headers).json()
        assert result["success"] and result["created"]
        too_many = httpx.patch(url, json={"records": records * 201}, headers=headers)
        assert too_many.status_code == 400


def fenced_batch(crm: FakeCrm, key: str, token: int, lease: str = "relay") -> httpx.Response:
    body = json.dumps(
        {
            "batch_id": key,
            "lease": lease,
            "fencing_token": token,
            "changes": [{"idempotency_key": key, "sequence": token, "crm_record_id": "R", "history": []}],
        }
    ).encode()
    signature = hmac.new(crm.signing_secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"Idempotency-Key": key, "X-Signature-256": f"sha256={signature}", "Content-Type": "application/json"}
    return httpx.post(crm.generic_url, content=body, headers=headers)


def test_a_batch_fenced_below_a_token_already_applied_for_its_lease_is_refused_and_not_applied() -> None:
    with FakeCrm() as crm:
        assert fenced_batch(crm, "k5", 5).status_code == 200
        stale = fenced_batch(crm, "k4", 4)
        assert stale.status_code == 409 and stale.json()["applied_token"] == 5
        assert fenced_batch(crm, "k5b", 5).status_code == 200  # the same relay run, its next batch
        assert fenced_batch(crm, "k6", 6).status_code == 200
        assert fenced_batch(crm, "other", 1, lease="another-tracker").status_code == 200  # fences are per lease
        assert [c.key for c in crm.changes()] == ["k5", "k5b", "k6", "other"]
        assert [r.status for r in crm.requests] == [200, 409, 200, 200, 200]
