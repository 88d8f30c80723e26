"""The deterrence heatmap's sweep (MODEL.md §9; issue: the sweep engine).

A cell is a game: the sweep must give exactly what ``run_game`` gives for the cell's scenario.
The map must have the model's shape, its flip line must follow the theory where the theory is
exact, and every cell must be reproducible whatever grid it sits in.
"""

import csv
import io
import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

import sim_core.sweep as sweep_module
from sim_core import (
    METRICS,
    SweepError,
    cell_scenario,
    load_preset,
    parse_scenario,
    replicate_seed,
    run_game,
    run_sweep,
    sweep_scenario,
)
from sim_core.batch import WealthBound, play_cells, replicate_draws
from sim_core.parallel import fork_map

COUNTS = {"permits", "violations", "total_compute", "cap_overshoot", "audits", "caught"}


def small(name="targeted_audit", **labs):
    scenario = load_preset(name)
    return replace(scenario, labs=replace(scenario.labs, **labs)) if labs else scenario


def game_summary(scenario, punishment, p_eff, seed, rounds):
    game = run_game(
        cell_scenario(scenario, punishment=punishment, p_eff=p_eff), seed=seed, rounds=rounds
    )
    return np.array([game.summary[name] for name in METRICS])


def assert_equal_to_games(scenario, punishments, p_effs, seeds, rounds):
    draws = replicate_draws(scenario, seeds=seeds, rounds=rounds, dtype=np.float64)
    games = play_cells(scenario, draws, punishments=np.array(punishments), p_effs=np.array(p_effs))
    assert games.shape == (len(seeds), len(punishments), len(METRICS))
    for replicate, seed in enumerate(seeds):
        for cell, (punishment, p_eff) in enumerate(zip(punishments, p_effs, strict=True)):
            expected = game_summary(scenario, punishment, p_eff, seed, rounds)
            for index, name in enumerate(METRICS):
                # Counts and prices come out number for number; sums of values may differ in
                # the last digit (a matrix product over the batch instead of one dot product).
                assert games[replicate, cell, index] == pytest.approx(
                    expected[index], rel=1e-12, abs=1e-12
                ), (name, seed, punishment, p_eff)


CELLS = ([0.05, 0.2, 0.5, 0.8, 2.5], [0.9, 0.25, 0.5, 0.75, 1.0])


@pytest.mark.parametrize(
    ("scenario", "rounds"),
    [
        pytest.param(small(), 10, id="targeted_audit"),
        pytest.param(small(endowment=1.0), 30, id="wealth caps bids"),
        pytest.param(
            small(
                endowment=0.6,
                gross_value=(0.0, 1.0),
                strategy={
                    "rational": 0.4,
                    "adaptive": 0.2,
                    "random": 0.2,
                    "reckless": 0.1,
                    "truthful": 0.1,
                },
            ),
            25,
            id="every strategy, poor labs",
        ),
        pytest.param(small(risk_profile=(1.0, 1.0), redraw_values_each_round=False), 12, id="ties"),
        pytest.param(small("carbon_tax"), 12, id="fixed price"),
        pytest.param(small(racing_value=0.15, endowment=2.0), 25, id="racing value"),
    ],
)
def test_cell_equals_the_game_of_its_scenario_when_float64(scenario, rounds):
    assert_equal_to_games(scenario, *CELLS, seeds=[11, 3], rounds=rounds)


def test_cell_is_policy_none_with_backcheck_p_eff_and_the_whole_penalty():
    cell = cell_scenario(load_preset("targeted_audit"), punishment=0.6, p_eff=0.35)
    audit = cell.audit
    assert cell.governor.policy == "none"
    assert (audit.collateral, audit.fine, audit.reputation_penalty) == (0.0, 0.6, 0.0)
    assert audit.punishment == 0.6
    assert (audit.high_prob, audit.base_prob, audit.backcheck_prob) == (0.0, 0.0, 0.35)
    assert audit.audit_cost == 0.0 and audit.max_audits is None


