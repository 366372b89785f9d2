"""The GSM 03.38 character set (3GPP TS 23.038): what an SMS can carry as GSM-7; anything else goes as UCS-2
(Unicode). Campaigns count segments with it; senders say "Unicode" to a provider that asks (Webex Connect's
``channels.sms.type`` 4)."""

from __future__ import annotations

# The GSM 03.38 default alphabet in code order, 0x00 to 0x7F, sixteen to a row; 0x1B is the escape to the extension
# table, not a character. (3GPP TS 23.038 section 6.2.1; the Unicode mapping is ftp.unicode.org's GSM0338.TXT.)
GSM_DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
ESCAPE = 0x1B
# The extension table (3GPP TS 23.038 section 6.2.1.1): each is sent as ESC and its code, two septets.
GSM_EXTENSION_TABLE = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}
GSM_BASIC = frozenset(GSM_DEFAULT_ALPHABET) - {chr(ESCAPE)}
GSM_EXTENSION = frozenset(GSM_EXTENSION_TABLE.values())


def is_gsm7(text: str) -> bool:
    """``text`` is made only of the default alphabet and its extension table."""
    return all(c in GSM_BASIC or c in GSM_EXTENSION for c in text)
