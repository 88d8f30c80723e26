"""An experiment's data: tidy long tables across all its games, and their codebook.

Tables: ``participants``, ``labs`` (one row per lab-round, with treatment columns, the actor and
response time of every move, and the paired counterfactual: the move the seat's fallback bot
would have made on the same draws), ``metrics`` (MODEL.md §8 per round), ``events`` (every game's
log and the experiment's own), ``payments`` (label, amount) and ``gradebook``. ``CODEBOOK`` is
the one source of every column (type, unit, meaning, MODEL.md section): each table's rows are
checked against it when written, and the codebook table is generated from it, so they cannot
drift. CSV always; Parquet too, with the same columns (pyarrow).

The counterfactual calls sim_core's resolver with the round's logged moves minus the human's own
move: the lab is then played by its strategy on the round's own random streams (MODEL.md §11),
so no rule is written here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from permitgame import bridge, exports, ledger
from permitgame.experiments.models import Event, Experiment, Participant, Room
from permitgame.experiments.services import payment_of, points_of
from permitgame.models import Action, Game, Move, RoundRecord, Status
from sim_core import METRICS, RoundInputs, resolve_round

# (column, type, unit, meaning, MODEL.md section)
Column = tuple[str, str, str, str, str]
_T = ("treatment", "string", "", "the treatment of the game's room (design key treatments.*)", "")
_ROOM = ("room", "integer", "", "the room's number within its treatment", "")
_GAME = ("game", "string", "", "the game's join code", "")

CODEBOOK: dict[str, tuple[Column, ...]] = {
    "participants": (
        ("label", "string", "", "the participant's label (?label=, or anon-… without one)", ""),
        ("order", "integer", "", "0-based order of assignment (null: never assigned)", ""),
        _T,
        _ROOM,
        _GAME,
        ("role", "string", "", "lab or governor", "§1"),
        ("player", "integer", "", "lab number 1..N, 0 for the governor", "§1"),
        ("arrived_at", "datetime", "UTC", "first visit of the entry link", ""),
        ("consented_at", "datetime", "UTC", "when the consent was given", ""),
        ("quiz_attempts", "integer", "attempts", "attempts at the comprehension quiz", ""),
        ("quiz_passed", "boolean", "", "whether the quiz was passed", ""),
        ("bots_disclosed", "string", "", "hidden, revealed or revealed_at_end", ""),
        ("points", "number", "points", "sum of the lab's payoffs over the rounds", "§4 step 6"),
        ("payment", "number", "currency", "show-up fee + money per point, capped", ""),
        ("completion_code", "string", "", "the code shown on the completion page", ""),
        ("completed_at", "datetime", "UTC", "when the completion page was first shown", ""),
    ),
    "labs": (
        _T,
        _ROOM,
        _GAME,
        ("round", "integer", "", "round number, from 1", "§4"),
        ("lab", "integer", "", "lab number 1..N", "§1"),
        ("seat", "string", "", "who held the seat: human, program or bot", ""),
        ("fallback_strategy", "string", "", "strategy of the bot that plays or stands in", "§5"),
        ("risk_profile", "number", "", "the lab's risk profile r_i", "§1"),
        ("value", "number", "points", "the lab's gross value this round", "§1"),
        ("bid", "number", "points", "the bid", "§3"),
        ("bid_by", "string", "", "who bid: human, program, default or bot", ""),
        ("bid_ms", "integer", "ms", "response time of a human's or program's bid", ""),
        ("won", "integer", "0/1", "won a permit", "§3"),
        ("price", "number", "points", "price paid (0 without a permit)", "§3"),
        ("run", "integer", "0/1", "trained this round", "§4 step 3"),
        ("run_by", "string", "", "who chose to run (empty for a permit holder)", ""),
        ("run_ms", "integer", "ms", "response time of the run choice", ""),
        ("signal", "integer", "0/1", "the governor's signal was high", "§2"),
        ("audited", "integer", "0/1", "audited", "§6"),
        ("caught", "integer", "0/1", "caught training without a permit", "§4 step 5"),
        ("payoff", "number", "points", "the round's payoff", "§4 step 6"),
        ("wealth", "number", "points", "wealth after the round", "§4 step 6"),
        ("coaching", "string", "", "the game's coaching level (treatments.*.coaching)", ""),
        (
            "belief",
            "integer",
            "percent",
            "the lab's believed chance that a violator is caught, "
            "asked before its choice (empty when not asked or not answered)",
            "§2",
        ),
        ("granted", "integer", "0/1", "granted a permit (traded permits; empty at auction)", "§3b"),
        ("kept", "integer", "0/1", "a holder that kept its permit (asked nothing)", "§3b"),
        ("asked", "number", "points", "a holder's ask (empty when kept or not a holder)", "§3b"),
        ("sold", "integer", "0/1", "sold its granted permit in the call market", "§3b"),
        ("bought", "integer", "0/1", "bought a permit in the call market", "§3b"),
        ("cf_bid", "number", "points", "the fallback bot's bid on the same draws", "§5, §11"),
        ("cf_run", "integer", "0/1", "the fallback bot's run choice in the same spot", "§5, §11"),
    ),
    "metrics": (
        _T,
        _ROOM,
        _GAME,
        ("round", "integer", "", "round number", "§8"),
        *((name, "number", "", f"§8 metric {name}", "§8") for name in METRICS),
    ),
    "events": (
        _T,
        _ROOM,
        _GAME,
        (
            "source",
            "string",
            "",
            "game (a game's log) or experiment (arrivals, quiz, assignment)",
            "",
        ),
        ("id", "integer", "", "the entry's id, increasing within its source", ""),
        ("time", "datetime", "UTC", "when it was logged", ""),
        ("round", "integer", "", "the game's round (0 in the lobby)", "§4"),
        ("phase", "string", "", "the game's phase", "§4"),
        (
            "action",
            "string",
            "",
            "what happened (bid, decide, audit, join, drop, fill, assign…)",
            "",
        ),
        ("actor", "string", "", "human, program, default, bot, system, host or participant", ""),
        ("player", "integer", "", "lab number, 0 the governor, empty for none", "§1"),
        ("label", "string", "", "the participant's label (experiment entries)", ""),
        ("held_by", "string", "", "who held the seat then: human, program or bot", ""),
        ("payload", "json", "", "the entry's details (lab numbers from 1)", ""),
        ("latency_ms", "integer", "ms", "response time of a move", ""),
        ("hash", "string", "", "SHA-256 of the entry in the game's hash chain", ""),
    ),
    "payments": (
        ("label", "string", "", "the participant's label", ""),
        ("amount", "number", "currency", "the payment (design key payment)", ""),
    ),
    "gradebook": (
        ("label", "string", "", "the participant's label", ""),
        ("participated", "integer", "0/1", "played in a room", ""),
        ("completed", "integer", "0/1", "reached the completion page after the game", ""),
        ("points", "number", "points", "sum of the lab's payoffs", "§4 step 6"),
        (
            "rank",
            "integer",
            "",
            "place among the room's labs by points (1 is best; a tie "
            "goes to the lower lab number), as the players' screens showed it",
            "",
        ),
    ),
}
CODEBOOK_COLUMNS = ("table", "column", "type", "unit", "meaning", "model_section")
TABLES = ("participants", "labs", "metrics", "events", "payments", "gradebook")


def columns(table: str) -> list[str]:
    return [column[0] for column in CODEBOOK[table]]


def codebook_rows() -> list[dict[str, Any]]:
    return [
        dict(zip(CODEBOOK_COLUMNS, (table, *column), strict=True))
        for table in TABLES
        for column in CODEBOOK[table]
    ]


def _rooms(experiment: Experiment) -> list[Room]:
    return list(Room.objects.filter(experiment=experiment).select_related("game"))


def _where(room: Room) -> dict[str, Any]:
    return {"treatment": room.treatment, "room": room.number, "game": room.game.code}


def counterfactuals(game: Game) -> dict[tuple[int, int], tuple[float, bool | None]]:
    """(round, lab) -> the fallback bot's bid and run choice, for every human or program move.

    Each is sim_core's strategy on the same round's draws: the round resolved with every
    logged move except the lab's own one (the run choice keeps the lab's actual bid).
    """
    setup = bridge.setup_of(game)
    out: dict[tuple[int, int], tuple[float, bool | None]] = {}
    for record in RoundRecord.objects.filter(game=game).order_by("round_no"):
        moves = bridge.round_moves(game, record.round_no)
        state = bridge.state_from_json(record.state)
        labs_of = {m.pk: (m.seat.lab_index if m.seat is not None else None) for m in moves}
        played = {labs_of[m.pk] for m in moves if m.actor in ("human", "program")}
        for lab in sorted(lab for lab in played if lab is not None):
            without_bid = [
                m for m in moves if not (m.action == Action.BID and labs_of[m.pk] == lab)
            ]
            progress = resolve_round(setup, state, _given(without_bid))
            assert progress.bids is not None
            cf_bid = float(progress.bids[lab])
            without_run = [
                m for m in moves if not (m.action == Action.DECIDE and labs_of[m.pk] == lab)
            ]
            progress = resolve_round(setup, state, _given(without_run))
            won = bool(record.won[lab])
            cf_run = None if won or progress.runs is None else bool(progress.runs[lab])
            out[(record.round_no, lab)] = (cf_bid, cf_run)
    return out


def _given(moves: Sequence[Move]) -> RoundInputs:
    return bridge.round_inputs(moves, human_labs=frozenset(), human_governor=False)


def participant_rows(experiment: Experiment) -> list[dict[str, Any]]:
    rows = []
    disclosure = experiment.design["bot_disclosure"]
    for p in Participant.objects.filter(experiment=experiment).select_related("room__game", "seat"):
        points = points_of(p)
        rows.append(
            {
                "label": p.label,
                "order": p.order,
                "treatment": p.treatment,
                "room": p.room.number if p.room else None,
                "game": p.room.game.code if p.room else "",
                "role": p.seat.role if p.seat else "",
                "player": p.seat.player_id if p.seat else None,
                "arrived_at": p.arrived_at.isoformat(),
                "consented_at": p.consented_at.isoformat() if p.consented_at else "",
                "quiz_attempts": p.quiz_attempts,
                "quiz_passed": p.quiz_passed,
                "bots_disclosed": disclosure,
                "points": points,
                "payment": payment_of(experiment.design, points),
                "completion_code": p.completion_code,
                "completed_at": p.completed_at.isoformat() if p.completed_at else "",
            }
        )
    return rows


def lab_rows(experiment: Experiment) -> list[dict[str, Any]]:
    rows = []
    for room in _rooms(experiment):
        cfs = counterfactuals(room.game)
        for row in exports.lab_round_rows(room.game):
            lab = int(row["lab"]) - 1
            cf_bid, cf_run = cfs.get((int(row["round"]), lab), (None, None))
            row = {key: value for key, value in row.items() if key not in ("game", "nickname")}
            rows.append({**_where(room), **row, "cf_bid": cf_bid, "cf_run": cf_run})
    return rows


def metric_rows(experiment: Experiment) -> list[dict[str, Any]]:
    rows = []
    for room in _rooms(experiment):
        for row in exports.round_rows(room.game):
            rows.append({**_where(room), **{k: v for k, v in row.items() if k != "game"}})
    return rows


def event_rows(experiment: Experiment) -> list[dict[str, Any]]:
    rows = []
    for event in Event.objects.filter(experiment=experiment).select_related("participant"):
        p = event.participant
        room = p.room if p is not None else None
        rows.append(
            {
                "treatment": p.treatment if p else "",
                "room": room.number if room else None,
                "game": room.game.code if room else "",
                "source": "experiment",
                "id": event.pk,
                "time": event.created_at.isoformat(),
                "round": None,
                "phase": "",
                "action": event.action,
                "actor": event.actor,
                "player": None,
                "label": p.label if p else "",
                "held_by": "",
                "payload": json.dumps(event.payload, sort_keys=True) if event.payload else "",
                "latency_ms": None,
                "hash": "",
            }
        )
    for room in _rooms(experiment):
        for row in exports.log_rows(room.game):
            rows.append(
                {
                    **_where(room),
                    "source": "game",
                    **{k: row[k] for k in ("id", "time", "round", "phase", "action", "actor")},
                    "player": row["player"],
                    "label": row["nickname"],
                    "held_by": row["held_by"],
                    "payload": row["payload"],
                    "latency_ms": row["latency_ms"],
                    "hash": row["hash"],
                }
            )
    return rows


def payment_rows(experiment: Experiment) -> list[dict[str, Any]]:
    return [
        {"label": row["label"], "amount": row["payment"]}
        for row in participant_rows(experiment)
        if row["payment"] is not None
    ]


def gradebook_rows(experiment: Experiment) -> list[dict[str, Any]]:
    participants = participant_rows(experiment)
    # A lab's place is the one its players' screen showed at game over (the ledger's).
    places = {
        room.game.code: ledger.read(room.game).places()
        for room in _rooms(experiment)
        if room.game.status == Status.FINISHED
    }
    out = []
    for row in participants:
        points = row["points"]
        rank = None
        if points is not None and row["role"] == "lab":
            rank = places[row["game"]][row["player"]]
        out.append(
            {
                "label": row["label"],
                "participated": int(bool(row["game"])),
                "completed": int(bool(row["completion_code"])),
                "points": points,
                "rank": rank,
            }
        )
    return out


ROWS = {
    "participants": participant_rows,
    "labs": lab_rows,
    "metrics": metric_rows,
    "events": event_rows,
    "payments": payment_rows,
    "gradebook": gradebook_rows,
}


class CodebookMismatch(AssertionError):
    """A table's rows have a column the codebook lacks, or lack one it has."""


