"""Celery's filesystem broker, made safe for several processes (the embedded default).

kombu's filesystem transport creates a message file and then writes it; a consumer listing the folder in
between moves the empty file away, fails to decode it and takes the worker down ("Unrecoverable error:
JSONDecodeError"), which we saw under `make demo`'s load. Here a message is written under a name consumers
ignore and renamed into place once complete: a rename is atomic on one filesystem.

A worker on this transport waits for messages in slices of one polling interval and stops waiting as soon as it
is asked to stop: kombu waits its whole timeout, and Celery's loop for such transports waits once more (2 s each)
after the stop was asked, which made every idle worker take about 4 s more to stop.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    # The signature of kombu's filesystem.Channel._put (untyped), which this replaces; mypy checks it against
    # the abstract base's _put(queue, message), whose second parameter has another name and no **kwargs.
    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        filename = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, filename)
        # A leading dot: `_get` matches on the text after the first dot, which is no longer "<queue>.msg".
        partial = os.path.join(self.data_folder_out, f".{filename}.partial")
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {filename!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel

    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:  # type: ignore[override]
        from celery.worker import state

        started = monotonic()
        step = self.polling_interval or 0.2
        while True:
            if state.should_stop is not None or state.should_terminate is not None:
                raise TimeoutError()  # what an empty wait raises: the worker's loop then sees the stop
            left = None if timeout is None else timeout - (monotonic() - started)
            try:
                return super().drain_events(connection, timeout=step if left is None else max(min(step, left), 0.01))
            except TimeoutError:
                if left is not None and left <= step:
                    raise
