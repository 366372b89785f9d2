"""The address a request came from, for the admin login throttle (django-axes' ``AXES_CLIENT_IP_CALLABLE``).

A request that reached granian over TCP carries its peer in ``REMOTE_ADDR``. One that came through Caddy
(config/Caddyfile, on granian's Unix socket) has no peer address there: Caddy replaced the client's
``X-Forwarded-For`` with the peer it saw, and only a local process can reach that socket, so that last entry is
trusted. ``PROXY_HOPS`` counts the proxies of your own in front of Caddy (a TLS load balancer, listed in
``TRUSTED_PROXIES`` so that Caddy keeps what it sent and appends the peer): the client is that many entries
further left. Entries further left than that are the client's own word and ignored.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    trail = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
    peer = request.META.get("REMOTE_ADDR") or ""
    chain = [*trail, peer] if peer else trail  # through the socket, Caddy's entry stands for the peer
    if not chain:
        return ""
    candidate = chain[max(len(chain) - 1 - settings.PROXY_HOPS, 0)]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return ""
