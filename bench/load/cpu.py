"""CPU of the move path, the clock and the progress in one process, per room size.

``python -m bench.load.cpu --labs 30 200`` plays a game of three rounds in a room of human labs
through the services the sockets call (batches of moves, each phase's last batch and its
publish, the results deadline fired by the clock, the last one ending the game, the coalesced
progress; and the first round's end of bidding published again ``AGAIN`` times, whose median is
the steadiest figure of a publish), on a throwaway SQLite database, and prints the CPU time
(``time.thread_time``: what the work costs, whatever else the machine runs) and the queries of
each. No server, no sockets: what ``make bench-load`` measures end to end, taken apart.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any


def _cpu(work: Callable[[], Any]) -> tuple[float, Any]:
    started = time.thread_time()
    result = work()
    return (time.thread_time() - started) * 1000, result


#: How many times ``_publish_again`` publishes the same event.
AGAIN = 50


def _publish_again(game_id: int) -> float:
    """Publish the game's last event again and again, each time from its room with no view
    built yet (as the batch that made the version leaves it); the median CPU ms of one."""
    import dataclasses

    from permitgame import broadcast, selectors
    from permitgame.models import Game

    game = Game.objects.get(pk=game_id)
    room = selectors._room(game)
    events = [("market", game.round_no), ("phase", game.round_no)]

    def publish() -> None:
        broadcast.publish(game_id=game_id, seq=game.seq, events=events)

    costs = []
    for _ in range(AGAIN):
        fresh = dataclasses.replace(room, labs={}, governor=None, columns=None)
        selectors._rooms.keep(game_id, fresh)
        costs.append(_cpu(publish)[0])
    return statistics.median(costs)


def room(labs: int, batch: int, rounds: int = 3) -> dict[str, float]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from permitgame import broadcast, clock, services, ticker
    from permitgame.models import Action, Game, Seat
    from permitgame.services import MoveCommand
    from sim_core import load_scenario, sweep_scenario

    scenario = sweep_scenario(load_scenario("targeted_audit"), labs=labs, rounds=rounds)
    durations = {"bidding": 120, "compliance": 120, "audit": 120, "results": 5}
    rng = random.Random(1)
    out: dict[str, list[float]] = {}

    def note(name: str, ms: float) -> None:
        out.setdefault(name, []).append(ms)

    def record(commands: list[MoveCommand], name: str) -> None:
        later: list[Callable[[], None]] = []

        def moves() -> Any:
            return services.round_submit_moves(
                game_id=game.pk, commands=commands, publish_later=later
            )

        ms, _ = _cpu(moves)
        note(name, ms)
        if later:
            note(f"{name}, its publish", _cpu(lambda: [publish() for publish in later])[0])

    def batches(commands: list[MoveCommand], name: str) -> None:
        for start in range(0, len(commands) - 1, batch):
            record(commands[start : min(start + batch, len(commands) - 1)], f"batch of {batch}")
        record(commands[-1:], name)

    with clock.frozen() as frozen:
        game = services.game_create(
            scenario=scenario,
            human_labs=labs,
            human_governor=True,
            durations=durations,
            autostart=True,
        )
        joins = [
            _cpu(lambda i=i: services.seat_join(game=game, nickname=f"p{i}"))[0]
            for i in range(labs + 1)
        ]
        note("join", statistics.median(joins))
        seats = list(Seat.objects.filter(game=game).order_by("id"))
        labs_seats = [s for s in seats if s.role == "lab"]
        governor = next(s for s in seats if s.role == "governor")
        for round_no in range(1, rounds + 1):
            bids = [
                MoveCommand(s.pk, Action.BID, round_no, {"amount": round(rng.uniform(0, 2), 2)})
                for s in labs_seats
            ]
            batches(bids, "the bid that ends bidding")
            if round_no == 1:
                note(f"its publish again, {AGAIN} times (median)", _publish_again(game.pk))
            broadcast.flush_progress(game.pk)  # a phase's first progress reads the room
            note("progress", _cpu(lambda: broadcast.flush_progress(game.pk))[0])
            from permitgame import selectors

            fresh = Game.objects.get(pk=game.pk)
            owed = selectors.game_screens(fresh).public.waiting_for
            decisions = [
                MoveCommand(s.pk, Action.DECIDE, round_no, {"run": rng.random() < 0.5})
                for s in labs_seats
                if s.player_id in owed
            ]
            batches(decisions, "the choice that ends compliance")
            record(
                [MoveCommand(governor.pk, Action.AUDIT, round_no, {"labs": []})],
                "the audit that settles the round",
            )
            frozen.advance(durations["results"] + 1)
            with CaptureQueriesContext(connection) as queries:
                ms, _ = _cpu(lambda: ticker.tick(heartbeat=False, progress=False))
            # The last round's deadline ends the game: its game_over carries the standings, and
            # the governor's scores against the bot policies over every round.
            deadline = "results deadline" if round_no < rounds else "the deadline that ends it"
            note(f"{deadline}, with its publish", ms)
            note(f"{deadline}, queries", len(queries.captured_queries))
    return {name: statistics.median(values) for name, values in out.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.load.cpu", description=__doc__)
    parser.add_argument("--labs", type=int, nargs="+", default=[30, 200])
    parser.add_argument("--batch", type=int, default=10, help="moves per batch (default 10)")
    args = parser.parse_args(argv)
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/db.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "permitgame.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    results = {labs: room(labs, args.batch) for labs in args.labs}
    names = list(next(iter(results.values())))
    print(f"| CPU ms (median) | {' | '.join(f'{labs} labs' for labs in results)} |")
    print(f"|---|{'---|' * len(results)}")
    for name in names:
        cells = " | ".join(f"{results[labs].get(name, float('nan')):.1f}" for labs in results)
        print(f"| {name} | {cells} |")


if __name__ == "__main__":
    main()
