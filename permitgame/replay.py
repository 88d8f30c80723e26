"""Replaying a game from its seed, its scenario and its move log, to check the stored results.

The truth of a game is *seed + scenario + move log* (MODEL.md §11); every ``RoundRecord`` is a
cache. ``replay_game`` recomputes each settled round through the one resolver, starting from the
initial state and chaining its own states (never a stored one), and compares every stored field
with the recomputed one. The admin's "replay" action and ``manage.py replay_game`` use it; a
mismatch means a record was changed after the fact or a rule changed since the game was played.

The log itself is checked by its hash chain (``verify_game_chain``, see ``permitgame.chain``),
and a game downloads as a bundle (``game_bundle``) that ``replay_bundle`` checks on another
machine, with no database rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from permitgame.bridge import record_fields, round_inputs, round_moves, setup_of
from permitgame.chain import (
    ALGORITHM,
    ChainEntry,
    ChainReport,
    canonical_time,
    entry_document,
    verify_chain,
)
from permitgame.models import MOVE_ACTIONS, Game, Move, RoundRecord, Seat
from sim_core import (
    GameSetup,
    SimCoreError,
    initial_state,
    make_setup,
    parse_scenario,
    resolve_round,
)

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
    records = [
        {name: getattr(record, name) for name in ("round_no", *COMPARED)}
        for record in RoundRecord.objects.filter(game=game).order_by("round_no")
    ]
    moves = {r["round_no"]: round_moves(game, r["round_no"]) for r in records}
    return replay_rounds(game.code, setup_of(game), moves, records)


def replay_rounds(
    code: str,
    setup: GameSetup,
    moves: Mapping[int, Sequence[Move]],
    records: Sequence[Mapping[str, Any]],
) -> ReplayReport:
    """Recompute the settled rounds of a game from its setup and moves, compared with records.

    Works on plain values (unsaved ``Move`` rows whose ``seat`` has a ``lab_index``): the same
    function checks a game in the database and a bundle on a machine without it.
    """
    state = initial_state(setup)
    checks = []
    for record in records:
        round_no = int(record["round_no"])
        # Every logged move is given as an input, bots' included: a bot's logged move is what
        # its strategy chose, so giving it changes nothing, and a default is replayed as logged.
        inputs = round_inputs(moves.get(round_no, ()), human_labs=frozenset(), human_governor=False)
        try:
            progress = resolve_round(setup, state, inputs)
        except SimCoreError as error:
            checks.append(RoundCheck(round_no=round_no, differing=(f"log ({error})",)))
            break
        if progress.next_state is None:
            checks.append(RoundCheck(round_no=round_no, differing=("log (a move is missing)",)))
            break
        replayed = record_fields(progress, state)
        if "trades" not in record["metrics"] and replayed["metrics"].get("trades") == 0:
            # A record written before MODEL.md §3b added the metric: nothing traded then.
            replayed["metrics"] = {k: v for k, v in replayed["metrics"].items() if k != "trades"}
        differing = tuple(name for name in COMPARED if not _same(record[name], replayed[name]))
        checks.append(RoundCheck(round_no=round_no, differing=differing))
        state = progress.next_state
    return ReplayReport(code=code, rounds=tuple(checks))


def _entry_label(round_no: int, phase: str, action: str, actor: str, seat: Seat | None) -> str:
    who = ""
    if seat is not None:
        who = ", governor" if seat.lab_index is None else f", lab {seat.lab_index + 1}"
    where = f"round {round_no} {phase}" if phase else f"round {round_no}"
    return f"{where}: {action} by {actor}{who}"


def chain_entries(game: Game) -> list[ChainEntry]:
    """Return ``game``'s log as hash-chain entries, oldest first."""
    return [
        ChainEntry(
            id=move.pk,
            document=entry_document(
                game=game.code,
                seat=move.seat_id,
                action=move.action,
                actor=move.actor,
                round_no=move.round_no,
                phase=move.phase,
                payload=move.payload,
                latency_ms=move.latency_ms,
                time=canonical_time(move.created_at),
                prev_hash=move.prev_hash,
            ),
            prev_hash=move.prev_hash,
            hash=move.hash,
            label=_entry_label(move.round_no, move.phase, move.action, move.actor, move.seat),
        )
        for move in Move.objects.filter(game=game).select_related("seat").order_by("id")
    ]


def verify_game_chain(game: Game) -> ChainReport:
    """Walk ``game``'s hash chain; name the first entry changed, removed or inserted."""
    return verify_chain(game.code, chain_entries(game))


