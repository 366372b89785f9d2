"""The Genesys Cloud client over real HTTP against the simulator: OAuth, typed results and errors, retries, the
shared limits (429 pauses, the circuit breaker)."""

from __future__ import annotations

import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import time_machine
from django.core.exceptions import ImproperlyConfigured

from receipts.providers.genesys_cloud.analytics import analytics_query
from receipts.providers.genesys_cloud.client import (
    MAX_ATTEMPTS,
    REGIONS,
    Config,
    GenesysCloudAuthError,
    GenesysCloudClient,
    GenesysCloudNotFound,
    GenesysCloudRateLimited,
    GenesysCloudServerError,
    GenesysCloudUnavailable,
    region_domain,
)
from receipts.providers.genesys_cloud.parser import GenesysCloud
from receipts.providers.limits import CLOSED, HALF_OPEN, OPEN, Store
from simulator import SimulatorServer
from tests.receipts.conftest import FakeClock, api_requests, make_client, make_limits, make_store, preload


def tokens_issued(sim: SimulatorServer) -> int:
    return sim.stats()["tokens_issued"]


# --- regions and configuration (no network) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "domain"),
    [
        ("us-east-1", "mypurecloud.com"),
        ("eu_west_1", "mypurecloud.ie"),
        ("eu-central-1", "mypurecloud.de"),
        ("ap-southeast-2", "mypurecloud.com.au"),
        ("ap-northeast-1", "mypurecloud.jp"),
        ("us-west-2", "usw2.pure.cloud"),
        ("ca-central-1", "cac1.pure.cloud"),
        ("eu-west-2", "euw2.pure.cloud"),
        ("ap-south-1", "aps1.pure.cloud"),
        ("mypurecloud.ie", "mypurecloud.ie"),
    ],
)
def test_regions_by_name_or_domain(region: str, domain: str) -> None:
    assert region_domain(region) == domain


def test_the_regions_are_the_platform_sdks() -> None:
    """Every region PureCloudPlatformClientV2 names (PureCloudRegionHosts), with its host: eusc-de-east-1, the EU
    sovereign cloud, was refused at start-up."""
    from PureCloudPlatformClientV2.purecloud_region_hosts import PureCloudRegionHosts

    sdk = {r.name.replace("_", "-"): r.value.removeprefix("https://api.") for r in PureCloudRegionHosts}

    assert sdk == REGIONS
    assert region_domain("eusc-de-east-1") == "edee1.eusc-pure.cloud"


def test_unknown_region_names_what_to_set() -> None:
    with pytest.raises(ImproperlyConfigured, match="GENESYS_CLOUD_REGION"):
        region_domain("mars-north-1")


def test_every_region_has_api_and_login_hosts(settings: object) -> None:
    for name, domain in REGIONS.items():
        settings.GENESYS_CLOUD_REGION = name  # type: ignore[attr-defined]
        settings.GENESYS_CLOUD_BASE_URL = ""  # type: ignore[attr-defined]
        settings.GENESYS_CLOUD_LOGIN_URL = ""  # type: ignore[attr-defined]
        config = Config.from_settings()
        assert (config.api_url, config.login_url) == (f"https://api.{domain}", f"https://login.{domain}")


def test_base_url_overrides_the_region(settings: object) -> None:
    settings.GENESYS_CLOUD_REGION = "eu-west-1"  # type: ignore[attr-defined]
    settings.GENESYS_CLOUD_BASE_URL = "http://127.0.0.1:8100/"  # type: ignore[attr-defined]
    settings.GENESYS_CLOUD_LOGIN_URL = "http://127.0.0.1:8100"  # type: ignore[attr-defined]
    config = Config.from_settings()
    assert (config.api_url, config.login_url) == ("http://127.0.0.1:8100", "http://127.0.0.1:8100")


def test_client_secret_never_shows_in_the_config_repr() -> None:
    assert "s3cret" not in repr(Config("https://api.x", "https://login.x", "id", "s3cret"))


# --- OAuth ------------------------------------------------------------------------------------------------


def test_one_token_is_fetched_and_shared_by_every_client_of_the_account(sim: SimulatorServer, store: Store) -> None:
    first = make_client(sim, make_limits(store, burst=50), client_id="acct-shared")
    second = make_client(sim, make_limits(store, burst=50, name=first.limits.name), client_id="acct-shared")
    messages = preload(sim, count=2)

    first.message_details(messages[0]["id"])
    second.message_details(messages[1]["id"])

    assert tokens_issued(sim) == 1


