"""``python -m sim_core run|theory`` (issue: the command line of the core)."""

import json
import subprocess
import sys

import pytest

from sim_core import METRICS, PRESETS
from sim_core.cli import main


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "sim_core", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("preset", PRESETS)
def test_run_json_has_every_round_and_metric_when_preset(preset, capsys):
    assert main(["run", preset, "--seed", "3", "--rounds", "4", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"] == preset and document["seed"] == 3
    assert [row["round"] for row in document["rounds"]] == [1, 2, 3, 4]
    assert set(document["rounds"][0]) == {"round", *METRICS}
    assert set(document["summary"]) == set(METRICS)
    mean_price = sum(row["price"] for row in document["rounds"]) / 4
    assert document["summary"]["price"] == pytest.approx(mean_price)


def test_run_prints_a_readable_table_and_summary(capsys):
    assert main(["run", "targeted_audit", "--rounds", "3"]) == 0
    out = capsys.readouterr().out
    assert "round" in out and "compliance" in out and "mean over rounds" in out
    assert len([line for line in out.splitlines() if line.strip()[:1].isdigit()]) == 3


def test_run_accepts_a_scenario_file(tmp_path, capsys):
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps({"rounds": 2, "labs": {"count": 4}, "market": {"token_cap": 2}}))
    assert main(["run", str(path), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["scenario"] == "tiny" and len(document["rounds"]) == 2


def test_theory_prints_the_closed_forms(capsys):
    assert main(["theory", "random_audit", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["p_s"] == pytest.approx(0.3) and document["p_eff"] == pytest.approx(0.3)
    assert document["expected_penalty"] == pytest.approx(0.15)
    assert 0 <= document["predicted_compliance"] <= 1
    assert main(["theory", "targeted_audit"]) == 0
    assert "predicted compliance" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("preset", "said"),
    [
        ("random_audit", "governor: policy, audits at the scenario's pi1 and pi0"),
        ("targeted_audit", "governor: optimal, audits at pi1* with pi0 = 0"),
        ("no_enforcement", "governor: none, no audits"),
    ],
)
def test_theory_says_which_audits_the_governor_makes(preset, said, capsys):
    assert main(["theory", preset]) == 0
    assert said in capsys.readouterr().out.splitlines()[-1]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "nope"], "'nope' is neither a preset"),
        (["run", "targeted_audit", "--rounds", "0"], "--rounds: must be at least 1"),
        (["run", "targeted_audit", "--seed", "x"], "--seed: expected a whole number"),
        (["run", "targeted_audit", "--colour"], "unrecognized arguments: --colour"),
        (["fly"], "invalid choice: 'fly'"),
        ([], "the following arguments are required"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_traceback(args, needle):
    result = run_cli(*args)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0]


def test_bad_scenario_file_names_the_key(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"audit": {"beta": 1.5}}))
    result = run_cli("run", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: audit.beta must be within [0, 1], got 1.5"


def test_deeply_nested_json_is_refused_in_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli("run", str(path))
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {path} is nested too deeply to be a scenario"


def test_a_population_too_large_for_memory_is_refused_in_one_line(tmp_path):
    path = tmp_path / "huge.json"
    path.write_text(json.dumps({"labs": {"count": 10**15}, "market": {"token_cap": 10}}))
    result = run_cli("run", str(path), "--rounds", "1")
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: not enough memory for this run")
    assert "Traceback" not in result.stderr
