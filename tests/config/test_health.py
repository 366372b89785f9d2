"""Liveness and readiness for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.django_db
def test_healthz_and_readyz(client: Any) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.json()["checks"]["database"] == "ok"
