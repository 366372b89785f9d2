"""Which ``Sender`` sends for a provider: the retry policy calls ``sender_for(provider)``.

A sender registered in code (``register_sender``: tests, an integration of your own) wins, then the ``SENDERS``
setting's (``provider=dotted.path.to.SenderClass``), then the provider's built-in sender when its credentials are
set. Built-in senders point at the real services in production and at the provider simulator in the demo and the
tests (their base URLs are settings).
"""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from receipts.providers.base import Sender
from receipts.providers.registry import capabilities

_senders: dict[str, Sender] = {}


def register_sender(provider: str, sender: Sender) -> None:
    _senders[provider] = sender


def unregister_sender(provider: str) -> None:
    _senders.pop(provider, None)


def sender_for(provider: str) -> Sender | None:
    """A registered sender, else the ``SENDERS`` setting's, else the built-in one when its provider is configured."""
    if provider not in _senders and settings.SENDERS.get(provider):
        _senders[provider] = import_string(settings.SENDERS[provider])()
    if provider in _senders:
        return _senders[provider]
    return configured_sender(provider)


def configured_sender(provider: str) -> Sender | None:
    """The provider's built-in sender (its module's ``CAPABILITIES.sender``), once its credentials are set."""
    declared = capabilities(provider)
    if declared.sender is None or not declared.configured():
        return None
    sender: Sender = declared.sender()
    return sender
