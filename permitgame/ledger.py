"""The ledger: the one reader of a game's settled rounds.

Per lab and settled round, what the lab drew (its value, its risk profile, its signal), what it
did (its bid, its ask, whether it ran, and, when asked for, the logged moves: who made them and
how long a human took) and what it got (a permit, the price it paid or received, an audit, a
catch, its payoff, its wealth, its score so far); and from those the game's scores, the labs'
places and the governor's score. The players' screens (``selectors.game_screens``: a lab's
history and place, the final standings), the debrief's leaderboard and the research exports
(``exports.lab_round_rows``: labs.csv) all read a game's results here, so the three cannot
disagree.

Everything comes from the stored round records (the settlement sim_core computed), the seats,
the per-game draws (``bridge.setup_of``) and, for the exports, the log; the payoff's terms are
sim_core's ``payoff_terms``. Nothing here computes a rule. ``read`` makes a fixed number of
queries, whatever the game's size: the records, the seats, and the moves when asked for (a
caller that holds the records or the seats passes them and saves those queries).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from permitgame import bridge
from permitgame.models import Action, Game, Move, RoundRecord, Seat, lab_label
from permitgame.templating import Record
from sim_core import METRICS, AuditScore, PayoffTerm, Role, payoff_terms, score_audits


@dataclass(slots=True, kw_only=True)
class LabRound(Record):
    """One lab in one settled round: what it drew, did and got (its own results only).

    ``won`` is a permit held (after trading under MODEL.md §3b); ``violated`` ran without one;
    ``ran`` ran at all. ``price_paid`` is what the lab paid for a permit (the auction's price,
    or the traded price for a buyer), ``price_received`` what a seller was paid. ``score`` is
    the sum of the lab's payoffs up to and including this round. ``terms`` are the payoff's
    terms (sim_core's ``payoff_terms``; none in a traded round, whose money per lab is not
    stored). The moves are read only by ``read(..., moves=True)`` (else None).

    Not frozen, and never changed once built: every lab's row is built as its round settles, on
    the way of the results to the room, and a frozen dataclass's ``__init__`` sets each field
    through ``object.__setattr__`` (as ``selectors.LabView``).
    """

    round_no: int
    lab: int  # 0-based
    # drew
    value: float
    net_value: float
    risk_profile: float
    signal: bool
    # did
    bid: float
    asked: float | None = None  # §3b: a granted lab's ask (None: kept, or not granted)
    ran: bool
    violated: bool
    # got
    won: bool
    price_paid: float
    trading: bool = False  # MODEL.md §3b: the round's permits were granted and traded
    granted: bool = False
    kept: bool = False  # §3b: granted and asked nothing
    bought: bool = False
    sold: bool = False
    price_received: float = 0.0
    audited: bool
    caught: bool
    payoff: float
    wealth: float
    score: float
    terms: tuple[PayoffTerm, ...] = ()
    # the log (``moves=True`` only)
    bid_move: Move | None = None
    run_move: Move | None = None
    belief_move: Move | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Standing(Record):
    """A lab's place among the labs by score (1 is best; ties go to the lower lab number)."""

    rank: int
    player_id: int
    label: str
    nickname: str
    human: bool  # a student holds the seat (not a program, not a bot)
    score: float
    wealth: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Ledger:
    """A game's settled rounds, per round and lab, and what follows from them."""

    records: tuple[RoundRecord, ...]
    seats: dict[int, Seat]  # lab index -> its seat
    rows: tuple[tuple[LabRound, ...], ...]  # [round][lab], in round then lab order
    scores: tuple[float, ...]  # per lab, the sum of its payoffs
    wealth: tuple[float, ...]  # per lab, after the last settled round (the endowment before)
    standings: tuple[Standing, ...]  # by place
    governor_score: float  # the sum of the rounds' welfare (MODEL.md §8)

    def lab(self, lab: int) -> tuple[LabRound, ...]:
        """Return lab ``lab``'s rounds (0-based), oldest first."""
        return tuple(row[lab] for row in self.rows)

    def places(self) -> dict[int, int]:
        """Return player id -> place."""
        return {row.player_id: row.rank for row in self.standings}