def table(experiment: Experiment, name: str) -> list[dict[str, Any]]:
    """The rows of table ``name``, checked against the codebook."""
    rows = ROWS[name](experiment)
    expected = columns(name)
    for row in rows:
        if list(row) != expected:
            extra = sorted(set(row) - set(expected))
            missing = sorted(set(expected) - set(row))
            raise CodebookMismatch(f"{name}: extra {extra}, missing {missing}")
    return rows


def export(experiment: Experiment, out: Path, *, parquet: bool = True) -> list[Path]:
    """Write every table (CSV, and Parquet with the same columns) and the codebook to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    tables = {name: (table(experiment, name), columns(name)) for name in TABLES}
    tables["codebook"] = (codebook_rows(), list(CODEBOOK_COLUMNS))
    for name, (rows, header) in tables.items():
        path = out / f"{name}.csv"
        path.write_text(exports.csv_text(rows, header))
        written.append(path)
        if parquet:
            written.append(_parquet(out / f"{name}.parquet", rows, header, name))
    design = out / "design.json"
    design.write_text(json.dumps(experiment.design, indent=2))
    written.append(design)
    return written


_ARROW_TYPES = {
    "string": "string",
    "integer": "int64",
    "number": "float64",
    "boolean": "bool_",
    "datetime": "string",
    "json": "string",
}


def _parquet(path: Path, rows: Sequence[Mapping[str, Any]], header: list[str], name: str) -> Path:
    # pyarrow: the reference Parquet writer; types from the codebook, so a column keeps its
    # type even when a table is empty.
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {c[0]: c[1] for c in CODEBOOK.get(name, ())}
    fields = [
        pa.field(col, getattr(pa, _ARROW_TYPES[types.get(col, "string")])()) for col in header
    ]
    data = {
        col: [_arrow_value(row.get(col), types.get(col, "string")) for row in rows]
        for col in header
    }
    pq.write_table(pa.table(data, schema=pa.schema(fields)), path)
    return path


def _arrow_value(value: Any, kind: str) -> Any:
    if value is None or value == "":
        return None if kind != "string" else ("" if value == "" else None)
    if kind == "integer":
        return int(value)
    if kind == "number":
        return float(value)
    if kind == "boolean":
        return bool(value)
    return str(value)


def archive(experiment: Experiment) -> bytes:
    """Every table, the codebook and the design as one zip (the monitor's and the API's)."""
    import io
    import tempfile
    import zipfile

    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="permitgame-export-") as folder:
        paths = export(experiment, Path(folder))
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in paths:
                zipped.write(path, arcname=f"{experiment.code}/{path.name}")
    return buffer.getvalue()
