"""The class debrief: what the class did, beside what the model predicts and simulates.

Here: ``debrief_summary`` (cheap, computed on every request: the per-round charts with the
model's reference lines, observed compliance beside the prediction at the game's P and p_eff,
the instructor's other classes of the same scenario, the leaderboard) and the two expensive
parts, computed once per game and kept in ``DebriefCache``: the deterrence heatmap (sim_core's
sweep, MODEL.md §9, with the game's point marked) and a few hundred simulated all-bot classes of
the same scenario (where the class sits: a percentile).

Expensive parts run as a background job (``permitgame.jobs``) started by the first request
(``ensure``); the page polls until the row is done. A row left ``running`` by a server that
stopped is taken over once it has not moved for ``STALE_SECONDS``. The cache row is the only
thing written here: it is a cache of pure functions of the game's scenario (and rounds played),
never game state, so it is written outside the game's lock. Numbers come from sim_core
(``run_sweep``, ``simulate_classes``, ``percentile_rank``, ``theory_summary``, ``summarise``);
nothing here computes a rule of the game.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from django.db import IntegrityError

from permitgame import bridge, charts, clock, host_selectors, jobs, ledger, selectors
from permitgame.charts import Chart
from permitgame.ledger import Standing
from permitgame.models import Action, DebriefCache, Game, Move, RoundRecord, Seat, lab_label
from sim_core import (
    AuditScore,
    MetricsRow,
    Role,
    RoundInputs,
    Scenario,
    TheorySummary,
    csv_table,
    expected_bot_prices,
    expected_clearing_price,
    make_setup,
    marginal_gain,
    perceived_p_eff,
    percentile_rank,
    replay_with_bots,
    resolve_round,
    simulate_classes,
    summarise,
    theory_summary,
)

logger = logging.getLogger(__name__)

HEATMAP = "heatmap"
CLASSES = "classes"
KINDS = (HEATMAP, CLASSES)

#: The heatmap's grid (P values x p_eff values) and replicates per cell.
HEATMAP_GRID = (21, 21)
HEATMAP_REPLICATES = 20
#: The metrics kept from the sweep: the map can show either (MODEL.md §9 offers both).
HEATMAP_METRICS = ("compliance_rate", "deterrence_rate")
HEATMAP_THRESHOLD = 0.9
#: How many all-bot classes the class is set beside.
SIMULATED_CLASSES = 300
#: The metrics of the class compared with the simulated classes, with how they read.
COMPARED = (
    ("compliance_rate", "Compliance rate", True),
    ("price", "Mean price", False),
    ("violations", "Violations per round", False),
    ("caught", "Caught per round", False),
    ("welfare", "Welfare per round", False),
)
#: A running row that has not moved for this long belongs to a server that stopped.
STALE_SECONDS = 120
#: Bump when a computation changes, so old cache rows are not reused.
CACHE_VERSION = 1

METRIC_LABELS = {"compliance_rate": "compliance", "deterrence_rate": "deterrence"}


# ------------------------------------------------------------------------------ the class's game


def debrief_scenario(game: Game) -> Scenario:
    """Return the scenario the model is asked about: the game's, as the labs perceived it.

    Labs facing a student governor expect the announced π1 and π0 (MODEL.md §5), which is the
    bot policy ``policy``; so the prediction and the simulated classes use it.
    """
    scenario = bridge.scenario_of(game)
    if game.human_governor:
        scenario = scenario.with_changes(governor=replace(scenario.governor, policy="policy"))
    return scenario


@dataclass(frozen=True, slots=True, kw_only=True)
class Observed:
    """What the class did: one row per settled round and their means (MODEL.md §8)."""

    rows: tuple[dict[str, Any], ...]
    summary: dict[str, float | None]
    punishment: float
    p_eff: float
    rounds_played: int
    detected: int
    violations: int


def observed(
    game: Game, scenario: Scenario | None = None, book: ledger.Ledger | None = None
) -> Observed:
    """Return the class's rounds, their means, its P and the p_eff its labs perceived (mean)."""
    scenario = scenario or bridge.scenario_of(game)
    records = (book or ledger.read(game)).records
    rows = tuple(ledger.metric_rows(records))
    summary = summarise([MetricsRow(**row) for row in rows]) if rows else {}
    if records:
        p_eff = float(
            np.mean(
                [
                    perceived_p_eff(
                        scenario,
                        announced_high_prob=record.announced_high_prob,
                        human_governor=game.human_governor,
                    )
                    for record in records
                ]
            )
        )
    else:
        p_eff = theory_summary(debrief_scenario(game)).perceived_p_eff
    return Observed(
        rows=rows,
        summary=summary,
        punishment=scenario.audit.punishment,
        p_eff=p_eff,
        rounds_played=len(rows),
        detected=int(sum(row["caught"] for row in rows)),
        violations=int(sum(row["violations"] for row in rows)),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class OtherClass:
    """One of the instructor's classes of the same scenario."""

    code: str
    title: str
    date: str
    rounds: int
    compliance_rate: float | None
    price: float | None
    violations: float | None
    caught: float | None
    this: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class PriceStory:
    """The price the model expects beside this class: that of the bots it played beside (§7).

    ``expected`` is the bots' expected price of each round (sim_core's ``expected_bot_prices``),
    ``mean`` its mean over the rounds played; ``truthful`` is the price if labs bid their full net
    value; ``penalty_cap`` the largest expected penalty a rational bot perceives (max r·p_eff·P
    − rho), above which no rational bid goes; ``capped``: the penalty, not the values, sets the
    price (the rational price is clearly below the truthful one); ``marginal_gain`` is g* = ``mean``
    + rho, the marginal lab's gain at the bots' price (the prediction paragraph quotes it).
    """

    bots: str
    expected: tuple[float, ...]
    mean: float
    marginal_gain: float
    truthful: float
    penalty_cap: float
    capped: bool
    observed: float | None
    fixed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class Enforcement:
    """Detection as announced beside detection as it happened in this class.

    ``realised_detection``: violators caught of violators (None without a violation).
    ``audit_rate_signal``/``audit_rate_quiet``: the share of labs without a permit audited
    after a warning signal / without one (None when no such lab), beside the announced π1, π0.
    """

    announced_p_eff: float
    realised_detection: float | None
    caught: int
    violations: int
    announced_high_prob: float
    announced_base_prob: float
    audit_rate_signal: float | None
    signalled: int
    audit_rate_quiet: float | None
    quiet: int
    policy: str


def _bots_label(scenario: Scenario) -> str:
    mix = dict(scenario.labs.strategy)
    if len(mix) == 1:
        return f"{next(iter(mix))} bots"
    return "bots (" + ", ".join(f"{share * 100:.0f}% {name}" for name, share in mix.items()) + ")"


def price_story(game: Game, scenario: Scenario, seen: Observed) -> PriceStory:
    """Return the bots' expected price beside the class's (MODEL.md §7's paragraph)."""
    rounds = max(game.rounds, seen.rounds_played)
    expected = expected_bot_prices(scenario, rounds=rounds)
    played = expected[: max(seen.rounds_played, 1)]
    truthful = expected_clearing_price(scenario)
    audit, labs = scenario.audit, scenario.labs
    mean = float(np.mean(played))
    return PriceStory(
        bots=_bots_label(scenario),
        expected=expected,
        mean=mean,
        marginal_gain=marginal_gain(mean, labs.racing_value),
        truthful=truthful,
        penalty_cap=max(
            labs.risk_profile[1] * seen.p_eff * audit.punishment - labs.racing_value, 0.0
        ),
        capped=mean < truthful - 0.01,
        observed=seen.summary.get("price"),
        fixed=scenario.market.type == "fixed_price",
    )


def enforcement_story(
    game: Game, scenario: Scenario, seen: Observed, book: ledger.Ledger | None = None
) -> Enforcement:
    """Return the announced detection beside the realised one and the audit rates by signal."""
    records = (book or ledger.read(game)).records
    signalled = quiet = audited_signalled = audited_quiet = 0
    for record in records:
        for won, signal, audited in zip(record.won, record.signals, record.audited, strict=True):
            if won:  # a permit holder is never audited by a bot: count labs without a permit
                continue
            if signal:
                signalled += 1
                audited_signalled += bool(audited)
            else:
                quiet += 1
                audited_quiet += bool(audited)
    policy = "policy" if game.human_governor else scenario.governor.policy
    announced_high = scenario.audit.high_prob
    if records and policy == "optimal":
        announced_high = float(np.mean([r.announced_high_prob for r in records]))
    announced_base = 0.0 if policy in ("optimal", "none") else scenario.audit.base_prob
    if policy == "none":
        announced_high = 0.0
    return Enforcement(
        announced_p_eff=seen.p_eff,
        realised_detection=seen.detected / seen.violations if seen.violations else None,
        caught=seen.detected,
        violations=seen.violations,
        announced_high_prob=announced_high,
        announced_base_prob=announced_base,
        audit_rate_signal=audited_signalled / signalled if signalled else None,
        signalled=signalled,
        audit_rate_quiet=audited_quiet / quiet if quiet else None,
        quiet=quiet,
        policy="a student governor" if game.human_governor else policy,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterRound:
    """One round: the class against its bots (fallback, and rational) on the same draws."""

    round_no: int
    price: float | None
    bot_price: float | None
    rational_price: float | None
    compliance: float
    bot_compliance: float
    rational_compliance: float
    welfare: float
    bot_welfare: float
    rational_welfare: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterSeat:
    """One student's total payoff against their fallback bot's and a rational bot's."""

    label: str
    nickname: str
    fallback: str
    score: float
    bot_score: float
    rational_score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Counterfactual:
    """The bot in your seat: the finished game replayed on the same draws with bots in every
    human seat (each seat's fallback strategy; second line: a rational bot)."""

    rounds: tuple[CounterRound, ...]
    seats: tuple[CounterSeat, ...]
    human_governor: bool
    chart: Chart

    @property
    def identical(self) -> bool:
        """Whether the class played exactly as its bots would have (no difference anywhere)."""
        return all(
            math.isclose(r.welfare, r.bot_welfare, abs_tol=1e-9)
            and math.isclose(r.compliance, r.bot_compliance, abs_tol=1e-9)
            for r in self.rounds
        ) and all(math.isclose(s.score, s.bot_score, abs_tol=1e-9) for s in self.seats)


def counterfactual(game: Game, book: ledger.Ledger | None = None) -> Counterfactual | None:
    """Replay the settled rounds with bots in the human seats, through sim_core's resolver."""
    book = book or ledger.read(game)
    records = book.records
    if not records:
        return None
    setup = bridge.setup_of(game)
    seats = list(Seat.objects.filter(game=game))
    students = sorted(
        (s for s in seats if s.lab_index is not None and s.has_player),
        key=lambda s: s.lab_index or 0,
    )
    rounds = len(records)
    fallback = replay_with_bots(setup, rounds=rounds)
    rational = replay_with_bots(
        setup, rounds=rounds, strategies={s.lab_index or 0: "rational" for s in students}
    )
    rows = []
    for i, record in enumerate(records):
        bot, ration = fallback.rows[i], rational.rows[i]
        rows.append(
            CounterRound(
                round_no=record.round_no,
                price=record.price,
                bot_price=bot.price,
                rational_price=ration.price,
                compliance=float(record.metrics["compliance_rate"]),
                bot_compliance=bot.compliance_rate,
                rational_compliance=ration.compliance_rate,
                welfare=float(record.metrics["welfare"]),
                bot_welfare=bot.welfare,
                rational_welfare=ration.welfare,
            )
        )
    counter_seats = []
    for seat in students:
        lab = seat.lab_index
        assert lab is not None
        counter_seats.append(
            CounterSeat(
                label=lab_label(lab + 1),
                nickname=seat.nickname,
                fallback=seat.fallback_strategy,
                score=book.scores[lab],
                bot_score=float(sum(p[lab] for p in fallback.payoffs)),
                rational_score=float(sum(p[lab] for p in rational.payoffs)),
            )
        )
    labels = [str(r.round_no) for r in rows]
    bot_welfare: list[float | None] = [r.bot_welfare for r in rows]
    rational_welfare: list[float | None] = [r.rational_welfare for r in rows]
    chart = charts.line_chart(
        name="counterfactual",
        title="Welfare: the class against its bots",
        labels=labels,
        series=[
            charts.Series("this class", [r.welfare for r in rows], charts.BLUE),
            charts.Series("bots in the students' seats", bot_welfare, charts.GREY, dashed=True),
            charts.Series("rational bots there", rational_welfare, charts.ORANGE, dashed=True),
        ],
        x_label="Round",
        y_label="welfare",
        description=(
            "Each round's welfare in this class, and in the same game replayed on the same draws "
            "with a bot in every student's seat."
        ),
    )
    governor = next((s for s in seats if s.role == Role.GOVERNOR), None)
    return Counterfactual(
        rounds=tuple(rows),
        seats=tuple(counter_seats),
        human_governor=bool(governor is not None and governor.has_player),
        chart=chart,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class BeliefRow:
    """One lab's answers to "how likely is a violator caught?" and the r they imply (§1)."""

    label: str
    nickname: str
    answers: int
    mean_belief: float
    implied_risk: float | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Beliefs:
    """What the labs believed, against the announced and the realised detection."""

    chart: Chart
    labs: tuple[BeliefRow, ...]
    answers: int


def beliefs(game: Game, book: ledger.Ledger | None = None) -> Beliefs | None:
    """Return the belief answers of a game that asked them (None when none was given).

    A lab that believes a violator is caught with chance b perceives the expected penalty
    b·P; MODEL.md §1 writes that as r·p_eff·P, so its implied risk multiplier is r = b / p_eff
    with the p_eff announced that round (averaged over the lab's answers).
    """
    if not game.ask_belief:
        return None
    moves = list(
        Move.objects.filter(game=game, action=Action.BELIEF).select_related("seat").order_by("id")
    )
    if not moves:
        return None
    scenario = bridge.scenario_of(game)
    records = {r.round_no: r for r in (book or ledger.read(game)).records}
    announced = {
        number: perceived_p_eff(
            scenario,
            announced_high_prob=record.announced_high_prob,
            human_governor=game.human_governor,
        )
        for number, record in records.items()
    }
    by_round: dict[int, list[float]] = {}
    by_lab: dict[int, list[tuple[float, float | None]]] = {}
    seats: dict[int, Seat] = {}
    for move in moves:
        if move.seat is None or move.seat.lab_index is None or move.round_no not in records:
            continue
        belief = float(move.payload["percent"]) / 100
        by_round.setdefault(move.round_no, []).append(belief)
        p = announced[move.round_no]
        by_lab.setdefault(move.seat.lab_index, []).append((belief, belief / p if p > 0 else None))
        seats[move.seat.lab_index] = move.seat
    if not by_round:
        return None
    numbers = sorted(records)
    believed: list[float | None] = [
        float(np.mean(by_round[n])) if n in by_round else None for n in numbers
    ]
    realised: list[float | None] = [
        float(records[n].metrics["caught"]) / float(records[n].metrics["violations"])
        if records[n].metrics["violations"]
        else None
        for n in numbers
    ]
    said: list[float | None] = [announced[n] for n in numbers]
    chart = charts.line_chart(
        name="beliefs",
        title="Detection: believed, announced and realised",
        labels=[str(n) for n in numbers],
        series=[
            charts.Series("believed (mean answer)", believed, charts.ORANGE),
            charts.Series("announced p_eff", said, charts.GREY, dashed=True),
            charts.Series("realised (caught of violators)", realised, charts.BLUE),
        ],
        x_label="Round",
        y_label="chance a violator is caught",
        description="The labs' mean answer each round, the announced and the realised detection.",
    )
    rows = []
    for lab in sorted(by_lab):
        answers = by_lab[lab]
        ratios = [r for _, r in answers if r is not None]
        rows.append(
            BeliefRow(
                label=lab_label(lab + 1),
                nickname=seats[lab].nickname,
                answers=len(answers),
                mean_belief=float(np.mean([b for b, _ in answers])),
                implied_risk=float(np.mean(ratios)) if ratios else None,
            )
        )
    return Beliefs(chart=chart, labs=tuple(rows), answers=len(moves))


def audit_comparison(game: Game, book: ledger.Ledger | None = None) -> tuple[AuditScore, ...]:
    """Return the governor's audits over the whole game against ``optimal`` and ``none``.

    Each settled round is scored by sim_core's ``score_audits`` on its own draws with its
    logged moves; the totals add up the rounds (audits, violators caught, compliant labs
    audited, welfare).
    """
    return ledger.audit_scores(game, (book or ledger.read(game)).records)


@dataclass(frozen=True, slots=True, kw_only=True)
class DebriefSummary:
    """The cheap part of the debrief, computed on each request."""

    game: Game
    scenario: Scenario
    observed: Observed
    theory: TheorySummary
    charts: tuple[Chart, ...]
    leaderboard: tuple[Standing, ...]
    governor: str
    governor_score: float
    others: tuple[OtherClass, ...]
    others_chart: Chart | None
    governor_bot: str = ""
    price: PriceStory | None = None
    enforcement: Enforcement | None = None
    counterfactual: Counterfactual | None = None
    beliefs: Beliefs | None = None
    audits: tuple[AuditScore, ...] = ()
    trade: TradeComparison | None = None  # MODEL.md §3b only: the auction counterfactual

    @property
    def compliance(self) -> float | None:
        return self.observed.summary.get("compliance_rate")

    @property
    def gap(self) -> float | None:
        """Observed minus predicted compliance."""
        if self.compliance is None:
            return None
        return self.compliance - self.theory.predicted_compliance

    @property
    def gap_points(self) -> int | None:
        """The gap in percentage points, without its sign."""
        return None if self.gap is None else round(abs(self.gap) * 100)


def _leaderboard(game: Game, book: ledger.Ledger) -> tuple[tuple[Standing, ...], str, float]:
    governor = Seat.objects.filter(game=game, role=Role.GOVERNOR).first()
    governor_name = governor.nickname if governor is not None and governor.has_player else ""
    return book.standings, governor_name, book.governor_score


def _other_classes(game: Game) -> tuple[tuple[OtherClass, ...], Chart | None]:
    games = host_selectors.same_scenario_games(game)
    if game not in games:
        games = [*games, game]
    rows = []
    for other in games:
        export = selectors.game_export_rows(other)
        summary = summarise([MetricsRow(**row) for row in export]) if export else {}
        rows.append(
            OtherClass(
                code=other.code,
                title=other.title,
                date=other.created_at.date().isoformat(),
                rounds=len(export),
                compliance_rate=summary.get("compliance_rate"),
                price=summary.get("price"),
                violations=summary.get("violations"),
                caught=summary.get("caught"),
                this=other.pk == game.pk,
            )
        )
    if len(rows) < 2:
        return tuple(rows), None
    chart = charts.bar_chart(
        name="classes-compared",
        title="Compliance, class by class (same scenario)",
        labels=[f"{row.code}{' *' if row.this else ''}" for row in rows],
        series=[
            charts.Series(
                "compliance",
                [row.compliance_rate for row in rows],
                charts.BLUE,
                colours=[charts.ORANGE if row.this else charts.BLUE for row in rows],
            )
        ],
        x_label="Class (join code; * = this class)",
        y_label="share of labs",
        y_max=1.0,
        percent=True,
        description="The mean compliance rate of each of your classes of this scenario.",
    )
    return tuple(rows), chart


def debrief_summary(game: Game) -> DebriefSummary:
    """Return the cheap part of the debrief of ``game`` (any time: during or after the game)."""
    scenario = debrief_scenario(game)
    played = bridge.scenario_of(game)  # as stored: the governor's own policy
    book = ledger.read(game)  # the settled rounds, read once for every part below
    seen = observed(game, played, book)
    theory = theory_summary(scenario)
    story = price_story(game, scenario, seen)
    round_charts = charts.round_charts(
        list(seen.rows),
        rounds=game.rounds,
        token_cap=scenario.market.token_cap,
        lab_count=scenario.labs.count,
        predicted_compliance=theory.predicted_compliance,
        expected_price=story.expected,
        expected_price_label=f"model's expected price ({story.bots})",
        traded=scenario.market.grandfathered,
    )
    leaderboard, governor, welfare = _leaderboard(game, book)
    others, others_chart = _other_classes(game)
    return DebriefSummary(
        game=game,
        scenario=scenario,
        observed=seen,
        theory=theory,
        charts=tuple(round_charts),
        leaderboard=leaderboard,
        governor=governor,
        governor_score=welfare,
        others=others,
        others_chart=others_chart,
        governor_bot=played.governor.policy,
        price=story,
        enforcement=enforcement_story(game, played, seen, book),
        counterfactual=counterfactual(game, book),
        beliefs=beliefs(game, book),
        audits=audit_comparison(game, book),
        trade=trade_comparison(game, book),
    )


# ------------------------------------------------------------------------------ the expensive parts

Progress = Callable[[float], None]


def heatmap_ranges(punishment: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """Return the (P, p_eff) ranges of the debrief's map: the whole [0, 1] of p_eff, and P
    from 0 to at least 1 (further when the game's P is larger), so the game's point is inside.
    """
    p_high = max(1.0, math.ceil(punishment * 12) / 10)
    return (0.0, p_high), (0.0, 1.0)


def _compute_heatmap(game: Game, progress: Progress) -> dict[str, Any]:
    from sim_core.sweep import run_sweep

    scenario = debrief_scenario(game)
    p_range, p_eff_range = heatmap_ranges(scenario.audit.punishment)
    result = run_sweep(
        scenario,
        p_range=p_range,
        p_eff_range=p_eff_range,
        grid=HEATMAP_GRID,
        replicates=HEATMAP_REPLICATES,
        metric=HEATMAP_METRICS[0],
        threshold=HEATMAP_THRESHOLD,
        workers=1,  # never fork the web server
        progress=lambda done, total: progress(done / max(total, 1)),
    )
    maps = {}
    for metric in HEATMAP_METRICS:
        document = result.with_metric(metric).document()
        maps[metric] = {key: document[key] for key in ("values", "stderr", "flip")}
    document = result.document()
    return {
        "p": document["p"],
        "p_eff": document["p_eff"],
        "theory": document["theory"],
        "marginal_gain": result.marginal_gain,
        "threshold": result.threshold,
        "replicates": HEATMAP_REPLICATES,
        "labs": scenario.labs.count,
        "rounds": scenario.rounds,
        "maps": maps,
    }


def _compute_classes(game: Game, progress: Progress) -> dict[str, Any]:
    scenario = debrief_scenario(game)
    rounds = RoundRecord.objects.filter(game=game).count() or scenario.rounds
    progress(0.05)
    samples = simulate_classes(scenario, classes=SIMULATED_CLASSES, rounds=rounds)
    return {
        "classes": SIMULATED_CLASSES,
        "rounds": rounds,
        "samples": {name: [float(v) for v in samples[name]] for name, _, _ in COMPARED},
    }


_COMPUTE: dict[str, Callable[[Game, Progress], dict[str, Any]]] = {
    HEATMAP: _compute_heatmap,
    CLASSES: _compute_classes,
}


def cache_key(game: Game, kind: str) -> str:
    """Return the parameters a cached result depends on (beyond the game's scenario)."""
    if kind == HEATMAP:
        grid = f"{HEATMAP_GRID[0]}x{HEATMAP_GRID[1]}"
        return f"v{CACHE_VERSION};grid={grid};replicates={HEATMAP_REPLICATES}"
    if kind == CLASSES:
        rounds = RoundRecord.objects.filter(game=game).count()
        return f"v{CACHE_VERSION};classes={SIMULATED_CLASSES};rounds={rounds}"
    raise ValueError(f"unknown debrief part {kind!r}; choose from {', '.join(KINDS)}")


def _store_progress(cache_id: int) -> Progress:
    last = [0.0]

    def report(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.3 and fraction < 1.0:
            return
        last[0] = now
        DebriefCache.objects.filter(pk=cache_id, status=DebriefCache.Status.RUNNING).update(
            progress=min(max(fraction, 0.0), 1.0), updated_at=clock.now()
        )

    return report


def _compute(cache_id: int) -> None:
    """Compute one cache row and store its result (or its error)."""
    cache = DebriefCache.objects.select_related("game").get(pk=cache_id)
    try:
        result = _COMPUTE[cache.kind](cache.game, _store_progress(cache_id))
    except Exception as error:
        logger.exception("debrief %s of game %s failed", cache.kind, cache.game_id)
        DebriefCache.objects.filter(pk=cache_id).update(
            status=DebriefCache.Status.FAILED, error=str(error)[:1000], updated_at=clock.now()
        )
        return
    DebriefCache.objects.filter(pk=cache_id).update(
        status=DebriefCache.Status.DONE, progress=1.0, result=result, updated_at=clock.now()
    )


def _claim(cache: DebriefCache, *, retry: bool) -> bool:
    """Take over a row that a stopped server left running, or a failed one on ``retry``."""
    now = clock.now()
    stale = (now - cache.updated_at).total_seconds() > STALE_SECONDS
    left_running = cache.status == DebriefCache.Status.RUNNING and stale
    if not (left_running or (cache.status == DebriefCache.Status.FAILED and retry)):
        return False
    claimed = DebriefCache.objects.filter(pk=cache.pk, updated_at=cache.updated_at).update(
        status=DebriefCache.Status.RUNNING, progress=0.0, error="", started_at=now, updated_at=now
    )
    return claimed == 1


def ensure(game: Game, kind: str, *, background: bool = True, retry: bool = False) -> DebriefCache:
    """Return the cache row of ``kind`` for ``game``, starting its computation if needed.

    Args:
        game: the game.
        kind: ``HEATMAP`` or ``CLASSES``.
        background: compute in a thread and return at once (the page polls); else compute now.
        retry: start again after a failure.
    """
    key = cache_key(game, kind)
    now = clock.now()
    try:
        cache, created = DebriefCache.objects.get_or_create(
            game=game, kind=kind, key=key, defaults={"started_at": now, "updated_at": now}
        )
    except IntegrityError:  # another request created it a moment ago
        cache, created = DebriefCache.objects.get(game=game, kind=kind, key=key), False
    if not (created or _claim(cache, retry=retry)):
        return cache
    if background:
        jobs.start(("debrief", cache.pk), _compute, cache.pk, name=f"debrief-{kind}-{game.code}")
    else:
        _compute(cache.pk)
    cache.refresh_from_db()
    return cache


# ------------------------------------------------------------------------------ presenting them


def heatmap_chart(game: Game, result: Mapping[str, Any], metric: str = HEATMAP_METRICS[0]) -> Chart:
    """Return the heatmap chart of a cached sweep, with the game's own point marked."""
    seen = observed(game)
    scenario = debrief_scenario(game)
    chosen = result["maps"][metric]
    label = METRIC_LABELS.get(metric, metric)
    caption = (
        f"{scenario.name} · {result['labs']} labs · {result['rounds']} rounds · "
        f"{result['replicates']} simulated games per cell · flip: first p_eff with "
        f"{label} ≥ {result['threshold'] * 100:.0f}% · g* = {result['marginal_gain']:.3f} · "
        f"P is the whole penalty and p_eff the chance a violator is caught, from 0: the cells "
        f"at P = 0 and p_eff = 0 carry no expected penalty (edge cells are half as wide)"
    )
    return charts.heatmap(
        name="heatmap" if metric == HEATMAP_METRICS[0] else f"heatmap-{metric}",
        title=f"Deterrence heatmap: {label} by punishment and detection",
        p=result["p"],
        p_eff=result["p_eff"],
        values=chosen["values"],
        flip=chosen["flip"],
        marginal_gain=result["marginal_gain"],
        metric=metric,
        threshold=result["threshold"],
        mark=(seen.punishment, seen.p_eff),
        mark_label="This class",
        metric_label=label,
        caption=caption,
        description=(
            f"Simulated {label} for each punishment P (x) and effective detection p_eff (y); "
            f"this class played at P = {seen.punishment:.2f} and p_eff = {seen.p_eff:.2f}."
        ),
    )


def heatmap_cell(result: Mapping[str, Any], punishment: float, p_eff: float) -> float | None:
    """Return the simulated compliance of the grid cell nearest to (P, p_eff)."""
    p_values, p_effs = result["p"], result["p_eff"]
    column = min(range(len(p_values)), key=lambda i: abs(p_values[i] - punishment))
    row = min(range(len(p_effs)), key=lambda i: abs(p_effs[i] - p_eff))
    value = result["maps"][HEATMAP_METRICS[0]]["values"][row][column]
    return None if value is None else float(value)


@dataclass(frozen=True, slots=True, kw_only=True)
class Comparison:
    """One metric of the class against the simulated classes."""

    metric: str
    label: str
    percent: bool
    value: float
    median: float
    low: float
    high: float
    percentile: float


def classes_comparison(
    game: Game, result: Mapping[str, Any]
) -> tuple[Chart | None, tuple[Comparison, ...]]:
    """Return the histogram of simulated compliance (this class marked) and each percentile."""
    seen = observed(game)
    comparisons = []
    for metric, label, percent in COMPARED:
        sample = np.asarray(result["samples"][metric], dtype=np.float64)
        value = seen.summary.get(metric)
        if value is None or sample.size == 0:
            continue
        comparisons.append(
            Comparison(
                metric=metric,
                label=label,
                percent=percent,
                value=float(value),
                median=float(np.median(sample)),
                low=float(np.percentile(sample, 5)),
                high=float(np.percentile(sample, 95)),
                percentile=percentile_rank(float(value), sample),
            )
        )
    if not comparisons:
        return None, ()
    compliance = comparisons[0]
    chart = charts.histogram(
        name="classes",
        title=f"Compliance in {result['classes']} simulated all-bot classes",
        samples=result["samples"]["compliance_rate"],
        value=compliance.value,
        value_label=(
            f"This class: {compliance.value * 100:.0f}% (percentile {compliance.percentile:.0f})"
        ),
        x_label=f"mean compliance rate over {result['rounds']} rounds",
        description=(
            f"How often simulated classes of bots reached each compliance rate; this class's "
            f"{compliance.value * 100:.0f}% sits at percentile {compliance.percentile:.0f}."
        ),
    )
    return chart, tuple(comparisons)


def classes_csv(result: Mapping[str, Any]) -> str:
    """Return the simulated classes as CSV: one row per class, one column per compared metric."""
    names = [metric for metric, _, _ in COMPARED]
    samples: Sequence[Sequence[float]] = [result["samples"][name] for name in names]
    rows = zip(*samples, strict=True) if samples else ()
    return csv_table(
        ["class", *names],
        ([index, *(float(value) for value in row)] for index, row in enumerate(rows, start=1)),
    )


# ------------------------------------------------------------ traded permits beside the auction


@dataclass(frozen=True, slots=True, kw_only=True)
class TradeComparison:
    """A class of granted, traded permits beside the auction on the same draws (MODEL.md §3b).

    The counterfactual replays each settled round from the state the class left it in, on the
    game's own seed (the same values, risk profiles and tie-break keys), with the permits sold at
    auction and every seat played by its bot strategy (sim_core's ``resolve_round``). Totals are
    over the settled rounds.

    Attributes:
        rounds: settled rounds compared.
        trades: permits that changed hands in the class.
        same_holders: lab-rounds holding a permit both in the class and under the auction.
        holders: lab-rounds holding a permit in the class.
        sellers_income: what the class's sellers received (trades × price).
        revenue: the government's revenue in the class (fines and collateral only).
        auction_revenue: its revenue under the auction (permit sales included).
        welfare, auction_welfare: welfare (MODEL.md §8) in the class and under the auction.
    """

    rounds: int
    trades: int
    same_holders: int
    holders: int
    sellers_income: float
    revenue: float
    auction_revenue: float
    welfare: float
    auction_welfare: float

    @property
    def same_share(self) -> float:
        """The share of the class's permit holdings that the auction would also have made."""
        return self.same_holders / self.holders if self.holders else 1.0


def trade_comparison(game: Game, book: ledger.Ledger | None = None) -> TradeComparison | None:
    """Return the class beside the auction counterfactual, or None (not §3b, or no round yet)."""
    scenario = bridge.scenario_of(game)
    records = (book or ledger.read(game)).records
    if not scenario.market.grandfathered or not records:
        return None
    auction = replace(scenario, market=replace(scenario.market, allocation="auction"))
    setup = make_setup(auction, seed=game.seed, human_governor=game.human_governor)
    same = holders = trades = 0
    income = revenue = auction_revenue = welfare = auction_welfare = 0.0
    for record in records:
        progress = resolve_round(setup, bridge.state_from_json(record.state), RoundInputs())
        assert progress.market is not None and progress.metrics is not None
        won = [bool(flag) for flag in record.won]
        same += sum(1 for lab, flag in enumerate(won) if flag and progress.market.won[lab])
        holders += sum(won)
        traded = int(record.metrics.get("trades", 0))
        trades += traded
        income += traded * (record.price or 0.0)
        revenue += float(record.metrics["revenue"])
        welfare += float(record.metrics["welfare"])
        auction_revenue += progress.metrics.revenue
        auction_welfare += progress.metrics.welfare
    return TradeComparison(
        rounds=len(records),
        trades=trades,
        same_holders=same,
        holders=holders,
        sellers_income=income,
        revenue=revenue,
        auction_revenue=auction_revenue,
        welfare=welfare,
        auction_welfare=auction_welfare,
    )
