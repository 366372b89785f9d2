from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from receipts.actions.retention import erase_address
from receipts.logging import mask


class Command(BaseCommand):
    help = (
        "Erase everything held about one address on request: its messages with their timelines, the raw inbox "
        "bodies that carry it, its soft bounces and suppressions, the contacts with it, the text of the sends to "
        "it (docs/operating.md lists every place). Leaves an audit line naming the address by its hash only, which "
        "blocks the address until an operator allows it again (Erasures -> Allow an erased address again)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("address", help="a phone number (any format) or an email address")
        parser.add_argument("--by", required=True, help="who asked, for the audit line (a ticket, a name)")
        parser.add_argument("--note", default="", help="why, for the audit line")
        parser.add_argument("--channel", choices=["sms", "email"], help="default: email if it has an @, else sms")

    def handle(self, *args: Any, address: str, by: str, note: str, channel: str | None, **options: Any) -> None:
        try:
            erasure = erase_address(address, requested_by=by, note=note, channel=channel)
        except ValueError as exc:
            raise CommandError(mask(str(exc))) from exc
        self.stdout.write(
            f"Erased {erasure.channel} {mask(address)}: {erasure.messages} message(s), {erasure.inbox_rows} raw "
            f"inbox row(s), {erasure.soft_bounces} soft bounce(s), {erasure.suppressions} suppression(s)"
            + "".join(f", {rows} {label}" for label, rows in erasure.others.items())
            + f". Audit line {erasure.pk}; the address is blocked until allowed again."
        )
