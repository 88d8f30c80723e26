"""``manage.py exportgame``: write games' data as tidy CSV tables for analysis.

    python manage.py exportgame K7P3QX Q2W8RT --out data/
    python manage.py exportgame --finished --out data/

writes ``labs.csv`` (one row per game, round and lab), ``metrics.csv`` (one row per game and
round), ``log.csv`` (every event) and ``games.json`` (each game's scenario, seed and seats), the
rows of several games one after another with a ``game`` column.
"""

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from permitgame.errors import UnknownGame
from permitgame.exports import COLUMNS, TABLES, csv_text
from permitgame.models import Game, Status
from permitgame.selectors import game_by_code


class Command(BaseCommand):
    help = "Export games (labs, metrics, log) as CSV files, and their scenarios as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("codes", nargs="*", help="join codes of the games to export")
        parser.add_argument("--finished", action="store_true", help="every finished game")
        parser.add_argument("--out", required=True, help="folder to write to (created if need be)")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            games = [game_by_code(code) for code in options["codes"]]
        except UnknownGame as error:
            raise CommandError(str(error)) from None
        if options["finished"]:
            finished = Game.objects.filter(status=Status.FINISHED).order_by("created_at")
            games += [game for game in finished if game not in games]
        if not games:
            raise CommandError("name at least one game by its code, or give --finished")
        out = Path(options["out"])
        out.mkdir(parents=True, exist_ok=True)
        for name, rows_of in TABLES.items():
            rows = [row for game in games for row in rows_of(game)]
            (out / f"{name}.csv").write_text(csv_text(rows, COLUMNS[name]), encoding="utf-8")
        described = [
            {
                "code": game.code,
                "title": game.title,
                "status": game.status,
                "seed": game.seed,
                "human_governor": game.human_governor,
                "rounds_played": game.records.count(),
                "created_at": game.created_at.isoformat(),
                "scenario": game.scenario,
                "seats": [
                    {
                        "player": seat.player_id,
                        "role": seat.role,
                        "kind": seat.kind,
                        "nickname": seat.nickname,
                        "fallback_strategy": seat.fallback_strategy,
                    }
                    for seat in game.seats.all()
                ],
            }
            for game in games
        ]
        (out / "games.json").write_text(json.dumps(described, indent=2), encoding="utf-8")
        self.stdout.write(
            f"Wrote {len(games)} game(s) to {out}/: labs.csv, metrics.csv, log.csv, games.json"
        )
