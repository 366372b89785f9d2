"""Phone numbers and email addresses never reach the logs whole: not in messages, tracebacks or stored errors."""

import logging
import re

# An email address, also with its @ URL-encoded (%40) or JSON-escaped (\u0040), is found from its separator: the
# pattern below matches the separator and the domain, and the local part is read leftwards from there. A single
# pattern for the whole address (as before) was tried from every position of a run of letters and walked the rest
# of the run each time: quadratic, 66 s for one logged 404 with 16,000 letters in its path. Found from the
# separator, each character is read a bounded number of times (a domain ends at the next separator; the local part
# is read back no further than the last address masked). tests/receipts/test_masking_is_linear.py times every
# pattern against a plain scan of 1 MiB of adversarial text.
LOCAL_PART = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
SEPARATOR_AND_DOMAIN = re.compile(r"(?:@|%40|\\u0040)([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A number with a leading + (any separators; also URL-encoded, %2B), ten or more bare digits, or a national
# number written in groups (555-123-4567, (555) 123-4567); the look-arounds keep UUIDs, hashes and times out.
PHONE = re.compile(
    r"(?<![\w\-:.])(?:(?:\+|%2[Bb])\d[\d\s().-]{5,}|\d{8,}|\(?\d{3}\)?[\s.-]\d{3}[\s.-]\d{2})(\d{2})(?![\w\-:])"
)


def mask(text: str) -> str:
    """``alice@example.com`` -> ``a***@example.com``; ``+15551234567`` -> ``***67``."""
    return PHONE.sub(r"***\1", mask_emails(text))


def mask_emails(text: str) -> str:
    """Each address's local part but its first character becomes ``***``; the domain stays (it says which
    provider bounced)."""
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    for found in SEPARATOR_AND_DOMAIN.finditer(text):
        start = found.start()
        while start > done and text[start - 1] in LOCAL_PART:
            start -= 1
        if start == found.start():
            continue  # nothing before the @: not an address
        pieces += (text[done:start], text[start], "***@", found.group(1))
        done = found.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


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
