"""A local simulator of the providers: Genesys Cloud CX (OAuth, agentless SMS and email, message details, bulk,
analytics jobs), the Genesys SMS Aggregation Service (MT send) and Webex Connect (v1 messaging send). It moves every
message through its statuses on a schedule and an outcome mix, pushes receipts to the app's webhooks in each
provider's format, and injects 429s, 5xx and latency. See docs/simulator.md.
"""

from simulator.config import SimConfig, parse_mix
from simulator.server import SimulatorServer

__all__ = ["SimConfig", "SimulatorServer", "parse_mix"]
