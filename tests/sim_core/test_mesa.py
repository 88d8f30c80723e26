"""The Mesa adapter: a mesa.Model whose step() is one resolve_round, and Mesa's batch_run.

It must give exactly run_game's numbers with the same seed: it plays the same rounds through the
same resolver, with no rule of its own.
"""

import pytest

from sim_core import METRICS, load_preset, run_game
from sim_core.study import apply_overrides

mesa = pytest.importorskip("mesa")
from sim_core.mesa_model import GovernorAgent, LabAgent, PermitModel  # noqa: E402


def run_model(model):
    while model.running:
        model.step()
    return model


@pytest.mark.parametrize("preset", ["targeted_audit", "random_audit", "carbon_tax"])
def test_model_gives_the_numbers_of_run_game_with_the_same_seed(preset):
    model = run_model(PermitModel(preset, seed=123, rounds=6))
    game = run_game(load_preset(preset), seed=123, rounds=6)
    frame = model.datacollector.get_model_vars_dataframe()
    assert len(frame) == 6 == model.steps
    for round_index, row in enumerate(game.rows):
        for name in METRICS:
            assert frame[name].iloc[round_index] == getattr(row, name), (round_index, name)
    # The agents are the game's labs and governor, holding what the last round did to them.
    labs = list(model.agents_by_type[LabAgent])
    assert len(labs) == load_preset(preset).labs.count
    assert len(model.agents_by_type[GovernorAgent]) == 1
    assert sum(agent.won for agent in labs) == game.rows[-1].permits
    assert sum(agent.ran for agent in labs) == game.rows[-1].violations
    wealth = model.datacollector.get_agenttype_vars_dataframe(LabAgent)
    assert len(wealth) == 6 * len(labs)


def test_batch_run_sweeps_seeds_and_dotted_scenario_keys():
    rows = mesa.batch_run(
        PermitModel,
        {"scenario": "targeted_audit", "seed": [1, 2], "audit.fine": [0.1, 0.6], "rounds": 4},
        max_steps=50,
        number_processes=1,
        display_progress=False,
    )
    base = load_preset("targeted_audit")
    # One row per run: the last round's metrics (Mesa numbers the collected rows from 0).
    assert sorted((row["seed"], row["audit.fine"]) for row in rows) == [
        (1, 0.1),
        (1, 0.6),
        (2, 0.1),
        (2, 0.6),
    ]
    for row in rows:
        assert row["Step"] == 3
        game = run_game(
            apply_overrides(base, {"audit.fine": row["audit.fine"]}), seed=row["seed"], rounds=4
        )
        for name in METRICS:
            assert row[name] == getattr(game.rows[-1], name), name
    assert len({row["price"] for row in rows}) == 4  # the fine and the seed both matter


def test_bad_dotted_key_is_rejected_naming_it():
    from sim_core import ScenarioError

    with pytest.raises(ScenarioError, match=r"audit\.beta must be within \[0, 1\]"):
        PermitModel("targeted_audit", **{"audit.beta": 2.0})
