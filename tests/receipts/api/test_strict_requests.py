"""The API refuses what its schema refuses, with 400 naming the parameter or field, rather than reading it as
absent or as something else: page sizes out of 1..1000, a filter given empty or twice, a boolean that is neither,
an unknown kind of change, a number where text is asked, a lift reason past 2,000 characters. Query parameters it
does not know are ignored, as DRF does."""

from __future__ import annotations

import json
from typing import Any

import pytest

from receipts.actions import suppression
from receipts.models import ApiClient, SuppressionSource

pytestmark = pytest.mark.django_db

LISTS = ["/api/v1/messages/", "/api/v1/suppressions/", "/api/v1/campaigns/", "/api/v1/contacts/", "/api/v1/changes/"]


@pytest.fixture
def api(client: Any) -> Any:
    _, token = ApiClient.issue("strict", ["read", "write"])
    client.defaults["HTTP_AUTHORIZATION"] = f"Token {token}"
    return client


def refused(response: Any, name: str) -> None:
    assert response.status_code == 400, response.content[:300]
    assert name in response.json()["detail"]


@pytest.mark.parametrize("url", LISTS)
@pytest.mark.parametrize("size", ["0", "1001", "null", "", "-1", "1.5", "5&page_size=5"])
def test_a_page_size_out_of_bounds_is_refused_not_defaulted(api: Any, url: str, size: str) -> None:
    refused(api.get(f"{url}?page_size={size}"), "page_size")


@pytest.mark.parametrize("url", LISTS)
def test_a_page_size_in_bounds_is_taken(api: Any, url: str) -> None:
    assert api.get(f"{url}?page_size=1000").status_code == 200


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("channel=", "channel"),
        ("needs_review=", "needs_review"),
        ("updated_after=", "updated_after"),
        ("channel=sms&channel=email", "channel"),
        ("needs_review=maybe", "needs_review"),
        ("status=", "status"),
    ],
)
def test_a_filter_given_empty_twice_or_unreadable_is_refused(api: Any, query: str, name: str) -> None:
    refused(api.get(f"/api/v1/messages/?{query}"), name)


@pytest.mark.parametrize(
    "query", ["status=sent&status=delivered", "needs_review=true", "needs_review=0", "campaign=", "whatever=1"]
)
def test_repeatable_filters_free_text_and_unknown_parameters_are_taken(api: Any, query: str) -> None:
    assert api.get(f"/api/v1/messages/?{query}").status_code == 200


def test_the_change_feed_refuses_a_kind_it_does_not_have(api: Any) -> None:
    refused(api.get("/api/v1/changes/?kind=status_changed&kind=nonsense"), "kind")
    refused(api.get("/api/v1/changes/?kind="), "kind")


@pytest.mark.parametrize("field", ["provider_message_id", "crm_record_id", "correlation_id", "to"])
def test_a_number_is_no_text(api: Any, field: str) -> None:
    body = {"channel": "sms", "provider": "genesys_sms", "provider_message_id": "m-1", "to": "+15551234567"}
    response = api.post("/api/v1/messages/", {**body, field: 5551234567}, content_type="application/json")
    refused(response, field)


def test_a_lift_reason_past_2000_characters_is_refused(api: Any) -> None:
    row, _ = suppression.suppress("sms", "+15551234567", "manual", source=SuppressionSource.API)
    refused(api.delete(f"/api/v1/suppressions/{row.pk}/?reason={'x' * 2001}"), "reason")
    assert api.delete(f"/api/v1/suppressions/{row.pk}/?reason={'x' * 2000}").status_code == 200


def test_a_text_over_its_max_length_is_refused_as_sent_not_as_trimmed(api: Any) -> None:
    """The schema says crm_record_id has at most 255 characters; 250 characters and ten trailing vertical tabs
    were taken (DRF trims before it counts)."""
    body = {"channel": "sms", "provider": "generic", "provider_message_id": "len-1", "to": "+15551234567"}
    sent = json.dumps({**body, "crm_record_id": "r" * 250 + "\x0b" * 10})
    refused(api.post("/api/v1/messages/", sent, content_type="application/json"), "crm_record_id")