def read(
    game: Game,
    *,
    moves: bool = False,
    records: Sequence[RoundRecord] | None = None,
    seats: Sequence[Seat] | None = None,
    before: Ledger | None = None,
) -> Ledger:
    """Return the ledger of ``game``'s settled rounds.

    Queries: the records and the seats unless given, and the lab moves (bids, run choices,
    belief answers) with ``moves``: at most three, whatever the number of rounds and labs.

    ``before``: a ledger of the same game read earlier (without ``moves``). Its rounds are
    taken as they are and only the records settled since are read and added, so a round's
    settlement costs O(labs), not O(labs x rounds). Its rounds must still be the game's first
    ones (records are never rewritten); if they are not, everything is read again.
    """
    setup = bridge.setup_of(game)
    scenario = setup.scenario
    kept: tuple[RoundRecord, ...] = ()
    if before is not None and not moves and all(r.game_id == game.pk for r in before.records):
        kept = before.records
        if records is None:
            last = kept[-1].round_no if kept else 0
            newer = RoundRecord.objects.filter(game=game, round_no__gt=last).order_by("round_no")
            records = kept + tuple(newer)
        if tuple(r.pk for r in records[: len(kept)]) != tuple(r.pk for r in kept):
            kept = ()
    settled = tuple(
        RoundRecord.objects.filter(game=game).order_by("round_no") if records is None else records
    )
    lab_seats = {
        s.lab_index: s
        for s in (Seat.objects.filter(game=game, role=Role.LAB) if seats is None else seats)
        if s.lab_index is not None
    }
    logged: dict[tuple[int, str, int], Move] = {}
    if moves:
        for move in Move.objects.filter(
            game=game, action__in=(Action.BID, Action.DECIDE, Action.BELIEF)
        ).select_related("seat"):
            if move.seat is not None and move.seat.lab_index is not None:
                logged[(move.round_no, move.action, move.seat.lab_index)] = move
    count = game.lab_count
    compute_cost = scenario.labs.compute_cost
    scores = [0.0] * count
    rows: list[tuple[LabRound, ...]] = []
    if kept:
        assert before is not None
        scores, rows = list(before.scores), list(before.rows)
    for record in settled[len(kept) :]:
        trade = record.trade or {}
        row = []
        for lab in range(count):
            scores[lab] += record.payoffs[lab]
            won = bool(record.won[lab])
            violated = bool(record.runs[lab])
            caught = bool(record.caught[lab])
            bought = bool(trade["bought"][lab]) if trade else False
            sold = bool(trade["sold"][lab]) if trade else False
            granted = bool(trade["granted"][lab]) if trade else False
            asked = trade["asks"][lab] if trade else None
            price = record.price if record.price is not None else 0.0
            row.append(
                LabRound(
                    round_no=record.round_no,
                    lab=lab,
                    value=record.values[lab],
                    net_value=record.values[lab] - compute_cost,
                    risk_profile=float(setup.risk_profile[lab]),
                    signal=bool(record.signals[lab]),
                    bid=record.bids[lab],
                    asked=asked,
                    ran=won or violated,
                    violated=violated,
                    won=won,
                    price_paid=price if (bought if trade else won) else 0.0,
                    trading=bool(trade),
                    granted=granted,
                    kept=granted and asked is None,
                    bought=bought,
                    sold=sold,
                    price_received=price if sold else 0.0,
                    audited=bool(record.audited[lab]),
                    caught=caught,
                    payoff=record.payoffs[lab],
                    wealth=record.wealth[lab],
                    score=scores[lab],
                    # The payoff's terms, from the settlement's outputs (sim_core adds them
                    # up). A traded round's money per lab is not stored: no terms there (§3b).
                    terms=()
                    if trade
                    else payoff_terms(
                        value=record.values[lab],
                        compute_cost=compute_cost,
                        won=won,
                        violated=violated,
                        caught=caught,
                        price=price,
                        racing_value=scenario.labs.racing_value,
                        audit=scenario.audit,
                    ),
                    bid_move=logged.get((record.round_no, Action.BID, lab)),
                    run_move=logged.get((record.round_no, Action.DECIDE, lab)),
                    belief_move=logged.get((record.round_no, Action.BELIEF, lab)),
                )
            )
        rows.append(tuple(row))
    wealth = list(settled[-1].wealth) if settled else [scenario.labs.endowment] * count
    order = sorted(range(count), key=lambda lab: (-scores[lab], lab))
    standings = tuple(
        Standing(
            rank=rank,
            player_id=lab + 1,
            label=lab_label(lab + 1),
            nickname=lab_seats[lab].nickname if lab in lab_seats else "",
            human=bool(
                lab in lab_seats and lab_seats[lab].has_player and not lab_seats[lab].is_program
            ),
            score=float(scores[lab]),
            wealth=float(wealth[lab]),
        )
        for rank, lab in enumerate(order, start=1)
    )
    return Ledger(
        records=settled,
        seats=lab_seats,
        rows=tuple(rows),
        scores=tuple(float(s) for s in scores),
        wealth=tuple(float(w) for w in wealth),
        standings=standings,
        governor_score=float(sum(float(r.metrics["welfare"]) for r in settled)),
    )


def metric_rows(records: Iterable[RoundRecord]) -> list[dict[str, Any]]:
    """Return one dict per settled round: ``round`` then sim_core's METRICS (§8), in order."""
    return [{"round": r.round_no, **{name: r.metrics[name] for name in METRICS}} for r in records]


def audit_scores(game: Game, records: Sequence[RoundRecord]) -> tuple[AuditScore, ...]:
    """Return the governor's audits of the settled rounds against ``optimal`` and ``none``.

    Each round is scored by sim_core's ``score_audits`` on its own draws with its logged moves
    (one query of the log per round, and one of the labs' seats); the totals add up the rounds
    (audits, violators caught, compliant labs audited, welfare). Empty without a settled round.
    """
    if not records:
        return ()
    setup = bridge.setup_of(game)
    seats = Seat.objects.filter(game=game, role=Role.LAB).values_list("pk", "lab_index")
    labs = {pk: index for pk, index in seats if index is not None}
    totals: dict[str, list[float]] = {}
    for record in records:
        inputs = bridge.logged_inputs(game, record.round_no, labs)
        for row in score_audits(setup, bridge.state_from_json(record.state), inputs):
            total = totals.setdefault(row.policy, [0, 0, 0, 0.0])
            total[0] += row.audits
            total[1] += row.caught
            total[2] += row.false_positives
            total[3] += row.welfare
    return tuple(
        AuditScore(
            policy=policy,
            audits=int(total[0]),
            caught=int(total[1]),
            false_positives=int(total[2]),
            welfare=float(total[3]),
        )
        for policy, total in totals.items()
    )
