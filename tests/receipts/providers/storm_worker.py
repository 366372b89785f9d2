"""One worker process for the shared-budget test: the real client, built from settings (the environment), asking
for message details as fast as it is let for ``--seconds``, then printing what happened as JSON.

    python -m tests.receipts.providers.storm_worker --seconds 5 --ids id1,id2,...
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--ids", required=True)
    parser.add_argument("--start-at", type=float, default=0.0, help="wall-clock start time")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from receipts.providers.genesys_cloud.client import GenesysCloudClient, GenesysCloudError

    client = GenesysCloudClient.from_settings()
    ids = args.ids.split(",")
    outcomes: Counter[str] = Counter()
    if args.start_at:
        time.sleep(max(0.0, args.start_at - time.time()))
    deadline = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < deadline:
        try:
            client.message_details(ids[n % len(ids)])
            outcomes["ok"] += 1
        except GenesysCloudError as exc:
            outcomes[exc.code or str(exc.status)] += 1
            if exc.code == "ratelimit.budget":
                time.sleep(0.05)  # refused at home: ask again soon, without spinning
        n += 1
    json.dump({"calls": n, "outcomes": outcomes, "counters": client.limits.counters()}, sys.stdout)


if __name__ == "__main__":
    main()
