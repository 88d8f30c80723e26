"""Parameter studies (docs/studies.md; issue: studies on one machine or a cluster).

A study's point is a sweep cell or a game: it must give exactly the sweep's (or run_game's)
numbers, the same alone, in any chunk, in any process and after a resume. Its document is
validated as strictly as a scenario, naming the dotted key at fault.
"""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from sim_core import METRICS, cell_scenario, load_preset, replicate_seed, run_game, run_sweep
from sim_core.study import StudyError, parse_study, run_study
from sim_core.study.engine import chunk_tasks, run_chunk
from sim_core.sweep import sweep_scenario

pytest.importorskip("pyarrow")

BASE = {"scenario": "targeted_audit", "overrides": {"labs.count": 24, "rounds": 6}}


def study_of(tmp_path, **changes):
    document = {
        **BASE,
        "factors": [
            {"key": "P", "range": [0.2, 0.8], "count": 3},
            {"key": "p_eff", "range": [0.25, 0.75], "count": 3},
            {"key": "labs.racing_value", "values": [0.0, 0.15]},
        ],
        "replicates": 3,
        "seed": 11,
        "output": "out",
    }
    document.update(changes)
    return parse_study(document, base_dir=tmp_path)


def metric_array(result):
    table = result.table().sort_values(["point", "replicate"])
    return table[list(result.study.metrics)].to_numpy()


# --- the document ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "key", "needle"),
    [
        ({"bogus": 1}, "bogus", "is not a study key"),
        (
            {"factors": [{"key": "audit.betta", "range": [0, 1], "count": 2}]},
            "factors[0].key",
            "is not a scenario key",
        ),
        (
            {"factors": [{"key": "labs.count", "range": [0, 10], "count": 2}]},
            "factors[0]",
            "labs.count must be at least 1",
        ),
        (
            {"factors": [{"key": "audit.beta", "range": [0.9, 0.1], "count": 2}]},
            "factors[0].range",
            "lo <= hi",
        ),
        (
            {"factors": [{"key": "audit.beta", "range": [0.1, 0.9]}]},
            "factors[0].count",
            "is required",
        ),
        (
            {"factors": [{"key": "audit.alpha", "range": [0, 0.5], "count": 2}]},
            "factors[0].key",
            'use "engine": "game"',
        ),
        (
            {"factors": [{"key": "p_eff", "range": [0.2, 1.5], "count": 2}]},
            "factors[0]",
            "within [0, 1]",
        ),
        ({"design": {"type": "sobol", "samples": 100}}, "design.samples", "power of 2"),
        ({"design": {"type": "halton", "samples": 8}}, "design.type", "must be one of"),
        ({"metrics": ["compliance"]}, "metrics[0]", "not a §8 metric"),
        ({"replicates": 2.0}, "replicates", "must be an integer"),
        ({"overrides": {"audit.beta": "0.3"}}, "overrides.audit.beta", "must be a number"),
        ({"scenario": "nonexistent_preset"}, "scenario", "is neither a preset"),
    ],
)
def test_bad_study_documents_are_rejected_naming_the_dotted_key(tmp_path, change, key, needle):
    with pytest.raises(StudyError) as error:
        study_of(tmp_path, **change)
    assert error.value.key == key
    assert needle in str(error.value)


def test_a_strategy_share_factor_keeps_the_rest_of_the_mix_in_proportion(tmp_path):
    study = study_of(
        tmp_path,
        scenario={"labs": {"strategy": {"rational": 0.5, "truthful": 0.5}}},
        overrides={},
        factors=[{"key": "labs.strategy.reckless", "values": [0.0, 0.2]}],
    )
    from sim_core.study.engine import point_scenario

    mixes = [
        point_scenario(study, study.values_at(row))[0].labs.strategy for row in study.unit_points()
    ]
    assert mixes == [
        {"rational": 0.5, "truthful": 0.5},
        {"rational": 0.4, "truthful": 0.4, "reckless": 0.2},
    ]


