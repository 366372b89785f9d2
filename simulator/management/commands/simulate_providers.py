import json
import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator import SimConfig, SimulatorServer, parse_mix
from simulator.config import PROVIDERS, ConfigError, secrets_from_settings


def pairs(text: str, what: str, separator: str = ":") -> dict[str, str]:
    """``id:secret,id2:secret2`` -> {id: secret}."""
    out = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        key, sep, value = entry.partition(separator)
        if not sep or not key or not value:
            raise CommandError(f"{what}: expected key{separator}value pairs separated by commas, got {entry!r}")
        out[key] = value
    return out


class Command(BaseCommand):
    help = (
        "Run the provider simulator (Genesys Cloud CX, Genesys SMS Aggregation, Webex Connect) on 127.0.0.1: "
        "send APIs, status, bulk and analytics jobs, receipts pushed to the app's webhooks, injected faults. "
        "Ctrl-C stops it. Control endpoints are under /_sim/ (see docs/simulator.md)."
    )
    # A development tool: it needs neither the database nor the app's production checks.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = SimConfig()
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=settings.SIMULATOR_PORT, help="default SIMULATOR_PORT")
        parser.add_argument(
            "--app-url", default=settings.SIMULATOR_APP_URL, help="base URL receipts are pushed to (SIMULATOR_APP_URL)"
        )
        parser.add_argument("--mix", default="delivered=90,failed=4,expired=2,silent=4", help="outcome weights")
        parser.add_argument("--seed", type=int, default=None, help="same seed, same outcomes, ids and delays")
        parser.add_argument("--sent-delay", type=float, default=defaults.sent_delay, help="seconds until sent")
        parser.add_argument("--delay-min", type=float, default=defaults.delay_min, help="seconds until final, min")
        parser.add_argument("--delay-max", type=float, default=defaults.delay_max, help="seconds until final, max")
        parser.add_argument("--rate-429", type=float, default=0.0, help="fraction of requests answered 429")
        parser.add_argument("--rate-5xx", type=float, default=0.0, help="fraction of requests answered 5xx")
        parser.add_argument("--retry-after", type=int, default=defaults.retry_after, help="Retry-After of a 429")
        parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every provider request")
        parser.add_argument("--latency-jitter-ms", type=float, default=0.0, help="plus uniform [0, jitter)")
        parser.add_argument(
            "--rate-limit", type=int, default=defaults.rate_limit_per_minute, help="Genesys requests/minute/token"
        )
        parser.add_argument(
            "--send-limit",
            default="",
            help="send requests a second per provider, e.g. genesys_sms=10,webex_connect=20 (default unlimited)",
        )
        parser.add_argument(
            "--sender-limit", type=float, default=0.0, help="sends a second per sender id / from address (0: off)"
        )
        parser.add_argument("--token-lifetime", type=int, default=defaults.token_lifetime, help="expires_in, s")
        parser.add_argument("--analytics-job-delay", type=float, default=defaults.analytics_job_delay)
        parser.add_argument("--no-push", action="store_true", help="push no receipts (polling only)")
        parser.add_argument("--push-providers", default=",".join(PROVIDERS), help="providers whose receipts are pushed")
        parser.add_argument("--rate-duplicate", type=float, default=0.0, help="fraction of receipts pushed twice")
        parser.add_argument(
            "--rate-out-of-order", type=float, default=0.0, help="fraction of messages with receipts out of order"
        )
        parser.add_argument("--push-retries", type=int, default=defaults.push_retries)
        parser.add_argument("--push-retry-spacing", type=float, default=defaults.push_retry_spacing)
        parser.add_argument("--push-retry-backoff", type=float, default=defaults.push_retry_backoff)
        parser.add_argument("--clients", default="", help="Genesys OAuth clients id:secret,...; default any")
        parser.add_argument("--sms-logins", default="", help="SMS Aggregation login:password,...; default any")
        parser.add_argument("--webex-keys", default="", help="Webex Connect service keys, comma-separated")
        parser.add_argument("--config", default="", help="a JSON file of further settings (SimConfig fields)")

    def handle(self, *args: Any, **o: Any) -> None:
        secrets, basic = secrets_from_settings()
        try:
            extra = json.loads(open(o["config"]).read()) if o["config"] else {}  # noqa: SIM115 - read at once
            config = SimConfig(
                host=o["host"],
                port=o["port"],
                seed=o["seed"],
                mix=parse_mix(o["mix"]),
                sent_delay=o["sent_delay"],
                delay_min=o["delay_min"],
                delay_max=o["delay_max"],
                rate_429=o["rate_429"],
                rate_5xx=o["rate_5xx"],
                retry_after=o["retry_after"],
                latency_ms=o["latency_ms"],
                latency_jitter_ms=o["latency_jitter_ms"],
                rate_limit_per_minute=o["rate_limit"],
                token_lifetime=o["token_lifetime"],
                send_limits={k: float(v) for k, v in pairs(o["send_limit"], "--send-limit", "=").items()},
                sender_limit_per_second=o["sender_limit"],
                analytics_job_delay=o["analytics_job_delay"],
                push=not o["no_push"],
                push_providers=[p.strip() for p in o["push_providers"].split(",") if p.strip()],
                app_url=o["app_url"],
                secrets=secrets,
                basic_auth=basic,
                rate_duplicate=o["rate_duplicate"],
                rate_out_of_order=o["rate_out_of_order"],
                push_retries=o["push_retries"],
                push_retry_spacing=o["push_retry_spacing"],
                push_retry_backoff=o["push_retry_backoff"],
                clients=pairs(o["clients"], "--clients"),
                sms_logins=pairs(o["sms_logins"], "--sms-logins"),
                webex_service_keys=[k.strip() for k in o["webex_keys"].split(",") if k.strip()],
            )
            if extra:
                config = SimConfig(**{**config.__dict__, **extra})
        except (ConfigError, OSError, ValueError, TypeError) as exc:
            raise CommandError(str(exc)) from exc

        server = SimulatorServer(config)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {config.host}:{config.port}: {exc}") from exc
        stop = threading.Event()
        # TERM, and Ctrl-C even when the shell started us with SIGINT ignored (a background job)
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        pushing = (
            "no receipts pushed"
            if not config.push
            else f"pushing {', '.join(config.push_providers)} receipts to {config.app_url}"
        )
        unsigned = [p for p in config.push_providers if p not in config.secrets]
        self.stdout.write(
            f"Provider simulator on {server.url} (seed {server.sim.seed}); {pushing}.\n"
            f"  Genesys Cloud: {server.url}/oauth/token, {server.url}/api/v2/...\n"
            f"  SMS Aggregation: {server.url}/httpapi/receiver\n"
            f"  Webex Connect: {server.url}/resources/v1/messaging (SMS), {server.url}/v2/messages (email)\n"
            f"  Control: {server.url}/_sim/stats, /_sim/config (POST JSON to change), /_sim/reset. Ctrl-C stops.\n"
        )
        if config.push and unsigned:
            how = "HTTP Basic from WEBHOOK_BASIC_AUTH" if basic else "no credentials (the app will answer 401)"
            self.stderr.write(f"No webhook secret for {', '.join(unsigned)}: pushing with {how}.\n")
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stdout.write("Stopping the provider simulator...\n")
            server.stop()
            self.stdout.write("Stopped.\n")
