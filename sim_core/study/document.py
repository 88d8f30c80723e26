"""The study document (docs/studies.md): its strict parser, its factors and its design's points.

Here: ``Factor``, ``Design``, ``Study``, ``parse_study`` and ``load_study`` (validate a JSON
document, naming the dotted key at fault, as ``params.parse_scenario`` does for scenarios),
``apply_overrides`` (a scenario with dotted keys replaced, re-validated by the one scenario parser)
and ``Study.points`` (the design's points as a unit sample and as factor values). Not here:
playing the points (``engine.py``) or analysing them (``analysis.py``).

Nothing here imports more than numpy: scipy (Latin hypercube) and SALib (Sobol samples) are
imported when a sampled design is built, with a one-line error naming the extra when missing.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.errors import ScenarioError, SimCoreError
from sim_core.metrics import METRICS
from sim_core.params import _SECTIONS, _TOP_LEVEL, STRATEGY_NAMES, Scenario, scenario_to_dict
from sim_core.params import parse_scenario as _parse_scenario
from sim_core.presets import PRESETS, load_preset, load_scenario

DesignType = Literal["grid", "sobol", "lhs"]
Engine = Literal["cell", "game"]
DESIGNS: tuple[DesignType, ...] = ("grid", "sobol", "lhs")
ENGINES: tuple[Engine, ...] = ("cell", "game")
#: The heatmap's two cell parameters (MODEL.md §9): factors of every study besides scenario keys.
CELL_FACTORS: tuple[str, ...] = ("P", "p_eff")
#: Scenario keys a cell (§9) bypasses: a factor on one of them needs engine "game".
CELL_BYPASSED: frozenset[str] = frozenset(
    {"audit.alpha", "audit.audit_cost", "audit.max_audits", "governor.policy", "seed"}
)
#: Scenario keys that are integers (sampled values are whole numbers, lo to hi inclusive).
INTEGER_KEYS: frozenset[str] = frozenset(
    {"rounds", "labs.count", "market.token_cap", "audit.max_audits"}
)
#: The one-line advice when an optional library is missing.
CLUSTER_HINT = "pip install permitgame[cluster]"

_STUDY_KEYS = (
    "name",
    "description",
    "scenario",
    "overrides",
    "factors",
    "design",
    "replicates",
    "seed",
    "metrics",
    "precision",
    "engine",
    "chunk_points",
    "output",
)
_FACTOR_KEYS = ("key", "range", "count", "values")
_DESIGN_KEYS = ("type", "samples", "seed")


class StudyError(SimCoreError, ValueError):
    """A study document that cannot be run: the message starts with the dotted key at fault."""

    def __init__(self, key: str, message: str) -> None:
        """Build the message ``'<key> <message>'``."""
        self.key = key
        super().__init__(f"{key} {message}" if key else message)


def require(module: str) -> Any:
    """Import an optional library of the ``cluster`` extra, or fail with a one-line hint."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise StudyError("", f"studies need {top}: {CLUSTER_HINT}") from None


# --- scenario keys ---------------------------------------------------------------------------


def scenario_keys() -> tuple[str, ...]:
    """Return every dotted scenario key a factor or an override may name (besides P, p_eff)."""
    keys = [key for key in _TOP_LEVEL if key not in ("name", "description")]
    for section, (_, checks) in _SECTIONS.items():
        keys += [f"{section}.{key}" for key in checks]
    keys += [f"labs.strategy.{name}" for name in STRATEGY_NAMES]
    return tuple(keys)


def _check_key(where: str, key: Any) -> str:
    if not isinstance(key, str):
        raise StudyError(where, f"must be a dotted scenario key (a string), got {key!r}")
    if key not in CELL_FACTORS and key not in scenario_keys():
        raise StudyError(
            where,
            f"{key!r} is not a scenario key; use P, p_eff or a dotted key such as audit.beta, "
            "labs.racing_value, market.token_cap, labs.strategy.reckless (docs/studies.md)",
        )
    return key


