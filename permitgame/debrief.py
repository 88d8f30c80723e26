"""The class debrief: what the class did, beside what the model predicts and simulates.

Here: ``debrief_summary`` (cheap, computed on every request: the per-round charts with the
model's reference lines, observed compliance beside the prediction at the game's P and p_eff,
the instructor's other classes of the same scenario, the leaderboard) and the two expensive
parts, computed once per game and kept in ``DebriefCache``: the deterrence heatmap (sim_core's
sweep, MODEL.md §9, with the game's point marked) and a few hundred simulated all-bot classes of
the same scenario (where the class sits: a percentile).

Expensive parts run in a background thread started by the first request (``ensure``); the page
polls until the row is done. A row left ``running`` by a server that stopped is taken over once
it has not moved for ``STALE_SECONDS``. The cache row is the only thing written here: it is a
cache of pure functions of the game's scenario (and rounds played), never game state, so it is
written outside the game's lock. Numbers come from sim_core (``run_sweep``,
``simulate_classes``, ``percentile_rank``, ``theory_summary``, ``summarise``); nothing here
computes a rule of the game.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from django.db import IntegrityError, close_old_connections, connection

from permitgame import bridge, charts, clock, host_selectors, selectors
from permitgame.charts import Chart
from permitgame.models import DebriefCache, Game, RoundRecord, Seat
from sim_core import (
    MetricsRow,
    Role,
    Scenario,
    TheorySummary,
    csv_table,
    perceived_p_eff,
    percentile_rank,
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

_threads: dict[int, threading.Thread] = {}
_threads_lock = threading.Lock()


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


def observed(game: Game, scenario: Scenario | None = None) -> Observed:
    """Return the class's rounds, their means, its P and the p_eff its labs perceived (mean)."""
    scenario = scenario or bridge.scenario_of(game)
    records = list(RoundRecord.objects.filter(game=game).order_by("round_no"))
    rows = tuple(selectors.game_export_rows(game))
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
class LeaderRow:
    rank: int
    label: str
    nickname: str
    human: bool
    score: float
    wealth: float


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
class DebriefSummary:
    """The cheap part of the debrief, computed on each request."""

    game: Game
    scenario: Scenario
    observed: Observed
    theory: TheorySummary
    charts: tuple[Chart, ...]
    leaderboard: tuple[LeaderRow, ...]
    governor: str
    governor_score: float
    others: tuple[OtherClass, ...]
    others_chart: Chart | None

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


def _leaderboard(game: Game) -> tuple[tuple[LeaderRow, ...], str, float]:
    records = list(RoundRecord.objects.filter(game=game).order_by("round_no"))
    seats = {s.lab_index: s for s in Seat.objects.filter(game=game) if s.lab_index is not None}
    governor = Seat.objects.filter(game=game, role=Role.GOVERNOR).first()
    scores = [0.0] * game.lab_count
    for record in records:
        for lab, payoff in enumerate(record.payoffs):
            scores[lab] += payoff
    wealth = (
        list(records[-1].wealth)
        if records
        else [bridge.scenario_of(game).labs.endowment] * len(scores)
    )
    order = sorted(range(len(scores)), key=lambda lab: (-scores[lab], lab))
    rows = tuple(
        LeaderRow(
            rank=rank,
            label=f"Lab {lab + 1}",
            nickname=seats[lab].nickname if lab in seats else "",
            human=bool(lab in seats and seats[lab].has_player and not seats[lab].is_program),
            score=float(scores[lab]),
            wealth=float(wealth[lab]),
        )
        for rank, lab in enumerate(order, start=1)
    )
    governor_name = governor.nickname if governor is not None and governor.has_player else ""
    welfare = float(sum(float(r.metrics["welfare"]) for r in records))
    return rows, governor_name, welfare


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
    seen = observed(game, bridge.scenario_of(game))
    theory = theory_summary(scenario)
    round_charts = charts.round_charts(
        list(seen.rows),
        rounds=game.rounds,
        token_cap=scenario.market.token_cap,
        lab_count=scenario.labs.count,
        predicted_compliance=theory.predicted_compliance,
        expected_price=theory.expected_price,
    )
    leaderboard, governor, welfare = _leaderboard(game)
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


def _run_in_thread(cache_id: int) -> None:
    try:
        close_old_connections()
        _compute(cache_id)
    finally:
        connection.close()  # this thread's own connection
        with _threads_lock:
            _threads.pop(cache_id, None)


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
        thread = threading.Thread(
            target=_run_in_thread, args=(cache.pk,), name=f"debrief-{kind}-{game.code}", daemon=True
        )
        with _threads_lock:
            _threads[cache.pk] = thread
        thread.start()
    else:
        _compute(cache.pk)
    cache.refresh_from_db()
    return cache


def wait_for_background(timeout: float = 60.0) -> None:
    """Wait until every computation this process started has finished (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _threads_lock:
            threads = list(_threads.values())
        if not threads:
            return
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            return


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
        f"{label} ≥ {result['threshold'] * 100:.0f}% · g* = {result['marginal_gain']:.3f}"
    )
    return charts.heatmap(
        name="heatmap" if metric == HEATMAP_METRICS[0] else f"heatmap-{metric}",
        title=f"Deterrence heatmap: {label} by punishment and detection",
        p=result["p"],
        p_eff=result["p_eff"],
        values=chosen["values"],
        flip=chosen["flip"],
        marginal_gain=result["marginal_gain"],
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
