"""Every provider by name (``genesys_cloud``, ``genesys_sms``, ``webex_connect``, ``generic``): its webhook side
(how the webhook view authenticates a caller and how processing parses a stored body) and its capabilities (what it
sends on, from which sender identities, whether a resend is safe, whose breaker, its answer codes, its webhook URL),
each declared on the provider's own module."""

from receipts.providers import generic, genesys_sms, webex_connect
from receipts.providers.base import Capabilities, Provider
from receipts.providers.generic import Generic
from receipts.providers.genesys_cloud import sender as genesys_cloud
from receipts.providers.genesys_cloud.parser import GenesysCloud
from receipts.providers.genesys_sms import GenesysSms
from receipts.providers.webex_connect import WebexConnect

PROVIDERS: dict[str, Provider] = {p.name: p for p in (GenesysCloud(), GenesysSms(), WebexConnect(), Generic())}
CAPABILITIES: dict[str, Capabilities] = {
    c.name: c
    for c in (genesys_cloud.CAPABILITIES, genesys_sms.CAPABILITIES, webex_connect.CAPABILITIES, generic.CAPABILITIES)
}
NOTHING = Capabilities(name="", webhook="")


def capabilities(provider: str) -> Capabilities:
    """The provider's declared capabilities; a name no module declares can do nothing."""
    return CAPABILITIES.get(provider, NOTHING)
