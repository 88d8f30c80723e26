"""The shipped preset scenarios and loading a scenario by preset name or by path (MODEL.md §10).

Here: ``PRESETS``, ``load_preset`` and ``load_scenario``. Not here: validation (``params.py``).

The presets are read from the package's ``scenarios/`` directory next to this file, not through
``importlib.resources``: importing that costs several milliseconds of every command's start
(the sweep's speed target counts it), and sim_core is always installed as plain files.
"""

from __future__ import annotations

import json
from pathlib import Path

from sim_core.errors import ScenarioError
from sim_core.params import Scenario, parse_scenario

#: The preset names, in teaching order (Scenario 1, 2, 3, the tax, then Scenario 3 with granted
#: permits traded among the labs, §3b).
PRESETS: tuple[str, ...] = (
    "no_enforcement",
    "random_audit",
    "targeted_audit",
    "carbon_tax",
    "grandfathered",
)
#: The directory of the shipped preset files.
SCENARIOS = Path(__file__).resolve().parent / "scenarios"


def _parse_text(text: str, *, source: str, default_name: str) -> Scenario:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ScenarioError(
            "", f"{source} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None
    except RecursionError:
        raise ScenarioError("", f"{source} is nested too deeply to be a scenario") from None
    return parse_scenario(data, default_name=default_name)


def load_preset(name: str) -> Scenario:
    """Load one of the shipped presets.

    Raises:
        ScenarioError: ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise ScenarioError("", f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    text = (SCENARIOS / f"{name}.json").read_text("utf-8")
    return _parse_text(text, source=f"preset {name}", default_name=name)


def load_scenario(name_or_path: str | Path) -> Scenario:
    """Load a scenario by preset name or from a JSON file (its stem is the default name).

    Raises:
        ScenarioError: neither a preset nor a readable file, invalid JSON or an invalid scenario.
    """
    if isinstance(name_or_path, str) and name_or_path in PRESETS:
        return load_preset(name_or_path)
    path = Path(name_or_path)
    if not path.is_file():
        raise ScenarioError(
            "", f"{str(name_or_path)!r} is neither a preset ({', '.join(PRESETS)}) nor a file"
        )
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError("", f"cannot read {path}: {exc}") from None
    return _parse_text(text, source=str(path), default_name=path.stem)
