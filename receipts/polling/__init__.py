"""Polling Genesys Cloud: ``schedule`` (when a message is polled on its own, pure) and ``tiers`` (the
high-priority tier and the bulk reconciliation, which talk to the provider)."""
