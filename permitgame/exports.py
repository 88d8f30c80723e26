"""Research exports of a game: tidy CSV tables of every lab-round and of the whole event log.

``lab_round_rows`` is the table a researcher analyses: one row per lab and settled round, with
the lab's private draws (value, risk profile), its moves and who made them (a human, a default
or a bot, and how long the human took), and what the round did to it. ``log_rows`` is the event
log as recorded. Both read stored rows only (the round records and the log); nothing here
computes a rule. The console's downloads and ``manage.py exportgame`` write them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from permitgame import ledger
from permitgame.bridge import setup_of
from permitgame.models import Action, Game, Move, Seat
from permitgame.selectors import game_export_rows
from sim_core import METRICS, STRATEGY_NAMES, csv_records

LAB_ROUND_COLUMNS = ("game", "round", "lab", "nickname", "seat", "fallback_strategy",
                     "risk_profile", "value", "bid", "bid_by", "bid_ms", "won", "price", "run",
                     "run_by", "run_ms", "signal", "audited", "caught", "payoff", "wealth",
                     "coaching", "belief",
                     "granted", "kept", "asked", "sold", "bought")  # fmt: skip
LOG_COLUMNS = ("game", "id", "time", "round", "phase", "action", "actor", "player", "nickname",
               "held_by", "payload", "latency_ms", "prev_hash", "hash")  # fmt: skip


def join_ids(game: Game) -> dict[int, int]:
    """Return seat id -> the id of its join entry: before it, the seat was no player's."""
    joins: dict[int, int] = {}
    for seat_id, move_id in (
        Move.objects.filter(game=game, action=Action.JOIN)
        .order_by("id")
        .values_list("seat_id", "id")
    ):
        if seat_id is not None:
            joins.setdefault(seat_id, move_id)
    return joins


def holder_at(seat: Seat | None, joins: Mapping[int, int], entry_id: int) -> str:
    """Who held ``seat`` when entry ``entry_id`` was logged: ``human``, ``program`` or ``bot``."""
    if seat is None or seat.pk not in joins or joins[seat.pk] > entry_id:
        return "bot"
    return seat.held_by


def lab_round_rows(game: Game) -> list[dict[str, Any]]:
    """One row per (settled round, lab), in round then lab order.

    ``seat`` is who held the seat in that round: ``human`` (a student), ``program`` (a program
    that declared itself) or ``bot`` (nobody had joined it yet); ``nickname`` is the holder's,
    empty before anyone joined. ``fallback_strategy`` is the strategy of the bot that plays the
    seat when nobody does (or stands in). ``bid_by``/``run_by`` say who made the move:
    ``human``, ``program``, ``default`` or ``bot`` (empty for a permit holder, who makes no run
    choice); ``*_ms`` is how long the human or program took.
    ``coaching`` is the game's coaching level (how much the run-or-idle screen worked out for
    the lab); ``belief`` the lab's answer, in percent, to "how likely is a violator caught this
    round?" (empty when not asked or not answered).

    Under MODEL.md §3b (granted permits, traded) ``granted`` is 1 for a lab granted a permit,
    ``kept`` 1 for a holder that asked nothing, ``asked`` its ask, ``sold``/``bought`` 1 for the
    labs that traded; ``won`` is then a permit held after trading and ``price`` the traded price
    for the labs that traded (empty in a round without a trade). Under an auction the five
    trading columns are empty.
    """
    book = ledger.read(game, moves=True)
    joins = join_ids(game)
    strategies = setup_of(game).strategies
    rows = []
    for entries in book.rows:
        for entry in entries:
            lab = entry.lab
            seat = book.seats.get(lab)
            bid, choice = entry.bid_move, entry.run_move
            last = max((m.pk for m in (bid, choice) if m is not None), default=0)
            held = holder_at(seat, joins, last)
            rows.append(
                {
                    "game": game.code,
                    "round": entry.round_no,
                    "lab": lab + 1,
                    "nickname": seat.nickname if seat is not None and held != "bot" else "",
                    "seat": held,
                    "fallback_strategy": STRATEGY_NAMES[int(strategies[lab])],
                    "risk_profile": entry.risk_profile,
                    "value": entry.value,
                    "bid": entry.bid,
                    "bid_by": bid.actor if bid is not None else "bot",
                    "bid_ms": _latency(bid),
                    "won": int(entry.won),
                    # the price the lab paid (a buyer's or the auction's) or was paid (a seller)
                    "price": entry.price_paid or entry.price_received,
                    "run": int(entry.ran),
                    "run_by": "" if entry.won else (choice.actor if choice is not None else "bot"),
                    "run_ms": _latency(choice),
                    "signal": int(entry.signal),
                    "audited": int(entry.audited),
                    "caught": int(entry.caught),
                    "payoff": entry.payoff,
                    "wealth": entry.wealth,
                    "coaching": game.coaching,
                    "belief": _belief(entry.belief_move),
                    **_trade_columns(entry),
                }
            )
    return rows


