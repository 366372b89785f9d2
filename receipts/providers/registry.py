"""Every provider's webhook side by name (``genesys_cloud``, ``genesys_sms``, ``webex_connect``, ``generic``): how
the webhook view authenticates a caller and how processing parses a stored body."""

from receipts.providers.base import Provider
from receipts.providers.generic import Generic
from receipts.providers.genesys_cloud.parser import GenesysCloud
from receipts.providers.genesys_sms import GenesysSms
from receipts.providers.webex_connect import WebexConnect

PROVIDERS: dict[str, Provider] = {p.name: p for p in (GenesysCloud(), GenesysSms(), WebexConnect(), Generic())}
