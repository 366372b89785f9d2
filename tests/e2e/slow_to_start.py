"""A WSGI app that takes SLOW_START_SECONDS to import, as the real one does on a starved machine (granian took
33-155 s to answer its first request at load 52-71 on 2 cores)."""

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

time.sleep(float(os.environ["SLOW_START_SECONDS"]))


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
