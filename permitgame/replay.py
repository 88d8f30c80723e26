"""Replaying a game from its seed, its scenario and its move log, to check the stored results.

The truth of a game is *seed + scenario + move log* (MODEL.md §11); every ``RoundRecord`` is a
cache. ``replay_game`` recomputes each settled round through the one resolver, starting from the
initial state and chaining its own states (never a stored one), and compares every stored field
with the recomputed one. The admin's "replay" action and ``manage.py replay_game`` use it; a
mismatch means a record was changed after the fact or a rule changed since the game was played.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from permitgame.bridge import record_fields, round_inputs, round_moves, setup_of
from permitgame.models import Game, RoundRecord
from sim_core import SimCoreError, initial_state, resolve_round

#: Stored fields compared with the replay (everything but bookkeeping).
COMPARED = ("state", "next_state", "values", "bids", "won", "price", "announced_high_prob",
            "runs", "signals", "audited", "caught", "payoffs", "wealth", "metrics",
            "trade")  # fmt: skip


@dataclass(frozen=True, slots=True, kw_only=True)
class RoundCheck:
    """One round: whether the stored record equals the replay, and which fields differ."""

    round_no: int
    differing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.differing


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayReport:
    """The replay of a whole game: one check per settled round."""

    code: str
    rounds: tuple[RoundCheck, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.rounds)

    def summary(self) -> str:
        """One line for a person: how many rounds matched, and the first that did not."""
        if not self.rounds:
            return f"Game {self.code}: no round has been settled yet; nothing to replay."
        if self.ok:
            return (
                f"Game {self.code}: all {len(self.rounds)} settled rounds replay exactly "
                "from the seed and the move log."
            )
        bad = [check for check in self.rounds if not check.ok]
        first = bad[0]
        return (
            f"Game {self.code}: {len(bad)} of {len(self.rounds)} rounds differ from the replay; "
            f"round {first.round_no} first, in {', '.join(first.differing)}."
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "ok": self.ok,
            "rounds": [
                {"round": c.round_no, "ok": c.ok, "differing": list(c.differing)}
                for c in self.rounds
            ],
        }


def replay_game(game: Game) -> ReplayReport:
    """Recompute every settled round of ``game`` from its log and compare with the records."""
    setup = setup_of(game)
    state = initial_state(setup)
    checks = []
    records = RoundRecord.objects.filter(game=game).order_by("round_no")
    for record in records:
        # Every logged move is given as an input, bots' included: a bot's logged move is what
        # its strategy chose, so giving it changes nothing, and a default is replayed as logged.
        inputs = round_inputs(
            round_moves(game, record.round_no), human_labs=frozenset(), human_governor=False
        )
        try:
            progress = resolve_round(setup, state, inputs)
        except SimCoreError as error:
            checks.append(RoundCheck(round_no=record.round_no, differing=(f"log ({error})",)))
            break
        if progress.next_state is None:
            checks.append(
                RoundCheck(round_no=record.round_no, differing=("log (a move is missing)",))
            )
            break
        replayed = record_fields(progress, state)
        if "trades" not in record.metrics and replayed["metrics"].get("trades") == 0:
            # A record written before MODEL.md §3b added the metric: nothing traded then.
            replayed["metrics"] = {k: v for k, v in replayed["metrics"].items() if k != "trades"}
        differing = tuple(
            name for name in COMPARED if not _same(getattr(record, name), replayed[name])
        )
        checks.append(RoundCheck(round_no=record.round_no, differing=differing))
        state = progress.next_state
    return ReplayReport(code=game.code, rounds=tuple(checks))


def _same(stored: Any, replayed: Any) -> bool:
    """Equal as JSON values, floats to within rounding of a JSON round trip."""
    if isinstance(stored, dict) and isinstance(replayed, dict):
        return stored.keys() == replayed.keys() and all(
            _same(stored[key], replayed[key]) for key in stored
        )
    if isinstance(stored, list) and isinstance(replayed, list):
        return len(stored) == len(replayed) and all(
            _same(a, b) for a, b in zip(stored, replayed, strict=True)
        )
    if isinstance(stored, bool) or isinstance(replayed, bool):
        return stored is replayed
    if isinstance(stored, int | float) and isinstance(replayed, int | float):
        return math.isclose(stored, replayed, rel_tol=1e-12, abs_tol=1e-12)
    return bool(stored == replayed)
