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
        self.stdout.write(
            f"\n{bar}\nCreated the admin account (shown once, keep it):\n"
            f"  http://127.0.0.1:8000/admin/\n  user: {username}\n  password: {password}\n{bar}\n"
        )
