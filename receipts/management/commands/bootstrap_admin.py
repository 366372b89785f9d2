import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create the first admin account if there is none, and print its password once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: Any, username: str, **options: Any) -> None:
        users = get_user_model().objects
        if users.filter(is_superuser=True).exists():
            return
        password = secrets.token_urlsafe(12)
        users.create_superuser(username=username, email="", password=password)
        bar = "=" * 72
        host = os.environ.get("WEB_HOST", "127.0.0.1")
        if host in ("0.0.0.0", "::", ""):  # noqa: S104 - listening everywhere: this machine answers on loopback
            host = "127.0.0.1"
        address = f"http://{host}:{os.environ.get('WEB_PORT', '8000')}"
        self.stdout.write(
            f"\n{bar}\nCreated the admin account (shown once, keep it):\n"
            f"  {address}/admin/\n  user: {username}\n  password: {password}\n"
            f"(forgot it? .venv/bin/python manage.py changepassword {username})\n{bar}\n"
        )
