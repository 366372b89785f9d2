"""Fixtures for every webhook test: the drain kick recorded instead of handed to the broker."""

from __future__ import annotations

from unittest import mock

import pytest

from receipts import webhooks


@pytest.fixture(autouse=True)
def kicks(monkeypatch: pytest.MonkeyPatch) -> mock.Mock:
    """The drain kick the view asks for after an accepted receipt, recorded instead of handed to the kicker.

    Keeps these tests off the broker (var/ or Redis) and lets them see when a kick is asked for.
    """
    recorder = mock.Mock(name="request_drain")
    monkeypatch.setattr(webhooks, "request_drain", recorder)
    return recorder