def test_sampled_designs_are_seeded_and_sized_as_documented(tmp_path):
    factors = [
        {"key": "P", "range": [0.2, 0.8]},
        {"key": "market.token_cap", "range": [4, 12]},
        {"key": "labs.strategy", "values": ["rational", "truthful"]},
    ]
    lhs = study_of(tmp_path, factors=factors, design={"type": "lhs", "samples": 50, "seed": 3})
    sobol = study_of(tmp_path, factors=factors, design={"type": "sobol", "samples": 16, "seed": 3})
    assert lhs.unit_points().shape == (50, 3)
    assert sobol.unit_points().shape == (16 * (3 + 2), 3)  # Saltelli, first and total order
    assert np.array_equal(lhs.unit_points(), lhs.unit_points())
    other = study_of(tmp_path, factors=factors, design={"type": "lhs", "samples": 50, "seed": 4})
    assert not np.array_equal(lhs.unit_points(), other.unit_points())
    values = [lhs.values_at(row) for row in lhs.unit_points()]
    assert {v["market.token_cap"] for v in values} <= set(range(4, 13))
    assert all(isinstance(v["market.token_cap"], int) for v in values)
    assert {v["labs.strategy"] for v in values} == {"rational", "truthful"}
    # A Latin hypercube has one point in each of the 50 strata of every factor.
    strata = np.floor(lhs.unit_points() * 50).astype(int)
    assert all(sorted(strata[:, j]) == list(range(50)) for j in range(3))


# --- the numbers -----------------------------------------------------------------------------


def test_a_cell_study_gives_the_sweeps_numbers_bit_for_bit(tmp_path):
    study = study_of(
        tmp_path,
        factors=[
            {"key": "P", "range": [0.2, 0.8], "count": 4},
            {"key": "p_eff", "range": [0.25, 0.75], "count": 3},
        ],
    )
    result = run_study(study)
    scenario = sweep_scenario(load_preset("targeted_audit"), labs=24, rounds=6, token_cap=10)
    sweep = run_sweep(scenario, grid=(4, 3), replicates=3, seed=11, workers=1)
    dataset = result.dataset()
    for name in METRICS:
        # The study's grid is [P][p_eff][replicate]; the sweep's [replicate][p_eff][P].
        expected = sweep.replicate_values[..., METRICS.index(name)].transpose(2, 1, 0)
        assert np.array_equal(dataset[name].values, expected), name


def test_a_game_study_plays_every_rule_through_run_game(tmp_path):
    study = study_of(
        tmp_path,
        engine="game",
        factors=[
            {"key": "audit.alpha", "values": [0.0, 0.4]},
            {"key": "governor.policy", "values": ["policy", "optimal"]},
        ],
        replicates=2,
    )
    table = run_study(study).table()
    base = study.scenario
    from sim_core.study import apply_overrides

    for row in table.itertuples():
        scenario = apply_overrides(base, {"audit.alpha": row[4], "governor.policy": row[5]})
        game = run_game(scenario, seed=replicate_seed(11, row.replicate))
        assert [getattr(row, name) for name in METRICS] == [game.summary[n] for n in METRICS]
    # alpha raises the audits of compliant labs under the signal policy.
    means = table.groupby(["audit.alpha", "governor.policy"])["false_positive_audits"].mean()
    assert means[(0.4, "policy")] > means[(0.0, "policy")]


def test_a_float64_cell_point_equals_the_game_of_its_cell(tmp_path):
    study = study_of(tmp_path, precision="float64", replicates=2)
    table = run_study(study).table()
    for row in table[table["point"].isin([0, 7, 17])].itertuples():
        scenario = study.scenario.with_changes(
            labs=study.scenario.labs.__class__(
                **{
                    **{f: getattr(study.scenario.labs, f) for f in study.scenario.labs.__slots__},
                    "racing_value": row[6],
                }
            )
        )
        game = run_game(
            cell_scenario(scenario, punishment=row.P, p_eff=row.p_eff),
            seed=replicate_seed(11, row.replicate),
        )
        for name in METRICS:
            assert getattr(row, name) == pytest.approx(game.summary[name], rel=1e-12, abs=1e-12)