def test_token_is_refreshed_a_minute_before_it_expires(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    sim.configure(token_lifetime=3600)
    message = preload(sim, count=1)[0]
    genesys.message_details(message["id"])

    with time_machine.travel(datetime.now(UTC) + timedelta(seconds=3541)):
        genesys.message_details(message["id"])

    assert tokens_issued(sim) == 2
    assert sim.stats()["requests"]["by_status"].get("401", 0) == 0  # replaced before the API refused it


def test_a_401_fetches_a_new_token_and_tries_once_more(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    message = preload(sim, count=1)[0]
    genesys.message_details(message["id"])
    httpx.post(f"{sim.url}/_sim/tokens/expire")

    data = genesys.message_details(message["id"])

    assert data.id == message["id"]
    assert tokens_issued(sim) == 2
    assert [r["status"] for r in api_requests(sim)] == [200, 401, 200]
    assert genesys.limits.counters()["token_refused"] == 1


def test_a_second_401_in_a_row_is_an_auth_error(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    sim.configure(token_lifetime=0)  # every token is dead on arrival
    message = preload(sim, count=1)[0]

    with pytest.raises(GenesysCloudAuthError) as refused:
        genesys.message_details(message["id"])

    assert (refused.value.status, refused.value.code) == (401, "bad.credentials")
    assert tokens_issued(sim) == 2


def test_wrong_client_credentials_are_an_auth_error(sim: SimulatorServer, store: Store) -> None:
    sim.configure(clients={"known-client": "right-secret"})
    genesys = make_client(sim, make_limits(store), client_id="known-client")  # its secret is "s3cret"

    with pytest.raises(GenesysCloudAuthError) as refused:
        genesys.access_token()

    assert (refused.value.status, refused.value.code) == (401, "invalid_client")


# --- typed results ----------------------------------------------------------------------------------------


def test_message_details_is_a_message_data_the_webhook_parser_reads(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    message = preload(sim, count=1, outcome="failed", reason="InvalidDestination")[0]

    data = genesys.message_details(message["id"])

    assert (data.id, data.conversation_id, data.status) == (message["id"], message["conversationId"], "delivery-failed")
    assert [r["status"] for r in data.normalized_receipts] == ["Sent", "Failed"]
    receipts = GenesysCloud().parse(json.dumps(data.raw).encode(), "application/json")
    assert {(r.outcome.status, r.outcome.category) for r in receipts} >= {("failed", "invalid_destination")}


def test_unknown_message_is_not_found_with_genesys_error_fields(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    with pytest.raises(GenesysCloudNotFound) as missing:
        genesys.message_details("0" * 32)

    error = missing.value
    assert (error.status, error.code) == (404, "not.found")
    assert error.message
    assert error.context_id
    assert genesys.limits.circuit().state == CLOSED  # the provider answered: not a failure


def test_bulk_lookup_sends_at_most_1000_ids_a_request(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    messages = preload(sim, count=2500)

    found = genesys.messages_bulk(messages[0]["conversationId"], [m["id"] for m in messages])

    assert sorted(d.id for d in found) == sorted(m["id"] for m in messages)
    assert len(api_requests(sim)) == 3


def test_analytics_job_is_submitted_awaited_paged_by_cursor_and_deleted(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    messages = preload(sim, count=2500)
    now = datetime.now(UTC)

    pages = list(genesys.conversation_details(analytics_query(now - timedelta(minutes=15), now), poll_interval=0.05))

    assert [len(p.conversations) for p in pages] == [1000, 1000, 500]
    assert {c.conversation_id for p in pages for c in p.conversations} == {m["conversationId"] for m in messages}
    session = next(s for s in pages[0].conversations[0].sessions if s.delivery_status)
    assert session.delivery_status in ("DeliverySuccess", "DeliveryFailed", "Sent")
    endpoints = [(r["method"], r["endpoint"]) for r in api_requests(sim)]
    assert endpoints[0] == ("POST", "/api/v2/analytics/conversations/details/jobs")
    assert endpoints.count(("GET", "/api/v2/analytics/conversations/details/jobs/{jobId}/results")) == 3
    assert endpoints[-1] == ("DELETE", "/api/v2/analytics/conversations/details/jobs/{jobId}")


def test_send_sms_and_email_answer_typed_results(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    sms = genesys.send_sms("+15559876543", "+15551234567", "Your appointment is tomorrow at 10:00.")
    email = genesys.send_email("noreply@example.com", "alice@example.com", "Hello", text_body="Hi Alice")

    assert len(sms.id) == 32 and sms.conversation_id and sms.messenger_type == "sms"
    assert email.id and email.conversation_id and email.date_created
    assert sim.stats()["sends"] == {"genesys_cloud": 2}


def test_sms_over_765_characters_is_refused_before_sending(genesys: GenesysCloudClient) -> None:
    with pytest.raises(ValueError, match="765"):
        genesys.send_sms("+15559876543", "+15551234567", "x" * 766)


def test_rate_limit_headers_are_read(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    genesys.message_details(preload(sim, count=1)[0]["id"])
    notes = genesys.limits.notes()
    assert (notes["ratelimit_allowed"], notes["ratelimit_count"]) == ("300", "1")


# --- 429, 5xx and the circuit -----------------------------------------------------------------------------


def test_429_waits_retry_after_then_gives_up_with_genesys_fields(
    sim: SimulatorServer, genesys: GenesysCloudClient
) -> None:
    message = preload(sim, count=1)[0]
    genesys.access_token()
    sim.configure(rate_429=1.0, retry_after=1)

    with pytest.raises(GenesysCloudRateLimited) as limited:
        genesys.message_details(message["id"])

    error = limited.value
    assert (error.status, error.code, error.retry_after) == (429, "too.many.requests.retry.after", 1.0)
    times = [r["t"] for r in api_requests(sim)]
    assert len(times) == MAX_ATTEMPTS
    assert all(later - earlier >= 1.0 for earlier, later in itertools.pairwise(times))
    assert genesys.limits.circuit().state == CLOSED  # a 429 is the provider pacing us, not failing


def test_a_429_pauses_every_worker_of_the_account(sim: SimulatorServer, store: Store) -> None:
    genesys = make_client(sim, make_limits(store), max_wait=0.5)
    message = preload(sim, count=1)[0]
    genesys.access_token()
    sim.configure(rate_429=1.0, retry_after=20)

    with pytest.raises(GenesysCloudRateLimited):
        genesys.message_details(message["id"])  # 20 s is longer than this caller will wait

    other_worker = make_limits(store, name=genesys.limits.name)
    refused = other_worker.try_acquire()
    assert not refused.granted
    assert 19 < refused.wait <= 20 + 0.25 * 20
    assert len(api_requests(sim)) == 1


def test_5xx_is_retried_for_reads_but_never_for_sends(sim: SimulatorServer, genesys: GenesysCloudClient) -> None:
    message = preload(sim, count=1)[0]
    genesys.access_token()
    sim.configure(rate_5xx=1.0)

    with pytest.raises(GenesysCloudServerError):
        genesys.message_details(message["id"])
    reads = len(api_requests(sim))
    with pytest.raises(GenesysCloudServerError):
        genesys.send_sms("+15559876543", "+15551234567", "hello")

    assert reads == MAX_ATTEMPTS
    assert len(api_requests(sim)) == reads + 1
    assert sim.stats()["sends"] == {}


def test_circuit_opens_after_failures_refuses_without_calling_then_recovers(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    clock = FakeClock(time.time())
    limits = make_limits(make_store("sqlite", tmp_path, clock), burst=50, threshold=3, cooldown=30)
    genesys = make_client(sim, limits)
    message = preload(sim, count=1)[0]
    genesys.access_token()
    sim.configure(rate_5xx=1.0)

    with pytest.raises(GenesysCloudUnavailable) as opened:
        genesys.message_details(message["id"])  # 3 failures open it; the 4th attempt is refused at home
    assert opened.value.code == "circuit.open"
    assert limits.circuit().state == OPEN
    sent = len(api_requests(sim))
    with pytest.raises(GenesysCloudUnavailable):
        genesys.message_details(message["id"])
    assert len(api_requests(sim)) == sent == 3

    sim.configure(rate_5xx=0.0)
    clock.advance(30)
    assert limits.circuit().state == OPEN  # until somebody probes
    data = genesys.message_details(message["id"])

    assert data.id == message["id"]
    assert limits.circuit().state == CLOSED
    assert limits.circuit().opened_total == 1


def test_a_failed_probe_keeps_the_circuit_open(sim: SimulatorServer, tmp_path: Path) -> None:
    clock = FakeClock(time.time())
    limits = make_limits(make_store("sqlite", tmp_path, clock), burst=50, threshold=1, cooldown=30)
    genesys = make_client(sim, limits)
    message = preload(sim, count=1)[0]
    genesys.access_token()
    sim.configure(rate_5xx=1.0)
    with pytest.raises(GenesysCloudUnavailable):
        genesys.message_details(message["id"])
    clock.advance(30)

    with pytest.raises(GenesysCloudUnavailable):
        genesys.message_details(message["id"])  # the probe fails: open again, nothing more sent

    state = limits.circuit()
    assert (state.state, state.opened_total) == (OPEN, 2)
    assert len(api_requests(sim)) == 2
    assert state.state != HALF_OPEN


def test_connection_refused_counts_as_a_failure(store: Store) -> None:
    config = Config("http://127.0.0.1:9", "http://127.0.0.1:9", "id", "secret", timeout=1.0)
    genesys = GenesysCloudClient(config, make_limits(store, threshold=1))

    with pytest.raises(GenesysCloudUnavailable) as down:
        genesys.access_token()

    assert down.value.code == "transport"
    assert genesys.limits.circuit().state == OPEN


def test_the_client_refuses_to_start_without_credentials(store: Store) -> None:
    with pytest.raises(ImproperlyConfigured, match="GENESYS_CLOUD_CLIENT_ID"):
        GenesysCloudClient(Config("https://api.x", "https://login.x", "", ""), make_limits(store))
