"""Scenario parameters (MODEL.md §10): frozen dataclasses and the one parser that builds them.

Here: ``LabParams``, ``MarketParams``, ``AuditParams``, ``GovernorParams``, ``WelfareParams``,
``Scenario``; ``parse_scenario`` (validate a JSON document, fill documented defaults) and
``scenario_to_dict`` (the complete, canonical document back). Not here: reading files or presets
(``presets.py``) and any rule of the game.

Validation is strict on purpose: no coercion (``"0.3"`` is not a number, ``20.0`` is not an
integer, ``1`` is not a boolean) and every message names the dotted key at fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sim_core.errors import ScenarioError

MarketType = Literal["clearing", "fixed_price"]
Policy = Literal["policy", "optimal", "none"]
Allocation = Literal["auction", "grandfathered"]
Grant = Literal["incumbents", "lottery"]

MARKET_TYPES: tuple[MarketType, ...] = ("clearing", "fixed_price")
POLICIES: tuple[Policy, ...] = ("policy", "optimal", "none")
#: How a round's permits reach the labs (§3b): sold at auction, or granted free and then traded.
ALLOCATIONS: tuple[Allocation, ...] = ("auction", "grandfathered")
#: Who is granted the permits under ``grandfathered`` (§3b).
GRANTS: tuple[Grant, ...] = ("incumbents", "lottery")
#: Lab strategy names (MODEL.md §5), in the order of their integer codes.
STRATEGY_NAMES: tuple[str, ...] = (
    "rational",
    "truthful",
    "compliant",
    "reckless",
    "adaptive",
    "random",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class LabParams:
    """The ``labs`` section: the population of labs (MODEL.md §1, §5)."""

    count: int = 20
    gross_value: tuple[float, float] = (0.1, 1.0)
    risk_profile: tuple[float, float] = (0.8, 1.2)
    compute_cost: float = 0.1
    racing_value: float = 0.0
    endowment: float = 10.0
    redraw_values_each_round: bool = True
    #: strategy name -> share of the labs; the shares sum to 1.
    strategy: Mapping[str, float] = field(default_factory=lambda: {"rational": 1.0})


@dataclass(frozen=True, slots=True, kw_only=True)
class MarketParams:
    """The ``market`` section (MODEL.md §3).

    ``token_cap`` is Q for a clearing market; for a fixed-price market it is only the reference
    cap of ``cap_overshoot`` and may be None. ``allocation`` and ``grant`` choose §3b: under
    ``grandfathered`` the Q permits are granted free (to ``incumbents`` drawn once per game, or by
    ``lottery`` each round) and traded in a call market.
    """

    type: MarketType = "clearing"
    token_cap: int | None = 10
    reserve_price: float = 0.0
    fixed_price: float = 0.3
    allocation: Allocation = "auction"
    grant: Grant = "incumbents"

    @property
    def grandfathered(self) -> bool:
        """Whether permits are granted free and traded (§3b) rather than auctioned."""
        return self.allocation == "grandfathered"


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditParams:
    """The ``audit`` section: signals, audits and penalties (MODEL.md §2)."""

    alpha: float = 0.1
    beta: float = 0.8
    high_prob: float = 0.6
    base_prob: float = 0.05
    backcheck_prob: float = 0.0
    collateral: float = 0.2
    fine: float = 0.3
    reputation_penalty: float = 0.0
    audit_cost: float = 0.01
    max_audits: int | None = None

    @property
    def punishment(self) -> float:
        """P = K + φ + R (MODEL.md §2)."""
        return self.collateral + self.fine + self.reputation_penalty


@dataclass(frozen=True, slots=True, kw_only=True)
class GovernorParams:
    """The ``governor`` section: the bot governor's audit policy (MODEL.md §6)."""

    policy: Policy = "optimal"