def test_a_point_gives_the_same_numbers_alone_in_any_chunk_and_in_processes(tmp_path):
    reference = metric_array(run_study(study_of(tmp_path, chunk_points=1), output=tmp_path / "a"))
    for chunk_points, workers in ((5, 1), (7, 2), (18, 1)):
        study = study_of(tmp_path, chunk_points=chunk_points)
        result = run_study(study, workers=workers, output=tmp_path / f"c{chunk_points}")
        assert np.array_equal(metric_array(result), reference)
    # Alone: point 11 of the grid (P 0.5, p_eff 0.75, racing value 0.15) in a 1-point study.
    alone = study_of(
        tmp_path,
        factors=[
            {"key": "P", "values": [0.5]},
            {"key": "p_eff", "values": [0.75]},
            {"key": "labs.racing_value", "values": [0.15]},
        ],
    )
    single = metric_array(run_study(alone, output=tmp_path / "alone"))
    assert np.array_equal(single, reference[11 * 3 : 12 * 3])


def test_resume_after_an_interrupted_run_recomputes_only_missing_chunks(tmp_path):
    study = study_of(tmp_path, chunk_points=4)
    tasks = chunk_tasks(study, study.unit_points())
    assert len(tasks) == 5

    def interrupted(task):
        if task.index == 3:
            raise KeyboardInterrupt
        return run_chunk(task)

    with pytest.raises(KeyboardInterrupt):
        run_study(study, runner=interrupted)
    written = sorted(p.name for p in (study.output / "chunks").iterdir())
    assert written == [f"chunk-{i:06d}.parquet" for i in range(3)]
    with pytest.raises(StudyError, match="--resume"):
        run_study(study)
    ran = []

    def recording(task):
        ran.append(task.index)
        return run_chunk(task)

    resumed = run_study(study, resume=True, runner=recording)
    assert ran == [3, 4] and resumed.computed == (3, 4)
    fresh = run_study(study, output=tmp_path / "fresh")
    assert resumed.table().equals(fresh.table())
    # Another study in the same directory is refused, never mixed in.
    other = study_of(tmp_path, chunk_points=4, seed=12)
    with pytest.raises(StudyError, match="another study"):
        run_study(other, resume=True)


def test_sobol_indices_rank_the_factors_that_matter(tmp_path):
    study = study_of(
        tmp_path,
        factors=[
            {"key": "P", "range": [0.0, 1.2]},
            {"key": "p_eff", "range": [0.0, 1.0]},
            {"key": "welfare.harm_per_violation", "range": [0.0, 2.0]},
        ],
        design={"type": "sobol", "samples": 64, "seed": 5},
        metrics=["compliance_rate", "welfare"],
        replicates=2,
    )
    result = run_study(study)
    indices = result.sensitivity()
    assert list(indices.columns) == ["metric", "factor", "S1", "S1_conf", "ST", "ST_conf"]
    compliance = indices[indices.metric == "compliance_rate"].set_index("factor")
    welfare = indices[indices.metric == "welfare"].set_index("factor")
    # The harm of a violation changes no lab's choice: no share of compliance's variance.
    assert compliance.loc["welfare.harm_per_violation", "ST"] == pytest.approx(0, abs=1e-9)
    assert min(compliance.loc["P", "ST"], compliance.loc["p_eff", "ST"]) > 0.1
    assert welfare.loc["welfare.harm_per_violation", "ST"] > 0.1
    assert (indices["ST_conf"] >= 0).all()
    from sim_core.study.analysis import ranked_table, write_analysis

    text = ranked_table(indices)
    assert text.splitlines()[0] == "compliance_rate"
    assert text.splitlines()[5] == "welfare"  # a metric, its header, three factors
    paths, printed = write_analysis(result)
    assert {p.name for p in paths} == {"sensitivity.csv", "sensitivity.png"}
    assert printed == text


