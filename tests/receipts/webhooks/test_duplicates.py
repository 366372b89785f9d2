"""Duplicates: the same receipt twice is stored once; another status or another provider is not a duplicate."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from receipts.models import ReceiptEvent
from tests.conftest import post_webhook
from tests.receipts.webhooks.cases import GC_MESSAGE_DATA, Case, each_provider, post

pytestmark = pytest.mark.django_db


@each_provider
def test_same_receipt_twice_is_stored_once(client: Any, case: Case, kicks: mock.Mock) -> None:
    first = post(client, case.provider, case.body, case.content_type, **case.signed())
    second = post(client, case.provider, case.body, case.content_type, **case.signed())

    assert first.json() == {"accepted": 1, "duplicates": 0}
    assert second.status_code == 200
    assert second.json() == {"accepted": 0, "duplicates": 1}
    assert ReceiptEvent.objects.count() == 1
    kicks.assert_called_once()


@each_provider
def test_same_facts_in_a_reserialised_envelope_are_a_duplicate(client: Any, case: Case) -> None:
    again = case.reserialised()
    assert again != case.body

    post_webhook(client, case.provider, case.body, content_type=case.content_type)
    response = post_webhook(client, case.provider, again, content_type=case.content_type)

    assert response.status_code == 200
    assert response.json() == {"accepted": 0, "duplicates": 1}
    assert ReceiptEvent.objects.get().body == case.body.decode()


@each_provider
def test_another_status_of_the_same_message_is_not_a_duplicate(client: Any, case: Case) -> None:
    post_webhook(client, case.provider, case.body, content_type=case.content_type)
    response = post_webhook(client, case.provider, case.other_status, content_type=case.content_type)

    assert response.status_code == 200
    assert response.json() == {"accepted": 1, "duplicates": 0}
    assert ReceiptEvent.objects.count() == 2


def test_duplicate_message_data_counts_each_receipt_as_a_duplicate(client: Any) -> None:
    post_webhook(client, "genesys_cloud", GC_MESSAGE_DATA)
    response = post_webhook(client, "genesys_cloud", GC_MESSAGE_DATA)

    assert response.json() == {"accepted": 0, "duplicates": 2}
    assert ReceiptEvent.objects.count() == 1


def test_same_body_for_another_provider_is_not_a_duplicate(client: Any) -> None:
    # The dedupe key is unique per provider: two providers may well carry the same facts.
    body = b'{"id": "m-1", "status": "sent", "type": "Receipt", "channel": {"messageId": "m-1"}}'
    for provider in ("generic", "genesys_cloud"):
        assert post_webhook(client, provider, body).json() == {"accepted": 1, "duplicates": 0}

    assert ReceiptEvent.objects.count() == 2
