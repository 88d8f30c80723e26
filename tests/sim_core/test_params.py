"""Scenario loading and validation (MODEL.md §10)."""

import json

import pytest

from sim_core import PRESETS, ScenarioError, load_preset, load_scenario, parse_scenario
from sim_core.params import scenario_to_dict


def test_empty_document_gets_every_documented_default():
    scenario = parse_scenario({})
    document = scenario_to_dict(scenario)
    assert document["labs"]["count"] == 20
    assert document["labs"]["strategy"] == "rational"
    assert document["market"] == {"type": "clearing", "token_cap": 10, "reserve_price": 0.0}
    assert document["audit"]["beta"] == 0.8 and document["audit"]["max_audits"] is None
    assert document["governor"] == {"policy": "optimal"}
    assert document["description"] == "" and document["name"] == "scenario"


def test_canonical_document_round_trips():
    for name in PRESETS:
        scenario = load_preset(name)
        assert parse_scenario(scenario_to_dict(scenario)) == scenario


def test_fixed_price_market_defaults_to_price_0_3_without_reference_cap():
    scenario = parse_scenario({"market": {"type": "fixed_price"}})
    assert scenario.market.fixed_price == 0.3
    assert scenario.market.token_cap is None


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"audit": {"beta": 1.5}}, "audit.beta must be within [0, 1], got 1.5"),
        ({"audit": {"alpha": -0.1}}, "audit.alpha must be within [0, 1]"),
        ({"audit": {"fine": "0.3"}}, "audit.fine must be a number, got str '0.3'"),
        ({"audit": {"fine": True}}, "audit.fine must be a number, got bool"),
        ({"audit": {"collateral": -1}}, "audit.collateral must be at least 0"),
        ({"audit": {"max_audits": -1}}, "audit.max_audits must be at least 0"),
        ({"audit": {"max_audits": 2.0}}, "audit.max_audits must be an integer, got float"),
        ({"audit": {"bogus": 1}}, "audit.bogus is not a scenario key"),
        ({"rounds": 20.0}, "rounds must be an integer, got float 20.0"),
        ({"rounds": 0}, "rounds must be at least 1, got 0"),
        ({"labs": {"count": 0}}, "labs.count must be at least 1"),
        ({"labs": {"gross_value": [1.0, 0.5]}}, "labs.gross_value must have lo <= hi"),
        ({"labs": {"gross_value": [-0.1, 0.5]}}, "labs.gross_value[0] must be at least 0"),
        ({"labs": {"gross_value": 0.5}}, "labs.gross_value must be a list [lo, hi]"),
        ({"labs": {"risk_profile": [0.5]}}, "labs.risk_profile must be a list [lo, hi]"),
        ({"labs": {"compute_cost": -0.1}}, "labs.compute_cost must be at least 0"),
        ({"labs": {"redraw_values_each_round": 1}}, "labs.redraw_values_each_round must be true"),
        ({"labs": {"strategy": "greedy"}}, "labs.strategy must be one of rational"),
        (
            {"labs": {"strategy": {"rational": 0.5, "reckless": 0.4}}},
            "labs.strategy shares must sum to 1",
        ),
        ({"labs": {"strategy": {"greedy": 1.0}}}, "labs.strategy.greedy is not a strategy"),
        ({"market": {"type": "auction"}}, "market.type must be one of clearing, fixed_price"),
        ({"market": {"token_cap": -1}}, "market.token_cap must be at least 0"),
        ({"market": {"fixed_price": 0.2}}, "market.fixed_price applies only when"),
        (
            {"market": {"type": "clearing", "token_cap": None}},
            "market.token_cap must be an integer",
        ),
        (
            {"market": {"type": "fixed_price", "fixed_price": 0.1, "reserve_price": 0.2}},
            "market.fixed_price must be at least market.reserve_price (0.2), got 0.1",
        ),
        (
            {"governor": {"policy": "strict"}},
            "governor.policy must be one of policy, optimal, none",
        ),
        ({"welfare": []}, "welfare must be an object"),
        ({"seed": -1}, "seed must be at least 0"),
        ({"colour": "red"}, "colour is not a scenario key"),
        ([], "a scenario must be a JSON object"),
    ],
)
def test_bad_value_is_rejected_naming_its_key(document, message):
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(document)
    assert message in str(caught.value)


def test_error_carries_the_dotted_key():
    with pytest.raises(ScenarioError) as caught:
        parse_scenario({"audit": {"beta": 2}})
    assert caught.value.key == "audit.beta"


def test_strategy_mix_drops_zero_shares():
    scenario = parse_scenario({"labs": {"strategy": {"rational": 1.0, "reckless": 0.0}}})
    assert dict(scenario.labs.strategy) == {"rational": 1.0}


def test_load_scenario_by_path_uses_the_file_stem_as_default_name(tmp_path):
    path = tmp_path / "my_class.json"
    path.write_text(json.dumps({"rounds": 3}))
    scenario = load_scenario(path)
    assert scenario.name == "my_class" and scenario.rounds == 3


def test_load_scenario_reports_invalid_json_and_missing_files(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text("{nope")
    with pytest.raises(ScenarioError, match="is not valid JSON"):
        load_scenario(broken)
    with pytest.raises(ScenarioError, match="is neither a preset"):
        load_scenario("no_such_preset")


def test_presets_ship_the_four_scenarios_of_the_model():
    assert load_preset("no_enforcement").governor.policy == "none"
    random_audit = load_preset("random_audit").audit
    assert random_audit.high_prob == random_audit.base_prob
    assert load_preset("targeted_audit").governor.policy == "optimal"
    assert load_preset("carbon_tax").market.type == "fixed_price"