# ------------------------------------------------------------------------------ bundles

BUNDLE_FORMAT = "permitgame-bundle"
BUNDLE_VERSION = 1
_SEAT_FIELDS = ("role", "lab_index", "kind", "fallback_strategy", "nickname", "client_kind",
                "client_name", "client_version")  # fmt: skip


def game_bundle(game: Game, *, design: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return ``game`` as a self-contained, verifiable document (JSON-able).

    It holds what a replay needs and nothing secret (no token, no rejoin code): the game's
    settings, the frozen scenario and seed, the experiment design it belongs to (if any), its
    seats, the whole log with each entry's hashes, and the stored round results.
    ``replay_bundle`` checks it on any machine, without a database.
    """
    moves = Move.objects.filter(game=game).select_related("seat").order_by("id")
    records = RoundRecord.objects.filter(game=game).order_by("round_no")
    chain = verify_game_chain(game)
    return {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "game": {
            "code": game.code,
            "title": game.title,
            "seed": game.seed,
            "human_governor": game.human_governor,
            "durations": game.durations,
            "status": game.status,
        },
        "scenario": game.scenario,
        "design": dict(design) if design is not None else None,
        "seats": [
            {"id": seat.pk, **{name: getattr(seat, name) for name in _SEAT_FIELDS}}
            for seat in game.seats.order_by("id")
        ],
        "log": [
            {
                "id": move.pk,
                "seat": move.seat_id,
                "action": move.action,
                "actor": move.actor,
                "round": move.round_no,
                "phase": move.phase,
                "payload": move.payload,
                "latency_ms": move.latency_ms,
                "time": canonical_time(move.created_at),
                "prev_hash": move.prev_hash,
                "hash": move.hash,
            }
            for move in moves
        ],
        "records": [
            {name: getattr(record, name) for name in ("round_no", *COMPARED)} for record in records
        ],
        "chain": {"algorithm": ALGORITHM, "head": chain.head, "entries": chain.entries},
    }


class BadBundle(ValueError):
    """A file that is not a game bundle this version can read."""


def replay_bundle(bundle: Mapping[str, Any]) -> tuple[ChainReport, ReplayReport]:
    """Verify a bundle's hash chain and replay its rounds; no database row is read or written.

    Raises:
        BadBundle: not a bundle, or a part of it is missing or malformed.
    """
    if not isinstance(bundle, Mapping) or bundle.get("format") != BUNDLE_FORMAT:
        raise BadBundle(f'not a game bundle (no "format": "{BUNDLE_FORMAT}")')
    if bundle.get("version") != BUNDLE_VERSION:
        raise BadBundle(f"bundle version {bundle.get('version')!r}; this reads {BUNDLE_VERSION}")
    try:
        info = bundle["game"]
        code = str(info["code"])
        scenario = parse_scenario(bundle["scenario"])
        setup = make_setup(
            scenario, seed=int(info["seed"]), human_governor=bool(info["human_governor"])
        )
        seats = {
            int(item["id"]): Seat(
                pk=int(item["id"]), role=item["role"], lab_index=item["lab_index"]
            )
            for item in bundle["seats"]
        }
        entries = []
        moves: dict[int, list[Move]] = {}
        for item in bundle["log"]:
            seat = seats.get(item["seat"]) if item["seat"] is not None else None
            entries.append(
                ChainEntry(
                    id=int(item["id"]),
                    document=entry_document(
                        game=code,
                        seat=item["seat"],
                        action=item["action"],
                        actor=item["actor"],
                        round_no=int(item["round"]),
                        phase=item["phase"],
                        payload=item["payload"],
                        latency_ms=item["latency_ms"],
                        time=item["time"],
                        prev_hash=item["prev_hash"],
                    ),
                    prev_hash=item["prev_hash"],
                    hash=item["hash"],
                    label=_entry_label(
                        int(item["round"]), item["phase"], item["action"], item["actor"], seat
                    ),
                )
            )
            if item["action"] in MOVE_ACTIONS:
                moves.setdefault(int(item["round"]), []).append(
                    Move(action=item["action"], payload=item["payload"], seat=seat)
                )
        records = list(bundle["records"])
    except (KeyError, TypeError, ValueError) as error:
        raise BadBundle(f"malformed bundle: {error!r}") from None
    except SimCoreError as error:
        raise BadBundle(f"the bundle's scenario is not valid: {error}") from None
    return verify_chain(code, entries), replay_rounds(code, setup, moves, records)


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