@dataclass(frozen=True, slots=True, kw_only=True)
class WelfareParams:
    """The ``welfare`` section (MODEL.md §8)."""

    harm_per_violation: float = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A whole scenario: everything a game or a simulation needs besides the human moves."""

    name: str = "scenario"
    description: str = ""
    seed: int = 7
    rounds: int = 10
    labs: LabParams = field(default_factory=LabParams)
    market: MarketParams = field(default_factory=MarketParams)
    audit: AuditParams = field(default_factory=AuditParams)
    governor: GovernorParams = field(default_factory=GovernorParams)
    welfare: WelfareParams = field(default_factory=WelfareParams)

    def with_changes(self, **changes: Any) -> Scenario:
        """Return a copy with top-level fields replaced (sections are replaced whole)."""
        return replace(self, **changes)


# --- validation -----------------------------------------------------------------------------

Check = Callable[[str, Any], Any]


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ScenarioError(key, f"must be a number, got {_type_name(value)} {value!r}")
    if not math.isfinite(value):
        raise ScenarioError(key, f"must be a finite number, got {value!r}")
    return float(value)


def _nonneg(key: str, value: Any) -> float:
    number = _number(key, value)
    if number < 0:
        raise ScenarioError(key, f"must be at least 0, got {value!r}")
    return number


def _probability(key: str, value: Any) -> float:
    number = _number(key, value)
    if not 0.0 <= number <= 1.0:
        raise ScenarioError(key, f"must be within [0, 1], got {value!r}")
    return number


def _integer(minimum: int) -> Check:
    def check(key: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ScenarioError(key, f"must be an integer, got {_type_name(value)} {value!r}")
        if value < minimum:
            raise ScenarioError(key, f"must be at least {minimum}, got {value!r}")
        return value

    return check


def _optional(check: Check) -> Check:
    def optional(key: str, value: Any) -> Any:
        return None if value is None else check(key, value)

    return optional


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ScenarioError(key, f"must be true or false, got {_type_name(value)} {value!r}")
    return value


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ScenarioError(key, f"must be a string, got {_type_name(value)} {value!r}")
    return value


def _interval(key: str, value: Any) -> tuple[float, float]:
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ScenarioError(key, f"must be a list [lo, hi] of two numbers, got {value!r}")
    lo, hi = (_nonneg(f"{key}[{index}]", item) for index, item in enumerate(value))
    if lo > hi:
        raise ScenarioError(key, f"must have lo <= hi, got [{lo}, {hi}]")
    return (lo, hi)


def _choice(options: tuple[str, ...]) -> Check:
    def check(key: str, value: Any) -> str:
        if value not in options:
            raise ScenarioError(key, f"must be one of {', '.join(options)}; got {value!r}")
        return str(value)

    return check


def _strategy(key: str, value: Any) -> dict[str, float]:
    if isinstance(value, str):
        _choice(STRATEGY_NAMES)(key, value)
        return {value: 1.0}
    if not isinstance(value, Mapping) or not value:
        raise ScenarioError(
            key, f'must be a strategy name or a mix such as {{"rational": 0.7, ...}}, got {value!r}'
        )
    mix: dict[str, float] = {}
    for name, share in value.items():
        if name not in STRATEGY_NAMES:
            raise ScenarioError(
                f"{key}.{name}", f"is not a strategy; choose from {', '.join(STRATEGY_NAMES)}"
            )
        mix[name] = _probability(f"{key}.{name}", share)
    if abs(sum(mix.values()) - 1.0) > 1e-9:
        raise ScenarioError(key, f"shares must sum to 1, got {sum(mix.values()):g}")
    return {name: share for name, share in mix.items() if share > 0}


_SECTIONS: dict[str, tuple[type[Any], dict[str, Check]]] = {
    "labs": (
        LabParams,
        {
            "count": _integer(1),
            "gross_value": _interval,
            "risk_profile": _interval,
            "compute_cost": _nonneg,
            "racing_value": _nonneg,
            "endowment": _nonneg,
            "redraw_values_each_round": _boolean,
            "strategy": _strategy,
        },
    ),
    "market": (
        MarketParams,
        {
            "type": _choice(MARKET_TYPES),
            "token_cap": _optional(_integer(0)),
            "reserve_price": _nonneg,
            "fixed_price": _nonneg,
            "allocation": _choice(ALLOCATIONS),
            "grant": _choice(GRANTS),
        },
    ),
    "audit": (
        AuditParams,
        {
            "alpha": _probability,
            "beta": _probability,
            "high_prob": _probability,
            "base_prob": _probability,
            "backcheck_prob": _probability,
            "collateral": _nonneg,
            "fine": _nonneg,
            "reputation_penalty": _nonneg,
            "audit_cost": _nonneg,
            "max_audits": _optional(_integer(0)),
        },
    ),
    "governor": (GovernorParams, {"policy": _choice(POLICIES)}),
    "welfare": (WelfareParams, {"harm_per_violation": _nonneg}),
}

_TOP_LEVEL: dict[str, Check] = {
    "name": _string,
    "description": _string,
    "seed": _integer(0),
    "rounds": _integer(1),
}


def _unknown(key_prefix: str, data: Mapping[str, Any], known: Mapping[str, Any]) -> None:
    for key in data:
        if key not in known:
            where = f"{key_prefix}{key}"
            raise ScenarioError(where, f"is not a scenario key; known here: {', '.join(known)}")


def _section(name: str, data: Any) -> Any:
    cls, checks = _SECTIONS[name]
    if not isinstance(data, Mapping):
        raise ScenarioError(name, f"must be an object, got {_type_name(data)}")
    _unknown(f"{name}.", data, checks)
    values = {key: checks[key](f"{name}.{key}", value) for key, value in data.items()}
    return cls(**values)


def parse_scenario(data: Any, *, default_name: str = "scenario") -> Scenario:
    """Validate a scenario document and fill every missing key with its default (MODEL.md §10).

    Args:
        data: the parsed JSON object.
        default_name: the name to use when the document has none (a file's stem).

    Returns:
        The frozen scenario.

    Raises:
        ScenarioError: an unknown key, a wrong type or an out-of-range value, naming the dotted key.
    """
    if not isinstance(data, Mapping):
        raise ScenarioError("", f"a scenario must be a JSON object, got {_type_name(data)}")
    _unknown("", data, {**_TOP_LEVEL, **_SECTIONS})
    top = {key: _TOP_LEVEL[key](key, value) for key, value in data.items() if key in _TOP_LEVEL}
    sections = {key: _section(key, value) for key, value in data.items() if key in _SECTIONS}
    top.setdefault("name", default_name)
    scenario = Scenario(**top, **sections)
    market = scenario.market
    given_market = data.get("market", {})
    if market.grandfathered:
        # §3b: granted permits are traded in a call market; the government sells nothing.
        if market.type != "clearing":
            raise ScenarioError(
                "market.allocation", '"grandfathered" needs market.type "clearing" (a cap Q)'
            )
        if market.reserve_price != 0:
            raise ScenarioError(
                "market.reserve_price",
                'must be 0 when market.allocation is "grandfathered", '
                f"got {market.reserve_price:g}",
            )
    elif "grant" in given_market:
        # Decision (MODEL.md is silent): a grant without grandfathering would be ignored silently.
        raise ScenarioError(
            "market.grant", 'applies only when market.allocation is "grandfathered"'
        )
    if market.type == "clearing":
        if "fixed_price" in given_market:
            raise ScenarioError(
                "market.fixed_price", 'applies only when market.type is "fixed_price"'
            )
        if market.token_cap is None:
            raise ScenarioError("market.token_cap", "must be an integer for a clearing market")
    else:
        if market.fixed_price < market.reserve_price:
            # Decision (MODEL.md is silent): a fixed price below the reserve would sell below it.
            raise ScenarioError(
                "market.fixed_price",
                f"must be at least market.reserve_price ({market.reserve_price:g}), "
                f"got {market.fixed_price:g}",
            )
        if "token_cap" not in given_market:
            scenario = replace(scenario, market=replace(market, token_cap=None))
    return scenario


def scenario_to_dict(scenario: Scenario) -> dict[str, Any]:
    """Return the complete scenario document: every key, in the canonical order of MODEL.md §10."""
    labs = scenario.labs
    market = scenario.market
    market_doc: dict[str, Any] = {"type": market.type}
    if market.type == "clearing":
        market_doc |= {"token_cap": market.token_cap, "reserve_price": market.reserve_price}
    else:
        market_doc |= {"fixed_price": market.fixed_price, "reserve_price": market.reserve_price}
        if market.token_cap is not None:
            market_doc["token_cap"] = market.token_cap
    if market.grandfathered:  # auction documents stay as they were before §3b
        market_doc |= {"allocation": market.allocation, "grant": market.grant}
    strategy: str | dict[str, float] = dict(labs.strategy)
    if len(labs.strategy) == 1:
        strategy = next(iter(labs.strategy))
    audit = scenario.audit
    return {
        "name": scenario.name,
        "description": scenario.description,
        "seed": scenario.seed,
        "rounds": scenario.rounds,
        "labs": {
            "count": labs.count,
            "gross_value": list(labs.gross_value),
            "risk_profile": list(labs.risk_profile),
            "compute_cost": labs.compute_cost,
            "racing_value": labs.racing_value,
            "endowment": labs.endowment,
            "redraw_values_each_round": labs.redraw_values_each_round,
            "strategy": strategy,
        },
        "market": market_doc,
        "audit": {key: getattr(audit, key) for key in _SECTIONS["audit"][1]},
        "governor": {"policy": scenario.governor.policy},
        "welfare": {"harm_per_violation": scenario.welfare.harm_per_violation},
    }
