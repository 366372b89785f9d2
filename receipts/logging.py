"""Phone numbers and email addresses never reach the logs whole: not in messages, tracebacks or stored errors."""

import logging
import re

# An email address, also with its @ URL-encoded (%40) or JSON-escaped (\u0040).
EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*(?:@|%40|\\u0040)([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A number with a leading + (any separators; also URL-encoded, %2B), ten or more bare digits, or a national
# number written in groups (555-123-4567, (555) 123-4567); the look-arounds keep UUIDs, hashes and times out.
PHONE = re.compile(
    r"(?<![\w\-:.])(?:(?:\+|%2[Bb])\d[\d\s().-]{5,}|\d{8,}|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{2})(\d{2})(?![\w\-:])"
)


def mask(text: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``; ``+15551234567`` -> ``***67``."""
    text = EMAIL.sub(r"\1***@\2", text)
    return PHONE.sub(r"***\1", text)


class MaskAddressesFilter(logging.Filter):
    """Masks each record's message and its traceback (a database error's DETAIL, LINE and CONTEXT can quote the
    row), before any handler formats it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = record.getMessage()
            record.args = None
        if isinstance(record.msg, str):
            record.msg = mask(record.msg)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True