def test_the_output_holds_a_manifest_chunks_and_the_tidy_table(tmp_path):
    result = run_study(study_of(tmp_path))
    manifest = json.loads((result.directory / "study.json").read_text())
    assert manifest["points"] == 18 and manifest["seeds"] == [
        replicate_seed(11, j) for j in range(3)
    ]
    table = result.table()
    assert len(table) == 18 * 3
    assert list(table.columns) == [
        "point",
        "replicate",
        "seed",
        "P",
        "p_eff",
        "labs.racing_value",
        *METRICS,
    ]
    assert not table[list(METRICS)].isna().any().any()


# --- the command line ------------------------------------------------------------------------


def run_cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "sim_core", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def test_study_command_writes_the_table_the_dataset_and_the_figure(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(
        json.dumps(
            {
                **BASE,
                "factors": [
                    {"key": "P", "range": [0.2, 0.8], "count": 2},
                    {"key": "p_eff", "range": [0.25, 0.75], "count": 2},
                    {"key": "market.token_cap", "values": [6, 12]},
                ],
                "replicates": 2,
            }
        )
    )
    done = run_cli("study", str(path), "--workers", "2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # no progress bar when standard error is not a terminal
    out = tmp_path / "s-study"
    assert {p.name for p in out.iterdir()} >= {
        "results.parquet",
        "study.json",
        "dataset.nc",
        "heatmaps.png",
        "chunks",
    }
    assert "8 points x 2 replicates" in done.stdout
    import xarray as xr

    with xr.open_dataset(out / "dataset.nc", engine="scipy") as dataset:
        assert dict(dataset.sizes) == {"P": 2, "p_eff": 2, "market.token_cap": 2, "replicate": 2}


def test_bad_study_exits_2_with_one_line(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({**BASE, "factors": [{"key": "audit.bta", "values": [0.1]}]}))
    done = run_cli("study", str(path), cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "factors[0].key" in done.stderr


def test_sim_core_and_its_study_module_import_without_the_cluster_extra(tmp_path):
    # Block the extra's libraries: importing works, running says what to install.
    code = (
        "import sys\n"
        "for name in ('pyarrow', 'dask', 'distributed', 'SALib', 'xarray', 'pandas', 'scipy'):\n"
        "    sys.modules[name] = None\n"
        "import sim_core, sim_core.study, sim_core.cli\n"
        "from sim_core.study import parse_study, run_study, StudyError\n"
        "study = parse_study({'scenario': 'targeted_audit', 'factors': []}, base_dir=sys.argv[1])\n"
        "try:\n    run_study(study)\n"
        "except StudyError as exc:\n    print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "studies need pyarrow: pip install permitgame[cluster]"


def test_lab_rounds_and_chunk_size_keep_about_a_second_of_work_per_chunk(tmp_path):
    from sim_core.study.engine import CHUNK_LAB_ROUNDS, chunk_size

    study = study_of(
        tmp_path,
        overrides={"labs.count": 200, "rounds": 20},
        replicates=10,
        factors=[{"key": "P", "range": [0, 1]}],
        design={"type": "lhs", "samples": 100000, "seed": 1},
    )
    size = chunk_size(study, 100000)
    assert size * 10 * 200 * 20 <= CHUNK_LAB_ROUNDS + 40000
    assert size == math.ceil(CHUNK_LAB_ROUNDS / 40000)
    # A small study is cut in 16 chunks, but a chunk is at least one block of 2^17 lab-games.
    assert chunk_size(study, 16 * 100) == 100
    assert chunk_size(study, 320) == math.ceil((1 << 17) / 2000) == 66
