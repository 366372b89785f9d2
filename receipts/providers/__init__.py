"""One module (or package) per provider, each holding everything its wire format needs: webhook auth and parser,
code tables, client and sender. ``base`` is what they share, ``registry`` finds them by name, ``senders`` picks
the sender for a provider, ``limits`` is the rate budget and circuit breaker shared by every process.

Nothing is imported here: ``limits`` runs without Django (the limits tests start plain processes)."""
