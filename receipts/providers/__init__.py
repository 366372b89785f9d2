"""One module per provider: its webhook parser, code tables and (later) client."""

from receipts.providers.base import Provider, Unauthorized
from receipts.providers.generic import Generic
from receipts.providers.genesys_cloud import GenesysCloud
from receipts.providers.genesys_sms import GenesysSms
from receipts.providers.webex_connect import WebexConnect

PROVIDERS: dict[str, Provider] = {p.name: p for p in (GenesysCloud(), GenesysSms(), WebexConnect(), Generic())}

__all__ = ["PROVIDERS", "Provider", "Unauthorized"]