def test_sweep_values_are_the_mean_of_the_games_of_each_cell():
    scenario = sweep_scenario(small(), labs=12, rounds=6)
    result = run_sweep(
        scenario,
        p_range=(0.3, 0.9),
        p_eff_range=(0.2, 0.8),
        grid=(3, 2),
        replicates=3,
        precision="float64",
        workers=1,
    )
    assert result.seeds == tuple(replicate_seed(scenario.seed, j) for j in range(3))
    for row, p_eff in enumerate(result.p_eff):
        for column, punishment in enumerate(result.p):
            games = [
                game_summary(scenario, float(punishment), float(p_eff), seed, 6)
                for seed in result.seeds
            ]
            compliance = [summary[METRICS.index("compliance_rate")] for summary in games]
            assert result.values[row, column] == pytest.approx(np.mean(compliance), abs=1e-12)
            assert result.stderr[row, column] == pytest.approx(
                np.std(compliance, ddof=1) / math.sqrt(3), abs=1e-12
            )
    assert result.counts.tolist() == [[3, 3, 3], [3, 3, 3]]


def test_wealth_bound_needs_tracking_only_when_losses_could_reach_the_highest_bid():
    bound = WealthBound.of(small(endowment=2.0))
    assert bound.highest_bid == pytest.approx(0.9) and bound.violation_loss == 0.0
    caught = np.array([[0, 1, 2]])
    assert bound.holds(np.array([0.5]), caught, caught).tolist() == [True]
    assert bound.holds(np.array([0.6]), caught, caught).tolist() == [False]  # 2 - 1.2 < 0.9
    reckless = WealthBound.of(small(gross_value=(0.0, 1.0), strategy={"reckless": 1.0}))
    assert reckless.violation_loss == pytest.approx(0.1)  # a violator may gain u = v − c < 0


# --- the map's shape ----------------------------------------------------------------------


def test_heatmap_is_monotone_in_p_and_p_eff_within_noise_when_labs_are_rational():
    scenario = sweep_scenario(small(), labs=40, rounds=10)
    result = run_sweep(scenario, grid=(9, 9), replicates=12, workers=1)
    values, errors = result.values, result.stderr
    along_p = np.diff(values, axis=1)
    along_p_eff = np.diff(values, axis=0)
    noise_p = 3 * np.hypot(errors[:, 1:], errors[:, :-1]) + 1e-12
    noise_p_eff = 3 * np.hypot(errors[1:], errors[:-1]) + 1e-12
    assert np.all(along_p >= -noise_p)
    assert np.all(along_p_eff >= -noise_p_eff)
    assert values[-1, -1] - values[0, 0] > 0.2  # and it does rise


def homogeneous(gross_value, redraw):
    return parse_scenario(
        {
            "name": "homogeneous",
            "rounds": 8,
            "labs": {
                "count": 20,
                "gross_value": list(gross_value),
                "risk_profile": [1.0, 1.0],
                "redraw_values_each_round": redraw,
            },
            "market": {"type": "clearing", "token_cap": 10},
        }
    )


