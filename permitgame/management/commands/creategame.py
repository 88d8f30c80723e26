"""``manage.py creategame``: create a game from a preset or a scenario file; print how to join.

    python manage.py creategame --scenario targeted_audit --labs 6 --human-labs 2 \\
        --human-governor --phase-seconds 30 --seed 7 [--json]

The game starts by itself once every human seat is taken (``--start``: at once, with bots in
the empty seats until someone joins).
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from permitgame import services
from permitgame.models import Game
from sim_core import ScenarioError, SweepError, load_scenario, sweep_scenario

#: The results screen lasts at most this long when --phase-seconds is given.
RESULTS_SECONDS = 5


def game_urls(game: Game, base_url: str) -> dict[str, str]:
    """Return where to join and play ``game`` on the server at ``base_url``."""
    base = base_url.rstrip("/")
    ws_base = base.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
    return {
        "join_url": f"{base}/join/{game.code}/",
        "api_join_url": f"{base}/api/games/{game.code}/join",
        "ws_url": f"{ws_base}/ws/api/games/{game.code}/?token=<token>",
        "play_url": f"{base}/play/{game.code}/",
    }


class Command(BaseCommand):
    help = "Create a game and print its join code and URLs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--scenario", required=True, help="a preset name or a scenario file")
        parser.add_argument(
            "--labs",
            type=int,
            help="number of labs (overrides the scenario; the permit cap scales with it)",
        )
        parser.add_argument("--cap", type=int, help="permits per round (overrides the scenario)")
        parser.add_argument("--human-labs", type=int, default=0, help="lab seats for humans")
        parser.add_argument("--human-governor", action="store_true", help="a human governs")
        parser.add_argument(
            "--phase-seconds", type=int, help="seconds for bidding, compliance and audit"
        )
        parser.add_argument(
            "--results-seconds",
            type=int,
            help="seconds the results screen stays (0: move on at once; default: at most 5, "
            "not more than --phase-seconds)",
        )
        parser.add_argument("--seed", type=int, help="the game's seed (default: the scenario's)")
        parser.add_argument("--title", default="", help="a label for the game")
        parser.add_argument(
            "--coaching",
            choices=["full", "numbers", "none"],
            default="full",
            help="what the run-or-idle screen works out for a lab (default: full)",
        )
        parser.add_argument(
            "--ask-belief",
            action="store_true",
            help="ask labs without a permit how likely a violator is caught (one tap, optional)",
        )
        parser.add_argument("--start", action="store_true", help="start now, bots in empty seats")
        parser.add_argument(
            "--live-standings",
            action="store_true",
            help="each lab sees its place after every round (default: at game over only)",
        )
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where it is served"
        )
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            scenario = load_scenario(options["scenario"])
        except ScenarioError as error:
            raise CommandError(str(error)) from None
        try:
            # The cap scales with the number of labs, so a smaller class keeps the scarcity.
            scenario = sweep_scenario(scenario, labs=options["labs"], token_cap=options["cap"])
        except SweepError as error:
            raise CommandError(f"--labs or --cap: {error}") from None
        seconds = options["phase_seconds"]
        durations = None
        if seconds is not None:
            if seconds < 1:
                raise CommandError("--phase-seconds must be at least 1")
            durations = {
                "bidding": seconds,
                "compliance": seconds,
                "audit": seconds,
                "results": min(seconds, RESULTS_SECONDS),
            }
        if options["results_seconds"] is not None:
            if options["results_seconds"] < 0:
                raise CommandError("--results-seconds must be at least 0")
            durations = {**(durations or {}), "results": options["results_seconds"]}
        try:
            game = services.game_create(
                scenario=scenario,
                human_labs=options["human_labs"],
                human_governor=options["human_governor"],
                live_standings=options["live_standings"],
                seed=options["seed"],
                durations=durations,
                title=options["title"],
                autostart=True,
                coaching=options["coaching"],
                ask_belief=options["ask_belief"],
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
        if options["start"]:
            game = services.game_start(game=game)
        urls = game_urls(game, options["base_url"])
        if options["json"]:
            self.stdout.write(
                json.dumps(
                    {
                        "code": game.code,
                        **urls,
                        "scenario": scenario.name,
                        "labs": scenario.labs.count,
                        "token_cap": scenario.market.token_cap,
                        "human_labs": options["human_labs"],
                        "human_governor": options["human_governor"],
                        "seed": game.seed,
                        "rounds": scenario.rounds,
                        "status": game.status,
                    }
                )
            )
            return
        self.stdout.write(f"Join code:  {game.code}")
        self.stdout.write(f"Join page:  {urls['join_url']}")
        self.stdout.write(f'API join:   POST {urls["api_join_url"]}  {{"nickname": ...}}')
        self.stdout.write(f"Websocket:  {urls['ws_url']}")
        self.stdout.write(
            f"{scenario.name}: {scenario.labs.count} labs ({options['human_labs']} for humans), "
            f"cap {scenario.market.token_cap}, "
            f"governor {'human' if options['human_governor'] else 'bot'}, "
            f"{scenario.rounds} rounds, seed {game.seed}; status {game.status}"
        )
