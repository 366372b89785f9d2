"""Writes .env with fresh secrets the first time `make run` starts; never overwrites it."""

import base64
import os
import secrets
import sys
from pathlib import Path

ENV_FILE = Path(os.environ.get("ENV_FILE") or Path(__file__).resolve().parent.parent / ".env")


def main() -> None:
    if ENV_FILE.exists():
        return
    webhook_password = secrets.token_urlsafe(18)
    text = (
        "# Written by `make run` on first start. Every setting is documented in docs/configuration.md.\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"WEBHOOK_BASIC_AUTH=receipts:{webhook_password}\n"
        f"WEBHOOK_SECRET_GENESYS_CLOUD={secrets.token_hex(24)}\n"
        f"WEBHOOK_SECRET_GENESYS_SMS={secrets.token_urlsafe(24)}\n"
        f"WEBHOOK_SECRET_WEBEX_CONNECT={secrets.token_hex(24)}\n"
        f"WEBHOOK_SECRET_GENERIC=whsec_{base64.b64encode(secrets.token_bytes(24)).decode()}\n"
        f"METRICS_TOKEN={secrets.token_urlsafe(24)}\n"
    )
    # Readable by its owner only from the first byte (not chmod-ed after the secrets are on disk); O_EXCL: never
    # overwrite one that appeared meanwhile.
    descriptor = os.open(ENV_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as f:
        f.write(text)
    sys.stdout.write(f"Wrote {ENV_FILE.name} with fresh secrets (webhook credentials are in it).\n")


if __name__ == "__main__":
    main()
