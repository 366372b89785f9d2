"""Genesys Cloud CX: the webhook parser and code tables (``parser``), the Platform API client (``client``), the
analytics answers read as receipts (``analytics``) and agentless sending (``sender``)."""
