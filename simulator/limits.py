"""Send throughput limits: how many send requests a provider takes a second (``send_limits``), and how many one
sender id or from address may send (``sender_limit_per_second``), as carriers limit a long code or a sender id.

"Over the limit" has one exact meaning: a limit of N a second admits a send request at time t only if fewer than N
were admitted in the sliding window (t - 1 s, t]. So no one-second window ever holds more than N admitted sends,
which is what ``peak`` in the stats checks. A whole N is exact; a fraction above 1 is rounded down (1.5 -> 1), and
one below 1 admits one send per 1/N seconds (0.25 -> one in any 4 s window). A refused request gets the provider's
throttle: a 429 (Webex Connect's 7020 in ``webex_throttle_status``) with ``Retry-After``, the whole seconds (at least
1) until the window has room; SMS Aggregation's 2xx ``result=6``. Both limits are checked before either counts, so
a refused request uses up nothing, and nothing is created for it.

What the providers document (and what the simulator takes from it):

- Webex Connect ("Rate Limits for Messaging APIs, Event API, and Inbound Webhook", developers.webexconnect.io): a
  per-tenant limit of Messaging API calls a second, shared by v1 and v2 (their example: 20 a second), configurable by
  the account manager, with channel-level limits under it and a "burst mode" of up to 1.5 times the limit (at most
  100 more) for 30 minutes a day. Calls over the limit are "queued for processing until the rate of request is within
  the configured rate limit", and beyond that rejected with code 7020, "You have reached maximum transaction limit".
  The page gives no HTTP status and no default figure: the 429, the ``Retry-After`` and the figure are ours, and
  burst mode and the queueing are not simulated. The limit counts calls, so one call with many destinations counts
  once.
- Genesys Cloud: agentless email is documented at 300 messages a minute ("Email rate limits", help.mypurecloud.com);
  no throughput figure for agentless SMS was found beyond the API's requests per token (``rate_limit_per_minute``).
  ``send_limits["genesys_cloud"]`` covers agentless SMS and email together; its figure is ours.
- SMS Aggregation: its HTTP API guide (docs.genesys.com) documents no throughput figure; the figure is ours. A
  refused MT is answered as the service throttles, in a 2xx with result code 6 (throttled), not a 429.
- Per sender: carriers limit each long code or sender id (commonly about 1 message a second for a long code); the
  figure is ours to set.

Time comes from ``Simulator.clock`` (monotonic seconds), which tests may replace to step time by hand.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MAX_SENDER_WINDOWS = 10_000  # above this many senders, windows with nothing left in them are dropped


@dataclass(frozen=True)
class Rate:
    capacity: int  # sends admitted in any window
    window: float  # seconds


def rate(per_second: float) -> Rate | None:
    """The window a per-second figure stands for; None: unlimited."""
    if per_second <= 0:
        return None
    if per_second >= 1:
        return Rate(int(per_second), 1.0)
    return Rate(1, 1.0 / per_second)


class SlidingWindow:
    """The times of the sends admitted within the last window, oldest first."""

    def __init__(self) -> None:
        self.times: deque[float] = deque()

    def trim(self, now: float, window: float) -> None:
        while self.times and self.times[0] <= now - window:
            self.times.popleft()

    def wait(self, limit: Rate, now: float) -> float:
        """0 if one more send fits now; else the seconds until it does."""
        self.trim(now, limit.window)
        count = len(self.times)
        if count < limit.capacity:
            return 0.0
        # Once this one leaves the window, capacity - 1 remain.
        return max(self.times[count - limit.capacity] + limit.window - now, 1e-9)


class SendLimiter:
    """Admits or refuses send requests against the provider's and the sender's windows. Not thread-safe: the
    simulator calls it under its lock."""

    def __init__(self) -> None:
        self.providers: dict[str, SlidingWindow] = {}
        self.senders: dict[tuple[str, str], SlidingWindow] = {}

    def take(
        self, provider: str, sender: str, provider_rate: Rate | None, sender_rate: Rate | None, now: float
    ) -> tuple[str, float]:
        """``("", 0.0)`` when admitted (and counted); else which limit refused it, ``"provider"`` or ``"sender"``,
        and the seconds until it would fit."""
        checks: list[tuple[str, SlidingWindow, Rate]] = []
        if provider_rate is not None:
            checks.append(("provider", self.providers.setdefault(provider, SlidingWindow()), provider_rate))
        if sender_rate is not None:
            if len(self.senders) > MAX_SENDER_WINDOWS:
                self.forget_idle(now, sender_rate.window)
            checks.append(("sender", self.senders.setdefault((provider, sender), SlidingWindow()), sender_rate))
        for scope, window, limit in checks:
            wait = window.wait(limit, now)
            if wait:
                return scope, wait
        for _, window, _ in checks:
            window.times.append(now)
        return "", 0.0

    def forget_idle(self, now: float, window: float) -> None:
        for key, sender_window in list(self.senders.items()):
            sender_window.trim(now, window)
            if not sender_window.times:
                del self.senders[key]

    def clear(self) -> None:
        self.providers.clear()
        self.senders.clear()
