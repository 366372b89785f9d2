"""The only code that writes messages, the inbox, suppressions, retries, review resolutions and escalations.

Views, admin actions, tasks and commands call these; look here before touching a model (Zulip's ``actions``).
A status transition becomes row fields in one place, ``transitions.write``, and every change the CRM hears about
is published (``receipts.events``) in the transaction that made it.

- ``ingest``: raw bodies into the inbox (webhooks and poll answers), orphans, replays
- ``messages``: registering a message for tracking
- ``process``: the inbox through the status machine onto the timeline
- ``transitions``: machine state -> row fields, and the ``status_changed`` event
- ``effects``: what a receipt means beyond the status (suppression, retries)
- ``suppression``: the suppression list and its history
- ``retries``: the retry policy and its sends
- ``review``: the receipt timeout, provider-unknown flags, operators' settlements
- ``escalation``: critical messages not delivered in time
- ``polls``: the polling tiers' bookkeeping (claims, schedules, counts)
"""