def _with_share(mix: Mapping[str, float], name: str, share: float) -> dict[str, float]:
    """Return ``mix`` with strategy ``name`` at ``share``, the others scaled to fill the rest."""
    others = {key: value for key, value in mix.items() if key != name}
    total = sum(others.values())
    if not others or total <= 0:
        others, total = {"rational": 1.0}, 1.0
        if name == "rational":
            others, total = {"truthful": 1.0}, 1.0
    result = {key: value * (1.0 - share) / total for key, value in others.items()}
    result[name] = share
    return {key: value for key, value in result.items() if value > 0}


def apply_overrides(scenario: Scenario, overrides: Mapping[str, Any]) -> Scenario:
    """Return ``scenario`` with dotted keys replaced, validated by the scenario parser (§10).

    ``labs.strategy.NAME`` sets that strategy's share; the other strategies of the mix keep their
    proportions and fill the rest (a single-strategy mix: the rest stays with that strategy).

    Raises:
        ScenarioError: an unknown key or a value the scenario parser rejects (naming the key).
    """
    document = scenario_to_dict(scenario)
    for key, value in overrides.items():
        parts = key.split(".")
        if key.startswith("labs.strategy.") and len(parts) == 3:
            mix = document["labs"]["strategy"]
            mix = {mix: 1.0} if isinstance(mix, str) else dict(mix)
            if parts[2] not in STRATEGY_NAMES:
                raise ScenarioError(key, "is not a strategy share")
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ScenarioError(key, f"must be a number, got {value!r}")
            if not 0.0 <= value <= 1.0:
                raise ScenarioError(key, f"must be within [0, 1], got {value!r}")
            document["labs"]["strategy"] = _with_share(mix, parts[2], float(value))
        elif len(parts) == 1 and key in _TOP_LEVEL:
            document[key] = value
        elif len(parts) == 2 and parts[0] in _SECTIONS and parts[1] in _SECTIONS[parts[0]][1]:
            document[parts[0]][parts[1]] = value
            if key == "market.type" and value == "fixed_price":
                document["market"].setdefault("fixed_price", 0.3)
            if key == "market.type" and value == "clearing":
                document["market"].pop("fixed_price", None)
        else:
            raise ScenarioError(key, "is not a scenario key")
    return _parse_scenario(document, default_name=scenario.name)


# --- factors and designs ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Factor:
    """One factor of a study.

    Attributes:
        key: ``P``, ``p_eff`` or a dotted scenario key.
        low: the range's lower end (None for a factor given by ``values``).
        high: the range's upper end.
        count: grid levels of a range (grid designs).
        values: the levels, numbers or any JSON values (strategy mixes, policies), or None.
    """

    key: str
    low: float | None = None
    high: float | None = None
    count: int | None = None
    values: tuple[Any, ...] | None = None

    @property
    def integer(self) -> bool:
        """Whether the factor's values are whole numbers (e.g. ``market.token_cap``)."""
        return self.key in INTEGER_KEYS

    @property
    def numeric(self) -> bool:
        """Whether every value is a number (a float or int column in the table)."""
        if self.values is None:
            return True
        return all(isinstance(v, int | float) and not isinstance(v, bool) for v in self.values)

    def levels(self) -> list[Any]:
        """Return the grid levels: the values, or ``count`` evenly spaced numbers of the range."""
        if self.values is not None:
            return list(self.values)
        assert self.low is not None and self.high is not None and self.count is not None
        if self.integer:
            return sorted({round(x) for x in np.linspace(self.low, self.high, self.count)})
        return [float(x) for x in np.round(np.linspace(self.low, self.high, self.count), 12)]

    def at(self, unit: float) -> Any:
        """Return the factor's value at a point ``unit`` in [0, 1) of a sampled design.

        A range maps linearly (an integer key uniformly onto lo..hi); values are chosen by
        ``floor(unit * len(values))``.
        """
        if self.values is not None:
            return self.values[min(int(unit * len(self.values)), len(self.values) - 1)]
        assert self.low is not None and self.high is not None
        if self.integer:
            span = int(self.high) - int(self.low) + 1
            return int(self.low) + min(int(unit * span), span - 1)
        return float(self.low + unit * (self.high - self.low))

    def label(self, value: Any) -> Any:
        """Return ``value`` as it appears in the table (JSON text for a non-numeric value)."""
        if self.numeric:
            return value
        return value if isinstance(value, str) else json.dumps(value, sort_keys=True)

    def document(self) -> dict[str, Any]:
        """Return the factor as a canonical study-document entry."""
        if self.values is not None:
            return {"key": self.key, "values": list(self.values)}
        entry: dict[str, Any] = {"key": self.key, "range": [self.low, self.high]}
        if self.count is not None:
            entry["count"] = self.count
        return entry


