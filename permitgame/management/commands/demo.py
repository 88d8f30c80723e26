"""``manage.py demo``: make sure a demo game waits in the lobby and print how to join it.

``make run`` calls this. The demo game has 6 labs (2 seats for humans, more students take bot
seats), a seat for a human governor, and starts by itself when those three seats are taken or
45 seconds after the first player joins. A demo game nobody has joined yet is reused.

With DEBUG on (local development) it also makes sure a demo instructor account exists, owning the
demo game and one finished all-bot class (so the console's debrief has something to show at
once), and prints its login for the console at /console/. Never with DEBUG off: a known password
has no place on a real server.
"""

from dataclasses import replace
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from permitgame import services
from permitgame.management.commands.creategame import game_urls
from permitgame.models import Game, Seat, Status
from sim_core import load_preset

DEMO_TITLE = "Demo game"
PLAYED_TITLE = "Demo class (played by bots)"
DEMO_DURATIONS = {"bidding": 60, "compliance": 45, "audit": 60, "results": 10}
DEMO_INSTRUCTOR = "demo"
DEMO_PASSWORD = "permitgame-demo"


def demo_instructor() -> Any:
    """Return the demo instructor, creating it with ``DEMO_PASSWORD`` if it does not exist."""
    users = get_user_model()
    user = users.objects.filter(username=DEMO_INSTRUCTOR).first()
    if user is None:
        user = users.objects.create_user(username=DEMO_INSTRUCTOR, password=DEMO_PASSWORD)
    return user


def demo_game(owner: Any = None) -> Game:
    """Return a demo game in the lobby that nobody has joined, creating one if needed."""
    waiting = (
        Game.objects.filter(title=DEMO_TITLE, status=Status.LOBBY, owner=owner)
        .exclude(pk__in=Seat.objects.filter(token__isnull=False).values("game_id"))
        .first()
    )
    if waiting is not None:
        return waiting
    scenario = load_preset("targeted_audit")
    scenario = scenario.with_changes(
        labs=replace(scenario.labs, count=6), market=replace(scenario.market, token_cap=3)
    )
    return services.game_create(
        scenario=scenario,
        human_labs=2,
        human_governor=True,
        durations=DEMO_DURATIONS,
        title=DEMO_TITLE,
        owner=owner,
        autostart=True,
        lobby_seconds=45,
    )


#: The finished demo class's seed: a typical all-bot class. Among the debrief's 300 simulated
#: classes of the preset it sits between the 38th and the 61st percentile on every compared
#: metric (compliance, price, violations, caught, welfare); the preset's own seed, 7, puts its
#: compliance at the 15th, which reads as "unlike bots" (tests/permitgame/test_story_debrief.py).
PLAYED_SEED = 41


def played_demo_game(owner: Any) -> Game:
    """Return the demo instructor's finished all-bot class, playing one out if need be."""
    game = Game.objects.filter(title=PLAYED_TITLE, owner=owner).first()
    if game is None:
        game = services.game_create(
            scenario=load_preset("targeted_audit"),
            seed=PLAYED_SEED,
            durations=DEMO_DURATIONS,
            title=PLAYED_TITLE,
            owner=owner,
        )
    if game.status == Status.PAUSED:  # a run of this command stopped half-way
        game = services.game_resume(game=game)
    return services.game_play_out(game=game)


class Command(BaseCommand):
    help = "Create (or reuse) a demo game and print its join code and URLs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--base-url", default="http://127.0.0.1:8000", help="where it is served"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        base_url = options["base_url"].rstrip("/")
        instructor = demo_instructor() if settings.DEBUG else None
        game = demo_game(instructor)
        played = played_demo_game(instructor) if instructor is not None else None
        urls = game_urls(game, base_url)
        self.stdout.write(f"Open {base_url}/ in a browser.")
        self.stdout.write(f"Demo game join code: {game.code}")
        self.stdout.write(f"  Join in a browser:   {urls['join_url']}  (open it on two browsers)")
        self.stdout.write(f"  Join from a program: POST {urls['api_join_url']}")
        self.stdout.write(
            f"  Bots for the empty seats: .venv/bin/python manage.py playbots {game.code} "
            f"--count 1 --url {base_url}"
        )
        self.stdout.write("  It starts when 3 players have joined, or 45 s after the first.")
        if instructor is not None:
            password = (
                DEMO_PASSWORD
                if instructor.check_password(DEMO_PASSWORD)
                else "(the one you set for it)"
            )
            self.stdout.write(f"Instructor console: {base_url}/console/")
            self.stdout.write(
                f"  Log in as {DEMO_INSTRUCTOR} / {password}  (local development only)"
            )
        if played is not None:
            self.stdout.write(
                f"  A finished class to explore: {base_url}/console/games/{played.code}/debrief/"
            )
