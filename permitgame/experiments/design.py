"""The experiment design document: validated strictly, every error naming the dotted key.

The same style as sim_core's scenarios (``sim_core/params.py``): no coercion (``"3"`` is not a
number, ``1`` is not a boolean), an unknown key is an error that lists the known ones, and every
missing key takes the default documented in docs/experiments.md. ``parse_design`` returns the
complete design document (every key filled), which is what an experiment stores and exports.
Each treatment's scenario is resolved (preset, path or inline, then ``overrides`` merged) and
validated by sim_core itself; its errors come back under the treatment's key.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Mapping
from typing import Any

from sim_core import (
    POLICIES,
    STRATEGY_NAMES,
    ScenarioError,
    load_scenario,
    parse_scenario,
    scenario_to_dict,
)

PHASES = ("bidding", "compliance", "audit", "results")
DISCLOSURES = ("hidden", "revealed", "revealed_at_end")
METHODS = ("complete", "blocked")
NAME_MAX = 40


class DesignError(ValueError):
    """A design value is missing, unknown, of the wrong type or out of range."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


Check = Callable[[str, Any], Any]


def _type(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _int(low: int, high: int | None = None, *, null: bool = False) -> Check:
    def check(key: str, value: Any) -> Any:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise DesignError(key, f"must be an integer, got {_type(value)}")
        if value < low or (high is not None and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise DesignError(key, f"must be {bound}, got {value}")
        return value

    return check


def _number(low: float = 0.0, *, null: bool = False) -> Check:
    def check(key: str, value: Any) -> Any:
        if value is None and null:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise DesignError(key, f"must be a number, got {_type(value)}")
        if value != value or value < low:
            raise DesignError(key, f"must be at least {low:g}, got {value!r}")
        return float(value)

    return check


def _text(limit: int = 20000, *, null: bool = False) -> Check:
    def check(key: str, value: Any) -> Any:
        if value is None and null:
            return None
        if not isinstance(value, str):
            raise DesignError(key, f"must be a string, got {_type(value)}")
        if len(value) > limit:
            raise DesignError(key, f"must have at most {limit} characters")
        return value

    return check


def _choice(options: tuple[str, ...]) -> Check:
    def check(key: str, value: Any) -> Any:
        if value not in options:
            raise DesignError(key, f"must be one of {', '.join(options)}; got {value!r}")
        return value

    return check


def _bool(key: str, value: Any) -> Any:
    if not isinstance(value, bool):
        raise DesignError(key, f"must be true or false, got {_type(value)}")
    return value


def _url(key: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
        raise DesignError(key, "must be null or an http(s) URL")
    return value


def _labels(key: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise DesignError(key, "must be null or a non-empty list of labels")
    seen = set()
    for index, label in enumerate(value):
        _label(f"{key}[{index}]", label)
        if label in seen:
            raise DesignError(f"{key}[{index}]", f"repeats the label {label!r}")
        seen.add(label)
    return list(value)


def _label(key: str, value: Any) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 64 or not value.isprintable():
        raise DesignError(key, "must be a label of 1 to 64 printable characters")
    return value


def _object(key: str, value: Any, spec: Mapping[str, tuple[Check, Any]]) -> dict[str, Any]:
    """Check an object against ``spec`` (key -> (check, default)); return it complete."""
    if not isinstance(value, Mapping):
        raise DesignError(key, f"must be an object, got {_type(value)}")
    prefix = f"{key}." if key else ""
    for name in value:
        if name not in spec:
            raise DesignError(
                f"{prefix}{name}", f"is not a design key; known here: {', '.join(spec)}"
            )
    return {
        name: check(f"{prefix}{name}", value[name]) if name in value else copy.deepcopy(default)
        for name, (check, default) in spec.items()
    }


def _durations(key: str, value: Any) -> Any:
    spec = {
        phase: (_int(0, null=True), default)
        for phase, default in zip(PHASES, (60, 45, 60, 15), strict=True)
    }
    return _object(key, value, spec)


def _strategies(key: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise DesignError(key, "must be null or an object of strategy shares")
    for name, share in value.items():
        if name not in STRATEGY_NAMES:
            raise DesignError(
                f"{key}.{name}", f"is not a strategy; known: {', '.join(STRATEGY_NAMES)}"
            )
        _number()(f"{key}.{name}", share)
    return dict(value)


_SEATS = {
    "labs": (_int(1, 200, null=True), None),
    "human_labs": (_int(0, 200), 1),
    "governor": (_choice(("bot", "human")), "bot"),
    "governor_policy": (_choice(POLICIES), None),
    "bot_strategies": (_strategies, None),
}


def _seats(key: str, value: Any) -> Any:
    spec = dict(_SEATS)
    spec["governor_policy"] = (lambda k, v: None if v is None else _choice(POLICIES)(k, v), None)
    return _object(key, value, spec)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for name, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(name), Mapping):
            merged[name] = _merge(dict(merged[name]), value)
        else:
            merged[name] = value
    return merged


def _treatment(key: str, value: Any) -> dict[str, Any]:
    spec: dict[str, tuple[Check, Any]] = {
        "scenario": (lambda k, v: v, "targeted_audit"),
        "overrides": (lambda k, v: v, {}),
        "seats": (_seats, {}),
        "durations": (_durations, {}),
        "rooms": (_int(1, 1000, null=True), None),
        "room_size": (_int(1, 201, null=True), None),
        "title": (_text(100), ""),
        "coaching": (_choice(("full", "numbers", "none")), "full"),
        "ask_belief": (_bool, False),
    }
    treatment = _object(key, value, spec)
    treatment["seats"] = _seats(f"{key}.seats", treatment["seats"])
    treatment["durations"] = _durations(f"{key}.durations", treatment["durations"])
    treatment["scenario"] = _scenario(key, treatment)
    seats = treatment["seats"]
    humans_key = _room_size(key, treatment, given=value)
    count = treatment["scenario"]["labs"]["count"]
    if seats["human_labs"] > count:
        if humans_key.endswith(".room_size"):
            most = count + (seats["governor"] == "human")
            raise DesignError(
                humans_key, f"must be at most the labs plus a human governor ({most})"
            )
        raise DesignError(humans_key, f"must be at most the number of labs ({count})")
    if seats["human_labs"] == 0 and seats["governor"] == "bot":
        raise DesignError(f"{key}.seats", "a room needs at least one human seat")
    treatment["room_size"] = room_size(treatment)
    return treatment


def _room_size(key: str, treatment: dict[str, Any], *, given: Mapping[str, Any]) -> str:
    """Reconcile ``room_size`` with ``seats.human_labs``; return the key that set the labs.

    ``room_size`` is the participants of one room: the human labs, plus one with a human
    governor. Given alone it sets ``seats.human_labs``; given with it, the two must agree.
    """
    seats = treatment["seats"]
    size = treatment["room_size"]
    governor = 1 if seats["governor"] == "human" else 0
    if size is None:
        return f"{key}.seats.human_labs"
    if "human_labs" in given.get("seats", {}):
        if seats["human_labs"] + governor != size:
            raise DesignError(
                f"{key}.room_size",
                f"must equal seats.human_labs{' + 1 (the human governor)' if governor else ''}"
                f" = {seats['human_labs'] + governor}, got {size}; give one or the other",
            )
        return f"{key}.seats.human_labs"
    seats["human_labs"] = size - governor
    return f"{key}.room_size"


def _scenario(key: str, treatment: Mapping[str, Any]) -> dict[str, Any]:
    """Resolve a treatment's scenario (preset, path or inline) with its overrides and seats."""
    source = treatment["scenario"]
    try:
        if isinstance(source, str):
            document = scenario_to_dict(load_scenario(source))
        elif isinstance(source, Mapping):
            document = scenario_to_dict(parse_scenario(source))
        else:
            raise DesignError(f"{key}.scenario", "must be a preset name, a file path or an object")
    except ScenarioError as error:
        raise DesignError(f"{key}.scenario", str(error)) from None
    overrides = treatment["overrides"]
    if not isinstance(overrides, Mapping):
        raise DesignError(f"{key}.overrides", f"must be an object, got {_type(overrides)}")
    document = _merge(document, overrides)
    seats = treatment["seats"]
    if seats["labs"] is not None:
        document["labs"] = {**document["labs"], "count": seats["labs"]}
    if seats["bot_strategies"] is not None:
        document["labs"] = {**document["labs"], "strategy": seats["bot_strategies"]}
    if seats["governor_policy"] is not None:
        document["governor"] = {**document["governor"], "policy": seats["governor_policy"]}
    try:
        return scenario_to_dict(parse_scenario(document))
    except ScenarioError as error:
        where = "overrides" if overrides else "scenario"
        raise DesignError(f"{key}.{where}", str(error)) from None


def _treatments(key: str, value: Any) -> Any:
    if not isinstance(value, Mapping) or not value:
        raise DesignError(key, "must be an object with at least one treatment")
    out = {}
    for name, treatment in value.items():
        if not isinstance(name, str) or not name or len(name) > NAME_MAX or not name.isidentifier():
            raise DesignError(
                f"{key}.{name}", "a treatment name is a short identifier (a-z, 0-9, _)"
            )
        out[name] = _treatment(f"{key}.{name}", treatment)
    return out


_TOP: dict[str, tuple[Check, Any]] = {
    "name": (_text(100), "experiment"),
    "description": (_text(2000), ""),
    "seed": (_int(0, 2**63 - 1), 1),
    "treatments": (_treatments, None),
    "assignment": (
        lambda k, v: _object(
            k,
            v,
            {
                "method": (_choice(METHODS), "complete"),
                "block_size": (_int(1, 100), 1),
                "participants": (_int(1, 100000, null=True), None),
            },
        ),
        {},
    ),
    "rooms": (_choice(("fixed", "open")), "fixed"),
    "lobby_timeout": (_int(0, 86400, null=True), 120),
    "bot_disclosure": (_choice(DISCLOSURES), "revealed_at_end"),
    "payment": (
        lambda k, v: _object(
            k,
            v,
            {
                "currency": (_text(8), "EUR"),
                "show_up_fee": (_number(), 0.0),
                "per_point": (_number(), 0.0),
                "cap": (_number(null=True), None),
            },
        ),
        {},
    ),
    "participants": (
        lambda k, v: _object(
            k,
            v,
            {
                "roster": (_labels, None),
                "require_label": (_bool, False),
            },
        ),
        {},
    ),
    "texts": (
        lambda k, v: _object(
            k,
            v,
            {
                "welcome": (
                    _text(),
                    "Welcome. This study is a game about a market for compute permits.",
                ),
                "consent": (
                    _text(),
                    "I agree to take part; my moves are recorded without my name.",
                ),
                "instructions": (_text(), ""),
            },
        ),
        {},
    ),
    "quiz": (
        lambda k, v: _object(
            k,
            v,
            {
                "enabled": (_bool, True),
                "max_attempts": (_int(1, 20), 3),
            },
        ),
        {},
    ),
    "completion": (
        lambda k, v: _object(
            k,
            v,
            {
                "redirect_url": (_url, None),
            },
        ),
        {},
    ),
}


def parse_design(data: Any) -> dict[str, Any]:
    """Validate a design document and return it complete (every key, defaults filled).

    Raises:
        DesignError: an unknown key, a wrong type or an out-of-range value, naming the dotted key.
    """
    if not isinstance(data, Mapping):
        raise DesignError("", f"a design must be a JSON object, got {_type(data)}")
    if "treatments" not in data:
        raise DesignError("treatments", "is required: at least one treatment")
    design = _object("", data, _TOP)
    for section in ("assignment", "payment", "participants", "texts", "quiz", "completion"):
        design[section] = _TOP[section][0](section, design[section])
    if design["rooms"] == "fixed":
        for name, treatment in design["treatments"].items():
            if treatment["rooms"] is None:
                treatment["rooms"] = 1
            _ = name
    else:
        for name, treatment in design["treatments"].items():
            if treatment["rooms"] is not None:
                raise DesignError(f"treatments.{name}.rooms", 'must be null when rooms is "open"')
    if (
        design["assignment"]["method"] == "complete"
        and design["assignment"]["participants"] is None
    ):
        if design["rooms"] == "open":
            raise DesignError(
                "assignment.participants",
                'is required for complete assignment when rooms is "open"',
            )
        design["assignment"]["participants"] = sum(
            t["rooms"] * room_size(t) for t in design["treatments"].values()
        )
    return design


def parse_design_text(text: str) -> dict[str, Any]:
    """Parse JSON text and validate it as a design.

    Raises:
        DesignError: invalid JSON (with its line and column) or an invalid design.
    """
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise DesignError(
            "", f"not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from None
    return parse_design(data)


def room_size(treatment: Mapping[str, Any]) -> int:
    """The human seats of one room of ``treatment``: its human labs, plus a human governor."""
    seats = treatment["seats"]
    return int(seats["human_labs"]) + (1 if seats["governor"] == "human" else 0)