@pytest.mark.parametrize(
    ("gross_value", "redraw", "spread"),
    [((0.5, 0.5), False, 0.0), ((0.48, 0.52), True, 0.04)],
    ids=["identical labs", "narrow values"],
)
def test_flip_follows_the_theory_curve_when_the_population_is_homogeneous(
    gross_value, redraw, spread
):
    # Identical labs (r = 1, u = 0.4) flip from cheating to complying exactly where
    # p_eff·P reaches u = g*: below it the Q permit holders comply and the other half cheats,
    # at or above it nobody cheats. So the first grid p_eff with compliance >= 0.9 is the first
    # grid point at or above g*/P. With values spread over [u_lo, u_hi] the flip may move by the
    # spread divided by P.
    result = run_sweep(
        homogeneous(gross_value, redraw),
        p_range=(0.2, 0.8),
        p_eff_range=(0.2, 1.0),
        grid=(13, 33),
        replicates=4,
        workers=1,
    )
    step = float(result.p_eff[1] - result.p_eff[0])
    gain = result.marginal_gain
    assert gain == pytest.approx(0.4, abs=spread / 2 + 1e-6)
    checked = 0
    for punishment, flip, theory in zip(result.p, result.flip, result.theory, strict=True):
        assert theory == pytest.approx(gain / punishment)
        tolerance = step + spread / punishment + 1e-6
        if theory > 1.0 + tolerance:
            assert math.isnan(flip)  # no p_eff in the grid deters
            continue
        if theory <= 1.0 - tolerance:
            checked += 1
            assert abs(flip - theory) <= tolerance, (punishment, flip, theory)
    assert checked >= 6
    below = result.values[result.p_eff < result.theory[-1] - 0.1, -1]
    assert np.all(below <= 0.5 + 1e-9) and np.all(below >= 0.5 - 0.1)  # half hold permits


# --- reproducibility ------------------------------------------------------------------------


def test_cell_gives_the_same_numbers_inside_any_grid(monkeypatch):
    scenario = sweep_scenario(small(), labs=16, rounds=12)
    coarse = run_sweep(scenario, grid=(3, 3), replicates=3, workers=1)
    monkeypatch.setattr(sweep_module, "BLOCK_ELEMENTS", 64)  # other blocks, other processes
    fine = run_sweep(scenario, grid=(7, 5), replicates=3, workers=3)
    alone = run_sweep(
        scenario, p_range=(0.5, 0.5), p_eff_range=(0.5, 0.5), grid=(1, 1), replicates=3
    )
    assert coarse.p.tolist() == [0.2, 0.5, 0.8] and coarse.p_eff.tolist() == [0.25, 0.5, 0.75]
    rows = [0, 2, 4]  # p_eff 0.25, 0.5, 0.75 among 0.25, 0.375, ...
    columns = [0, 3, 6]  # P 0.2, 0.5, 0.8 among 0.2, 0.3, ...
    assert fine.p[columns].tolist() == coarse.p.tolist()
    assert fine.p_eff[rows].tolist() == coarse.p_eff.tolist()
    inner = fine.replicate_values[:, rows][:, :, columns]
    assert np.array_equal(inner, coarse.replicate_values)  # every metric, every replicate
    assert np.array_equal(alone.replicate_values[:, 0, 0], coarse.replicate_values[:, 1, 1])


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_cell_gives_the_same_numbers_alone_when_labs_are_many(precision):
    # With a couple of hundred labs a matrix product over a block of cells adds a game's values
    # in an order that depends on the block's shape; the sums of u must not (welfare).
    scenario = sweep_scenario(small(), labs=240, rounds=5)
    grid = run_sweep(scenario, grid=(9, 9), replicates=3, precision=precision, workers=1)
    for row, column in [(0, 0), (4, 6), (8, 8), (7, 1)]:
        alone = run_sweep(
            scenario,
            p_range=(grid.p[column], grid.p[column]),
            p_eff_range=(grid.p_eff[row], grid.p_eff[row]),
            grid=(1, 1),
            replicates=3,
            precision=precision,
            workers=1,
        )
        inside = grid.replicate_values[:, row, column]
        assert np.array_equal(alone.replicate_values[:, 0, 0], inside)


def test_sweep_seed_changes_the_draws_and_replays_exactly():
    scenario = sweep_scenario(small(), labs=12, rounds=5)
    first = run_sweep(scenario, grid=(3, 3), replicates=2, seed=5, workers=1)
    again = run_sweep(scenario, grid=(3, 3), replicates=2, seed=5, workers=2)
    other = run_sweep(scenario, grid=(3, 3), replicates=2, seed=6, workers=1)
    assert np.array_equal(first.replicate_values, again.replicate_values)
    assert not np.array_equal(first.replicate_values, other.replicate_values)
    assert replicate_seed(5, 1) != replicate_seed(6, 0)  # neighbouring seeds share no games


