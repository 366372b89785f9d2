from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from receipts.models import ApiClient


class Command(BaseCommand):
    help = "Revoke an API client's token."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        updated = ApiClient.objects.filter(name=name, revoked_at=None).update(revoked_at=timezone.now())
        if not updated:
            raise CommandError(f"no active API client named {name!r}")
        self.stdout.write(f"Revoked {name!r}.")
