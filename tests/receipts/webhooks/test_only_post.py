"""POST stores a receipt; GET and HEAD answer 200 and touch nothing (Webex Connect saves a webhook only when its URL
answers HEAD with 200); other methods answer 405 and store nothing."""

from __future__ import annotations

from typing import Any

import pytest

from receipts.models import ReceiptEvent

pytestmark = pytest.mark.django_db

PATHS = ["/webhooks/genesys-cloud/", "/webhooks/genesys-sms/", "/webhooks/webex-connect/", "/webhooks/generic/"]


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("method", ["get", "head"])
def test_get_and_head_answer_200_without_credentials_and_store_nothing(client: Any, path: str, method: str) -> None:
    response = getattr(client, method)(path)

    assert response.status_code == 200
    if method == "get":
        assert response.json()["status"] == "ready"
    else:
        assert response.content == b""
    assert ReceiptEvent.objects.count() == 0


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_other_methods_are_not_allowed_and_nothing_is_stored(client: Any, method: str) -> None:
    response = getattr(client, method)("/webhooks/generic/")

    assert response.status_code == 405
    assert response["Allow"] == "POST, GET, HEAD"
    assert "POST" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0
