"""``manage.py playbots CODE --count N [--strategy NAME] [--url URL]``: N protocol clients play.

Each joins game CODE over HTTP, then plays its seat to the end over the JSON websocket protocol
(``permitgame.client``); the final standings are printed.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from permitgame.client import ClientError, JoinInfo, Player, add_reconnect_arguments, join
from sim_core import STRATEGIES


class Command(BaseCommand):
    help = "Join N clients of the JSON protocol to a game; they play to the end."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code", help="the join code")
        parser.add_argument("--count", type=int, required=True, help="how many clients")
        parser.add_argument("--strategy", default="rational", choices=sorted(STRATEGIES))
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the server")
        parser.add_argument("--seed", type=int, help="seed of the clients' own randomness")
        add_reconnect_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        count = options["count"]
        if count < 1:
            raise CommandError("--count must be at least 1")
        tag = secrets.token_hex(2)
        infos: list[JoinInfo] = []
        for index in range(1, count + 1):
            try:
                infos.append(join(options["url"], options["code"], f"bot-{tag}-{index}"))
            except ClientError as error:
                raise CommandError(f"joining failed: {error.message}") from None
            except OSError as error:
                raise CommandError(f"cannot reach {options['url']}: {error}") from None
        for info in infos:
            self.stdout.write(f"{info.nickname}: {info.role} {info.player_id}")
        seed = options["seed"]
        players = [
            Player(
                info,
                strategy=options["strategy"],
                seed=None if seed is None else seed + i,
                reconnect_seconds=options["reconnect_seconds"],
                reconnect_cap=options["reconnect_cap"],
            )
            for i, info in enumerate(infos)
        ]

        async def play_all() -> list[dict[str, Any]]:
            return await asyncio.gather(*(player.play() for player in players))

        results = asyncio.run(play_all())
        standings = results[0].get("standings") or []
        self.stdout.write("Game over. Final standings:")
        for row in standings:
            self.stdout.write(
                f"  {row['rank']:>2}. lab {row['player_id']:<3} {row['nickname'] or '(bot)':<20} "
                f"{row['score']:.3f}"
            )
