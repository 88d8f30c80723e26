"""``manage.py replay_game CODE`` / ``--bundle FILE``: verify a game's log and replay its rounds.

With a code: the game in this database; ``--save-bundle FILE`` also writes it as a bundle. With
``--bundle FILE``: a bundle downloaded from any PermitGame server, checked without a database
row (its hash chain, then every round replayed through sim_core).
"""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from permitgame.chain import ChainReport
from permitgame.errors import UnknownGame
from permitgame.replay import (
    BadBundle,
    ReplayReport,
    game_bundle,
    replay_bundle,
    replay_game,
    verify_game_chain,
)
from permitgame.selectors import game_by_code


class Command(BaseCommand):
    help = (
        "Verify a game's hash-chained log and replay its settled rounds from its seed, scenario "
        "and move log through sim_core, comparing them with the stored results. Exits with "
        "status 1 if the chain is broken or any round differs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code", nargs="?", help="the game's join code")
        parser.add_argument(
            "--bundle", metavar="FILE", help="replay a downloaded game bundle (no database)"
        )
        parser.add_argument(
            "--save-bundle", metavar="FILE", help="also write the game as a bundle to FILE"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["bundle"]:
            if options["code"]:
                raise CommandError("give a game code or --bundle FILE, not both")
            chain, report = self._from_bundle(Path(options["bundle"]))
        else:
            if not options["code"]:
                raise CommandError("give a game code, or --bundle FILE")
            try:
                game = game_by_code(options["code"])
            except UnknownGame as error:
                raise CommandError(str(error)) from None
            chain, report = verify_game_chain(game), replay_game(game)
            if options["save_bundle"]:
                Path(options["save_bundle"]).write_text(json.dumps(game_bundle(game)))
        if options["json"]:
            self.stdout.write(json.dumps({**report.as_dict(), "chain": chain.as_dict()}))
        else:
            for check in report.rounds:
                verdict = "same" if check.ok else "DIFFERS in " + ", ".join(check.differing)
                self.stdout.write(f"round {check.round_no:>3}: {verdict}")
            self.stdout.write(chain.summary())
            self.stdout.write(report.summary())
        if not chain.ok:
            raise CommandError(chain.problem, returncode=1)
        if not report.ok:
            raise CommandError("the stored results differ from the replay", returncode=1)

    def _from_bundle(self, path: Path) -> tuple[ChainReport, ReplayReport]:
        try:
            bundle = json.loads(path.read_text())
        except OSError as error:
            raise CommandError(f"cannot read {path}: {error.strerror}") from None
        except ValueError:
            raise CommandError(f"{path} is not JSON") from None
        try:
            return replay_bundle(bundle)
        except BadBundle as error:
            raise CommandError(f"{path}: {error}") from None
