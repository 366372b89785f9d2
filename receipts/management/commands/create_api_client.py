from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from receipts.models import ApiClient


class Command(BaseCommand):
    help = "Create an API client and print its token (shown once; only its hash is stored) as the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")
        parser.add_argument(
            "--scopes", default="read,write", help="Comma-separated: read, write (default: read,write)."
        )

    def handle(self, *args: Any, name: str, scopes: str, **options: Any) -> None:
        wanted = [s.strip() for s in scopes.split(",") if s.strip()]
        unknown = sorted(set(wanted) - set(ApiClient.Scope.values))
        if unknown or not wanted:
            raise CommandError(f"unknown scope(s) {unknown}; choose from {ApiClient.Scope.values}")
        if ApiClient.objects.filter(name=name).exists():
            raise CommandError(f"an API client named {name!r} exists already")
        client, token = ApiClient.issue(name, wanted)
        self.stderr.write(f"Created API client {client.name!r} with scopes {','.join(wanted)}. Token:")
        self.stdout.write(token)