def test_float32_agrees_with_float64_within_standard_errors():
    scenario = sweep_scenario(small(), labs=60, rounds=10)
    fast = run_sweep(scenario, grid=(6, 6), replicates=16, workers=1)
    exact = run_sweep(scenario, grid=(6, 6), replicates=16, workers=1, precision="float64")
    for name in METRICS:
        errors = exact.stderr_of(name)
        difference = np.abs(fast.mean_of(name) - exact.mean_of(name))
        scale = np.maximum(np.abs(exact.mean_of(name)), 1.0)
        assert np.all(difference <= np.maximum(errors, 1e-5 * scale)), name


# --- results and documents ------------------------------------------------------------------


def test_flip_is_the_first_p_eff_reaching_the_threshold_and_null_when_none_does():
    values = np.array([[0.1, 0.95, 0.2], [0.5, 0.99, 0.3], [0.92, 0.5, 0.4]])
    p_effs = np.array([0.25, 0.5, 0.75])
    flip = sweep_module.behaviour_flip(values, p_effs, threshold=0.9)
    assert flip[0] == 0.75 and flip[1] == 0.25 and math.isnan(flip[2])
    falling = sweep_module.behaviour_flip(values, p_effs, threshold=0.3, falling=True)
    assert falling[0] == 0.25 and math.isnan(falling[1]) and falling[2] == 0.25


def test_any_metric_can_be_mapped_without_rerunning():
    scenario = sweep_scenario(small(), labs=12, rounds=5)
    result = run_sweep(scenario, grid=(3, 3), replicates=2, metric="deterrence_rate", workers=1)
    welfare = result.with_metric("violations", threshold=2.0)
    assert welfare.metric == "violations" and welfare.threshold == 2.0
    assert np.array_equal(welfare.values, result.mean_of("violations"))
    assert np.array_equal(
        result.values, result.replicate_values[..., METRICS.index("deterrence_rate")].mean(0)
    )
    with pytest.raises(SweepError, match="unknown metric"):
        result.with_metric("happiness")


def test_labs_override_keeps_the_scarcity_of_permits():
    scenario = load_preset("targeted_audit")  # 20 labs, Q = 10
    assert sweep_scenario(scenario, labs=200).market.token_cap == 100
    assert sweep_scenario(scenario, labs=200, token_cap=7).market.token_cap == 7
    assert sweep_scenario(scenario, rounds=3).rounds == 3
    with pytest.raises(SweepError, match="at least 1"):
        sweep_scenario(scenario, labs=0)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"p_range": (0.8, 0.2)}, "P range 0.8:0.2 is inverted"),
        ({"p_eff_range": (0.5, 1.5)}, "p_eff range 0.5:1.5 must lie within [0, 1]"),
        ({"p_range": (-0.1, 0.5)}, "must lie within [0, inf)"),
        ({"p_range": (0.3, 0.3)}, "is empty but the grid asks for 3 values"),
        ({"grid": (0, 3)}, "at least 1 value of P"),
        ({"replicates": 0}, "replicates must be at least 1"),
        ({"metric": "happiness"}, "unknown metric 'happiness'"),
    ],
)
def test_run_sweep_rejects_bad_ranges_grids_and_metrics(kwargs, needle):
    arguments = {"grid": (3, 3), "replicates": 1, "workers": 1} | kwargs
    with pytest.raises(SweepError) as error:
        run_sweep(small(), **arguments)
    assert needle in str(error.value)


def test_progress_reports_every_job_once():
    seen = []
    scenario = sweep_scenario(small(), labs=12, rounds=4)
    run_sweep(scenario, grid=(3, 3), replicates=3, workers=2, progress=lambda *a: seen.append(a))
    assert seen[-1][0] == seen[-1][1] > 0
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_fork_map_keeps_the_order_and_raises_a_worker_error():
    assert fork_map(lambda x: x * x, list(range(10)), workers=3) == [x * x for x in range(10)]

    def fail_on_seven(x):
        if x == 7:
            raise ValueError("seven")
        return x

    with pytest.raises(ValueError, match="seven"):
        fork_map(fail_on_seven, list(range(10)), workers=2)


