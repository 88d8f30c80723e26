"""``manage.py replay_game CODE``: recompute a game from its seed and move log, compare results."""

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from permitgame.errors import UnknownGame
from permitgame.replay import replay_game
from permitgame.selectors import game_by_code


class Command(BaseCommand):
    help = (
        "Replay a game's settled rounds from its seed, scenario and move log through sim_core "
        "and compare them with the stored results. Exits with status 1 if any round differs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code", help="the game's join code")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            game = game_by_code(options["code"])
        except UnknownGame as error:
            raise CommandError(str(error)) from None
        report = replay_game(game)
        if options["json"]:
            self.stdout.write(json.dumps(report.as_dict()))
        else:
            for check in report.rounds:
                verdict = "same" if check.ok else "DIFFERS in " + ", ".join(check.differing)
                self.stdout.write(f"round {check.round_no:>3}: {verdict}")
            self.stdout.write(report.summary())
        if not report.ok:
            raise CommandError("the stored results differ from the replay", returncode=1)
