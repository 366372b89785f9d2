"""The login throttle keys on the real client: the peer over TCP, Caddy's X-Forwarded-For entry through the
Unix socket, PROXY_HOPS entries further left behind proxies of one's own, and never a value the client chose."""

from __future__ import annotations

import pytest
from django.test import RequestFactory, override_settings

from config.client_address import client_ip


def request(remote_addr: str, forwarded_for: str | None = None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return RequestFactory().get("/admin/login/", **extra)


def test_over_tcp_the_peer_counts_and_a_forged_header_does_not() -> None:
    assert client_ip(request("203.0.113.9", "198.51.100.1")) == "203.0.113.9"


def test_through_caddy_the_entry_it_appended_counts_not_the_clients_own() -> None:
    # A trusted proxy sent X-Forwarded-For: 198.51.100.1; Caddy appended the peer it saw.
    assert client_ip(request("", "198.51.100.1, 203.0.113.9")) == "203.0.113.9"


@override_settings(PROXY_HOPS=1)
def test_behind_a_load_balancer_one_more_entry_is_skipped() -> None:
    assert client_ip(request("", "198.51.100.1, 203.0.113.9, 10.0.0.5")) == "203.0.113.9"
    assert client_ip(request("10.0.0.5", "198.51.100.1, 203.0.113.9")) == "203.0.113.9"


@pytest.mark.parametrize(
    ("forwarded_for", "expected"),
    [(None, ""), ("", ""), ("not-an-address", ""), ("2001:db8::1 , junk", ""), ("junk, 2001:db8::1 ", "2001:db8::1")],
)
def test_only_a_well_formed_address_counts(forwarded_for: str | None, expected: str) -> None:
    assert client_ip(request("", forwarded_for)) == expected