def _trade_columns(entry: ledger.LabRound) -> dict[str, Any]:
    """The lab's trading columns of a round with granted permits (MODEL.md §3b), or empty ones."""
    if not entry.trading:
        return {"granted": "", "kept": "", "asked": "", "sold": "", "bought": ""}
    return {
        "granted": int(entry.granted),
        "kept": int(entry.kept),
        "asked": "" if entry.asked is None else entry.asked,
        "sold": int(entry.sold),
        "bought": int(entry.bought),
    }


def _belief(move: Move | None) -> int | str:
    """The lab's answer, in percent, to "how likely is a violator caught?" ("" if none)."""
    return int(move.payload["percent"]) if move is not None else ""


def _latency(move: Move | None) -> int | str:
    return "" if move is None or move.latency_ms is None else move.latency_ms


def log_rows(game: Game) -> list[dict[str, Any]]:
    """The game's event log, oldest first; lab numbers in payloads are shown 1-based.

    ``nickname`` and ``held_by`` are the seat's holder when the entry was logged: a bot's move
    before a student joined the seat carries no nickname.
    """
    joins = join_ids(game)
    rows = []
    for move in Move.objects.filter(game=game).select_related("seat").order_by("id"):
        payload = dict(move.payload)
        if move.action == Action.AUDIT and "labs" in payload:
            payload["labs"] = [int(lab) + 1 for lab in payload["labs"]]
        rows.append(
            {
                "game": game.code,
                "id": move.pk,
                "time": move.created_at.isoformat(),
                "round": move.round_no,
                "phase": move.phase,
                "action": move.action,
                "actor": move.actor,
                "player": "" if move.seat is None else move.seat.player_id,
                "nickname": (
                    move.seat.nickname
                    if move.seat is not None and holder_at(move.seat, joins, move.pk) != "bot"
                    else ""
                ),
                "held_by": "" if move.seat is None else holder_at(move.seat, joins, move.pk),
                "payload": json.dumps(payload, sort_keys=True) if payload else "",
                "latency_ms": "" if move.latency_ms is None else move.latency_ms,
                "prev_hash": move.prev_hash,
                "hash": move.hash,
            }
        )
    return rows


def round_rows(game: Game) -> list[dict[str, Any]]:
    """One row per settled round: the game, the round and sim_core's §8 metrics."""
    return [{"game": game.code, **row} for row in game_export_rows(game)]


#: The exports by name: how their rows are made, and their columns.
TABLES = {
    "labs": lab_round_rows,
    "log": log_rows,
    "metrics": round_rows,
}
COLUMNS: Mapping[str, Sequence[str] | None] = {
    "labs": LAB_ROUND_COLUMNS,
    "log": LOG_COLUMNS,
    "metrics": ("game", "round", *METRICS),
}


def csv_text(rows: Iterable[Mapping[str, Any]], columns: Sequence[str] | None = None) -> str:
    """Rows as CSV with a header (the columns given, or the first row's keys).

    Written by sim_core's one CSV writer (``csv_records``): floats in full, None empty, text a
    spreadsheet would run as a formula neutralised.
    """
    return csv_records(rows, columns)


def table_csv(game: Game, name: str) -> str:
    """The export ``name`` (``labs``, ``log`` or ``metrics``) of ``game`` as CSV text."""
    return csv_text(TABLES[name](game), COLUMNS[name])
