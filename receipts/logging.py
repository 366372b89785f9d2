"""Phone numbers and email addresses never reach the logs whole."""

import logging
import re

EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A number with a leading + (any separators), or ten or more bare digits; the look-arounds keep UUIDs,
# hashes and timestamps out.
PHONE = re.compile(r"(?<![\w\-:.])(?:\+\d[\d\s().-]{5,}|\d{8,})(\d{2})(?![\w\-:])")


def mask(text: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``; ``+15551234567`` -> ``***67``."""
    text = EMAIL.sub(r"\1***@\2", text)
    return PHONE.sub(r"***\1", text)


class MaskAddressesFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        return True
