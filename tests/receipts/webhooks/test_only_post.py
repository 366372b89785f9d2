"""Only POST is allowed: other methods answer 405 and store nothing."""

from __future__ import annotations

from typing import Any

import pytest

from receipts.models import ReceiptEvent

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("method", ["get", "put", "delete"])
def test_only_post_is_allowed_and_nothing_is_stored(client: Any, method: str) -> None:
    response = getattr(client, method)("/webhooks/generic/")

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert "POST" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0