# --- the command line -----------------------------------------------------------------------


def sweep_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sim_core", "sweep", *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_csv_and_json_agree_when_written_by_the_command_line(tmp_path):
    result = sweep_cli(
        "targeted_audit",
        "--grid", "4x3",
        "--replicates", "3",
        "--rounds", "4",
        "--metric", "deterrence_rate",
        "--out", str(tmp_path),
        "--no-plot",
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress bar when standard error is not a terminal
    printed = json.loads(result.stdout)
    assert list(printed) == ["p", "p_eff", "metric", "values", "stderr", "flip", "theory"]
    assert len(printed["p"]) == 4 and len(printed["p_eff"]) == 3
    assert len(printed["values"]) == 3 and all(len(row) == 4 for row in printed["values"])
    assert len(printed["flip"]) == 4 and len(printed["theory"]) == 4
    record = json.loads((tmp_path / "sweep.json").read_text())
    assert {key: record[key] for key in printed} == printed
    assert record["replicates"] == 3 and record["scenario"]["name"] == "targeted_audit"
    rows = list(csv.DictReader(io.StringIO((tmp_path / "heatmap.csv").read_text())))
    assert len(rows) == 12
    for row in rows:
        i = printed["p_eff"].index(float(row["p_eff"]))
        j = printed["p"].index(float(row["punishment"]))
        assert row["metric"] == "deterrence_rate"
        assert float(row["mean"]) == printed["values"][i][j]
        assert float(row["stderr"]) == printed["stderr"][i][j]
        assert int(row["replicates"]) == 3
    assert not (tmp_path / "heatmap.png").exists()


def test_no_plot_never_imports_the_plotting_library(tmp_path):
    code = (
        "import sys; from sim_core.cli import main; "
        f"main(['sweep', 'targeted_audit', '--grid', '2x2', '--replicates', '1', "
        f"'--no-plot', '--out', {str(tmp_path)!r}]); "
        "print('matplotlib' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_text_output_shows_the_map_flip_and_theory():
    result = sweep_cli("targeted_audit", "--grid", "3x2", "--replicates", "2", "--rounds", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("compliance_rate")
    assert any(line.strip().startswith("flip") for line in lines)
    assert any(line.strip().startswith("theory") for line in lines)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--grid", "21"], "--grid: expected AxB"),
        (["--grid", "0x5"], "--grid: expected AxB"),
        (["--grid", "3x3x3"], "--grid: expected AxB"),
        (["--grid", "5000x2"], "--grid: at most 1001 values a side"),
        (["--p", "0.8:0.2"], "P range 0.8:0.2 is inverted"),
        (["--p", "0.2"], "--p: expected lo:hi"),
        (["--p=-1:0.5"], "P range -1:0.5 must lie within [0, inf)"),
        (["--peff", "0.5:1.5"], "p_eff range 0.5:1.5 must lie within [0, 1]"),
        (["--peff", "a:b"], "--peff: expected lo:hi"),
        (["--p", "0.4:0.4"], "P range 0.4:0.4 is empty but the grid asks for 21 values"),
        (["--peff", "nan:0.5"], "--peff: expected finite numbers"),
        (["--replicates", "0"], "--replicates: must be at least 1"),
        (["--labs", "x"], "--labs: expected a whole number"),
        (["--metric", "joy"], "--metric: invalid choice: 'joy'"),
        (["--threshold", "inf"], "--threshold: expected a finite number"),
        (["--mark", "0.5"], "--mark: expected P,p_eff"),
        (["--mark", "0.5,2"], "--mark: expected P >= 0 and p_eff in [0, 1]"),
    ],
)
def test_bad_ranges_and_grids_exit_2_with_one_line(args, needle):
    result = sweep_cli("targeted_audit", "--no-plot", *args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
