"""Body size: over the limit is refused with 413, exactly the limit is accepted, the limit is a setting."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest

from receipts.models import ReceiptEvent
from tests.conftest import post_webhook
from tests.receipts.webhooks.cases import FORM, Case, assert_accepted, each_provider, post

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


def padded(case: Case, size: int) -> bytes:
    """A valid body of exactly ``size`` bytes (JSON: trailing whitespace; form: a filler field)."""
    if case.content_type == FORM:
        filler = b"&pad="
        return case.body + filler + b"x" * (size - len(case.body) - len(filler))
    return case.body + b" " * (size - len(case.body))


@each_provider
def test_body_over_one_mib_is_refused_with_413(client: Any, case: Case, kicks: mock.Mock) -> None:
    body = padded(case, MIB + 1)

    response = post(client, case.provider, body, case.content_type, **case.signed(body))

    assert response.status_code == 413
    assert "body over" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0
    kicks.assert_not_called()


@each_provider
def test_body_of_exactly_one_mib_is_accepted(client: Any, case: Case) -> None:
    body = padded(case, MIB)

    response = post(client, case.provider, body, case.content_type, **case.signed(body))

    assert_accepted(response, case, body)


@each_provider
def test_body_limit_follows_the_setting(client: Any, settings: Any, case: Case) -> None:
    settings.WEBHOOK_MAX_BODY = 100
    assert len(case.body) > 100

    response = post_webhook(client, case.provider, case.body, content_type=case.content_type)

    assert response.status_code == 413
    assert "100" in response.json()["error"]
    assert ReceiptEvent.objects.count() == 0