@dataclass(frozen=True, slots=True)
class Design:
    """How the points are chosen: a full grid, or a seeded Sobol or Latin-hypercube sample."""

    type: DesignType = "grid"
    samples: int | None = None
    seed: int = 0

    def document(self) -> dict[str, Any]:
        """Return the design as a canonical study-document entry."""
        if self.type == "grid":
            return {"type": "grid"}
        return {"type": self.type, "samples": self.samples, "seed": self.seed}


@dataclass(frozen=True, slots=True, kw_only=True)
class Study:
    """A validated study: everything ``run_study`` needs.

    Attributes:
        name: the study's name (the file's stem by default).
        description: free text.
        scenario: the base scenario, overrides applied.
        factors: the factors, in document order (the grid's axes in that order).
        design: grid, sobol or lhs.
        replicates: games per point (R).
        seed: the study's seed: replicate j of every point is seeded ``replicate_seed(seed, j)``.
        metrics: the §8 metrics kept in the table.
        precision: float32 or float64 (engine "cell").
        engine: "cell" (the sweep's batched rules, §9) or "game" (``run_game``, every rule).
        chunk_points: points per chunk (None: chosen from the work per point).
        output: the output directory.
        source: the canonical document (overrides and the base scenario resolved).
    """

    name: str
    description: str
    scenario: Scenario
    factors: tuple[Factor, ...]
    design: Design
    replicates: int
    seed: int
    metrics: tuple[str, ...]
    precision: Literal["float32", "float64"]
    engine: Engine
    chunk_points: int | None
    output: Path

    def document(self) -> dict[str, Any]:
        """Return the canonical study document (the base scenario written out in full)."""
        return {
            "name": self.name,
            "description": self.description,
            "scenario": scenario_to_dict(self.scenario),
            "factors": [factor.document() for factor in self.factors],
            "design": self.design.document(),
            "replicates": self.replicates,
            "seed": self.seed,
            "metrics": list(self.metrics),
            "precision": self.precision,
            "engine": self.engine,
            "chunk_points": self.chunk_points,
        }

    def digest(self) -> str:
        """Return a hash of everything that decides the numbers (the output path excluded)."""
        text = json.dumps(self.document(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def unit_points(self) -> FloatArray:
        """Return the design's points as (points, factors): grid level indices or a unit sample.

        Grid: each row holds level indices, the last factor varying fastest. Sobol: SALib's
        Saltelli scheme (first and total order, ``samples`` x (factors + 2) points) on a
        scrambled Sobol sequence (scipy.stats.qmc) seeded with the design's seed. LHS:
        scipy.stats.qmc.LatinHypercube of ``samples`` points, seeded.
        """
        count = len(self.factors)
        if self.design.type == "grid":
            axes = [range(len(factor.levels())) for factor in self.factors]
            rows = list(itertools.product(*axes)) if count else [()]
            return np.array(rows, dtype=np.float64).reshape(len(rows), count)
        if count == 0:
            raise StudyError("factors", f"a {self.design.type} design needs at least one factor")
        if self.design.type == "lhs":
            qmc = require("scipy.stats.qmc")
            sampler = qmc.LatinHypercube(d=count, rng=self.design.seed)
            sample: FloatArray = sampler.random(self.design.samples)
            return sample
        salib = require("SALib.sample.sobol")
        sample = salib.sample(
            self.salib_problem(),
            self.design.samples,
            calc_second_order=False,
            seed=self.design.seed,
        )
        return np.asarray(sample, dtype=np.float64)

    def salib_problem(self) -> dict[str, Any]:
        """Return SALib's problem: one unit interval per factor (values are mapped by ``at``)."""
        return {
            "num_vars": len(self.factors),
            "names": [factor.key for factor in self.factors],
            "bounds": [[0.0, 1.0]] * len(self.factors),
        }

    def values_at(self, unit: Sequence[float]) -> dict[str, Any]:
        """Return a point's factor values from its row of ``unit_points``."""
        if self.design.type == "grid":
            return {
                factor.key: factor.levels()[int(index)]
                for factor, index in zip(self.factors, unit, strict=True)
            }
        return {factor.key: factor.at(u) for factor, u in zip(self.factors, unit, strict=True)}

    def grid_shape(self) -> tuple[int, ...]:
        """Return the grid's shape, one axis per factor (grid designs only)."""
        return tuple(len(factor.levels()) for factor in self.factors)


def point_digest(unit: FloatArray) -> str:
    """Return a hash of a design's points (a resumed study must have the very same points)."""
    return hashlib.sha256(np.ascontiguousarray(unit, dtype=np.float64).tobytes()).hexdigest()[:16]


# --- parsing ---------------------------------------------------------------------------------


def _integer(key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise StudyError(key, f"must be an integer, got {value!r}")
    if value < minimum:
        raise StudyError(key, f"must be at least {minimum}, got {value!r}")
    return value


def _number(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise StudyError(key, f"must be a finite number, got {value!r}")
    return float(value)


def _object(key: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise StudyError(key, f"must be an object, got {value!r}")
    return value


def _unknown(prefix: str, data: Mapping[str, Any], known: Sequence[str]) -> None:
    for key in data:
        if key not in known:
            raise StudyError(
                f"{prefix}{key}", f"is not a study key; known here: {', '.join(known)}"
            )


def _base_scenario(data: Any, base_dir: Path) -> Scenario:
    if isinstance(data, Mapping):
        try:
            return _parse_scenario(data, default_name="scenario")
        except ScenarioError as exc:
            key = f"scenario.{exc.key}".rstrip(".")
            raise StudyError(key, str(exc)[len(exc.key) :].strip()) from None
    if not isinstance(data, str):
        raise StudyError("scenario", f"must be a preset name, a path or an object, got {data!r}")
    if data in PRESETS:
        return load_preset(data)
    path = Path(data) if Path(data).is_absolute() else base_dir / data
    try:
        return load_scenario(path)
    except ScenarioError as exc:
        raise StudyError("scenario", str(exc)) from None


def _factor(where: str, data: Any, design: DesignType, base: Scenario) -> Factor:
    data = _object(where, data)
    _unknown(f"{where}.", data, _FACTOR_KEYS)
    if "key" not in data:
        raise StudyError(f"{where}.key", "is required")
    key = _check_key(f"{where}.key", data["key"])
    if "values" in data and "range" in data:
        raise StudyError(where, "takes either range or values, not both")
    if "values" in data:
        values = data["values"]
        if not isinstance(values, list) or not values:
            raise StudyError(f"{where}.values", f"must be a non-empty list, got {values!r}")
        if "count" in data:
            raise StudyError(f"{where}.count", "applies only to a range")
        factor = Factor(key, values=tuple(values))
    elif "range" in data:
        bounds = data["range"]
        if not isinstance(bounds, list) or len(bounds) != 2:
            raise StudyError(f"{where}.range", f"must be [lo, hi], got {bounds!r}")
        low, high = (_number(f"{where}.range[{i}]", item) for i, item in enumerate(bounds))
        if low > high:
            raise StudyError(f"{where}.range", f"must have lo <= hi, got [{low:g}, {high:g}]")
        count = None
        if design == "grid":
            if "count" not in data:
                raise StudyError(f"{where}.count", "is required for a range in a grid design")
            count = _integer(f"{where}.count", data["count"], 1)
            if count > 1 and low == high:
                raise StudyError(f"{where}.range", f"is empty but count is {count}")
        elif "count" in data:
            raise StudyError(f"{where}.count", "applies only to a grid design")
        if key in INTEGER_KEYS and not (low.is_integer() and high.is_integer()):
            raise StudyError(f"{where}.range", f"{key} takes whole numbers, got {bounds!r}")
        factor = Factor(key, low=low, high=high, count=count)
    else:
        raise StudyError(where, "needs a range [lo, hi] or a list of values")
    _check_levels(where, factor, base)
    return factor


def _check_levels(where: str, factor: Factor, base: Scenario) -> None:
    """Check that every value the factor can take makes a valid point (alone on the base)."""
    if factor.values is not None:
        candidates = list(factor.values)
    else:
        candidates = [factor.at(0.0), factor.at(0.999999999)] + (
            factor.levels() if factor.count else []
        )
    for value in candidates:
        if factor.key in CELL_FACTORS:
            number = _number(where, value) if not isinstance(value, bool) else None
            if number is None or number < 0 or (factor.key == "p_eff" and number > 1):
                bound = "[0, 1]" if factor.key == "p_eff" else "[0, inf)"
                raise StudyError(where, f"{factor.key} must lie within {bound}, got {value!r}")
            continue
        try:
            apply_overrides(base, {factor.key: value})
        except ScenarioError as exc:
            raise StudyError(where, f"gives an invalid scenario: {exc}") from None


def parse_study(
    data: Any, *, base_dir: str | Path | None = None, default_name: str = "study"
) -> Study:
    """Validate a study document and fill its defaults (docs/studies.md).

    Args:
        data: the parsed JSON object.
        base_dir: where a relative scenario path or output path is resolved (the study file's
            directory; the working directory when None).
        default_name: the name when the document gives none.

    Raises:
        StudyError: an unknown key, a wrong type, a bad range or design, or a factor value that
            makes an invalid scenario, naming the dotted key (``factors[1].range``).
    """
    base_dir = Path.cwd() if base_dir is None else Path(base_dir)
    data = _object("", data) if isinstance(data, Mapping) else _fail_document(data)
    _unknown("", data, _STUDY_KEYS)
    for required in ("scenario", "factors"):
        if required not in data:
            raise StudyError(required, "is required")
    scenario = _base_scenario(data["scenario"], base_dir)
    overrides = _object("overrides", data.get("overrides", {}))
    for key in overrides:
        _check_key(f"overrides.{key}", key)
        if key in CELL_FACTORS:
            raise StudyError(f"overrides.{key}", "is a factor of a cell; give it as a factor")
    try:
        scenario = apply_overrides(scenario, overrides)
    except ScenarioError as exc:
        raise StudyError(f"overrides.{exc.key}", str(exc)[len(exc.key) :].strip()) from None

    design_data = _object("design", data.get("design", {"type": "grid"}))
    _unknown("design.", design_data, _DESIGN_KEYS)
    design_type = design_data.get("type", "grid")
    if design_type not in DESIGNS:
        raise StudyError("design.type", f"must be one of {', '.join(DESIGNS)}; got {design_type!r}")
    if design_type == "grid":
        for key in ("samples", "seed"):
            if key in design_data:
                raise StudyError(f"design.{key}", "applies only to a sobol or lhs design")
        design = Design("grid")
    else:
        if "samples" not in design_data:
            raise StudyError("design.samples", f"is required for a {design_type} design")
        samples = _integer("design.samples", design_data["samples"], 1)
        if design_type == "sobol" and samples & (samples - 1):
            raise StudyError("design.samples", f"must be a power of 2 for sobol, got {samples}")
        design = Design(
            design_type, samples, _integer("design.seed", design_data.get("seed", 0), 0)
        )

    factors_data = data["factors"]
    if not isinstance(factors_data, list):
        raise StudyError("factors", f"must be a list, got {factors_data!r}")
    factors = tuple(
        _factor(f"factors[{i}]", item, design_type, scenario) for i, item in enumerate(factors_data)
    )
    seen: set[str] = set()
    for i, factor in enumerate(factors):
        if factor.key in seen:
            raise StudyError(f"factors[{i}].key", f"{factor.key} is already a factor")
        seen.add(factor.key)
    if design_type != "grid" and not factors:
        raise StudyError("factors", f"a {design_type} design needs at least one factor")

    engine = data.get("engine", "cell")
    if engine not in ENGINES:
        raise StudyError("engine", f"must be one of {', '.join(ENGINES)}; got {engine!r}")
    if engine == "cell":
        for i, factor in enumerate(factors):
            if factor.key in CELL_BYPASSED:
                raise StudyError(
                    f"factors[{i}].key",
                    f"{factor.key} has no effect in a cell (MODEL.md §9 bypasses signals and "
                    'audits); use "engine": "game"',
                )
    metrics = data.get("metrics", list(METRICS))
    if not isinstance(metrics, list) or not metrics:
        raise StudyError("metrics", f"must be a non-empty list of §8 names, got {metrics!r}")
    for i, metric in enumerate(metrics):
        if metric not in METRICS:
            raise StudyError(
                f"metrics[{i}]", f"{metric!r} is not a §8 metric: {', '.join(METRICS)}"
            )
    precision = data.get("precision", "float32")
    if precision not in ("float32", "float64"):
        raise StudyError("precision", f"must be float32 or float64, got {precision!r}")
    chunk_points = data.get("chunk_points")
    if chunk_points is not None:
        chunk_points = _integer("chunk_points", chunk_points, 1)
    name = data.get("name", default_name)
    description = data.get("description", "")
    for key, value in (("name", name), ("description", description)):
        if not isinstance(value, str):
            raise StudyError(key, f"must be a string, got {value!r}")
    output = data.get("output", f"{name}-study")
    if not isinstance(output, str) or not output:
        raise StudyError("output", f"must be a directory path, got {output!r}")
    output_path = Path(output) if Path(output).is_absolute() else base_dir / output
    return Study(
        name=name,
        description=description,
        scenario=scenario,
        factors=factors,
        design=design,
        replicates=_integer("replicates", data.get("replicates", 10), 1),
        seed=_integer("seed", data.get("seed", scenario.seed), 0),
        metrics=tuple(metrics),
        precision=precision,
        engine=engine,
        chunk_points=chunk_points,
        output=output_path,
    )


def _fail_document(data: Any) -> Mapping[str, Any]:
    raise StudyError("", f"a study must be a JSON object, got {type(data).__name__}")


def load_study(path: str | Path) -> Study:
    """Read and validate a study file; relative paths inside it are taken from its directory.

    Raises:
        StudyError: an unreadable file, invalid JSON or an invalid study.
    """
    path = Path(path)
    try:
        text = path.read_text("utf-8")
    except OSError as exc:
        raise StudyError("", f"cannot read study {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StudyError("", f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}") from None
    return parse_study(data, base_dir=path.resolve().parent, default_name=path.stem)


__all__ = [
    "CELL_FACTORS",
    "Design",
    "Factor",
    "Study",
    "StudyError",
    "apply_overrides",
    "load_study",
    "parse_study",
]
