"""The REST API the CRM calls: messages, suppressions; token auth, cursor pagination, one error shape."""
