"""``manage.py demo``: say what to open once the server is up.

The game server will grow this into "create a demo game and print its join links".
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Print what to open in a browser to try PermitGame locally."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where it is served"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["base_url"].rstrip("/")
        self.stdout.write(f"Open {base_url}/ in a browser.")
