"""Create the benchmark's games through the project's own services (run in a subprocess).

``python -m bench.load.gamectl --labs N --games G`` prints one JSON list of join codes. Every lab
seat and the governor's seat wait for a human, and each game starts by itself when its last seat
is taken (``autostart``), from the server that took that join: no instructor login is needed and
the start is broadcast by the server, as a class's is.
"""

from __future__ import annotations

import argparse
import json
import os

SCENARIO = "targeted_audit"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labs", type=int, required=True)
    parser.add_argument("--games", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--move-seconds", type=int, default=120, help="bidding, compliance, audit")
    parser.add_argument("--results-seconds", type=int, default=1, help="the results phase")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "permitgame.settings")
    import django

    django.setup()
    from permitgame import services
    from sim_core import load_scenario, sweep_scenario

    scenario = sweep_scenario(load_scenario(SCENARIO), labs=args.labs, rounds=args.rounds)
    durations = {
        "bidding": args.move_seconds,
        "compliance": args.move_seconds,
        "audit": args.move_seconds,
        "results": args.results_seconds,
    }
    codes = [
        services.game_create(
            scenario=scenario,
            human_labs=args.labs,
            human_governor=True,
            durations=durations,
            title=f"bench-load {index + 1}",
            autostart=True,
        ).code
        for index in range(args.games)
    ]
    print(json.dumps(codes))


if __name__ == "__main__":
    main()
