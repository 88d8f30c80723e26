"""Every preset plays, and behaves as its scenario intends (MODEL.md §10)."""

import pytest

from sim_core import PRESETS, load_preset, run_game, theory_summary


@pytest.mark.parametrize("name", PRESETS)
def test_preset_plays_ten_rounds_from_seed_42(name):
    game = run_game(load_preset(name), seed=42)
    assert [row.round for row in game.rows] == list(range(1, 11))
    assert 0.0 <= game.summary["compliance_rate"] <= 1.0


def test_no_enforcement_means_nobody_buys_a_permit_and_everybody_runs():
    # A permit is worth no more than the penalty it avoids (§5): with no enforcement, nothing.
    game = run_game(load_preset("no_enforcement"), seed=42)
    assert game.summary["permits"] == 0
    assert game.summary["caught"] == 0


def test_enforcement_raises_compliance_over_no_enforcement():
    baseline = run_game(load_preset("no_enforcement"), seed=42, rounds=40).summary
    for name in ("random_audit", "targeted_audit", "carbon_tax"):
        assert (
            run_game(load_preset(name), seed=42, rounds=40).summary["compliance_rate"]
            > baseline["compliance_rate"] + 0.2
        )


@pytest.mark.parametrize("name", PRESETS)
def test_theory_prediction_is_near_long_run_compliance(name):
    predicted = theory_summary(load_preset(name)).predicted_compliance
    observed = run_game(load_preset(name), seed=1, rounds=200).summary["compliance_rate"]
    assert abs(predicted - observed) < 0.15
