"""What a lecture hall's joins cost the servers: CPU per join, with no game started.

``python -m bench.load.joins --setup two --labs 30 --games 20`` starts the setup's servers (as
``make bench-load`` does), creates ``games`` lobbies of ``labs`` human labs and a human governor,
and joins every seat but the last of each (the last would start the game): each join is the
HTTP join, the websocket's handshake and its first ``state``, a hundred at once, spread over the
servers as the load benchmark spreads them. It prints the game servers' CPU per join, the CPU of
PostgreSQL and Redis per join (the setups that have them), how long the joins took and the
joins' median time. Nothing is played: what a room costs while the others fill up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from typing import Any

from bench.load import clients, servers


async def measure(setup: servers.Setup, *, labs: int, games: int) -> dict[str, Any]:
    with servers.serve(setup) as served:
        codes = servers.create_games(served, labs=labs, games=games, rounds=3).codes
        runs = clients.make_runs(
            codes, players=labs, rounds=3, game_urls=[d.url for d in served.game], seed=1
        )
        # Every seat but the last of each lobby: the last would start the game.
        players = [player for run in runs for player in run.players[:-1]]
        stop = asyncio.Event()
        gate = asyncio.Semaphore(clients.JOINING_AT_ONCE)
        before = servers.CpuTimes.now(served)
        started = time.monotonic()

        sockets = await asyncio.gather(*(clients.take_seat(p, gate, stop) for p in players))
        wall = time.monotonic() - started
        spent = servers.CpuTimes.now(served) - before
        stop.set()
        await asyncio.sleep(0.2)
        for task in sockets:
            task.cancel()
        await asyncio.gather(*sockets, return_exceptions=True)
    joined = len(players)
    return {
        "setup": setup.name,
        "joins": joined,
        "seconds": round(wall, 2),
        "server_cpu_ms_per_join": round(1000 * spent.servers / joined, 2),
        "database_cpu_ms_per_join": round(1000 * spent.databases / joined, 2)
        if setup.redis_postgres
        else None,
        "join_seconds_p50": round(statistics.median(p.join_seconds or 0 for p in players), 3),
        "load_average": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setup", choices=sorted(servers.SETUPS), default="two")
    parser.add_argument("--labs", type=int, default=30, help="labs a lobby (default 30)")
    parser.add_argument("--games", type=int, default=20, help="lobbies (default 20)")
    args = parser.parse_args(argv)
    if args.labs < 1 or args.games < 1:
        parser.error("--labs and --games must be at least 1")
    result = asyncio.run(measure(servers.SETUPS[args.setup], labs=args.labs, games=args.games))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
