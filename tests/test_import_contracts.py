"""The import-linter contracts in pyproject.toml fail when a module they name does not exist."""

import subprocess
import sys
import tomllib
from pathlib import Path

from tests import harness

PYPROJECT = harness.REPO_ROOT / "pyproject.toml"


def lint_imports(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports")), str(config)],
        cwd=harness.REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def layers() -> list[str]:
    contracts = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]["contracts"]
    [layered] = [contract for contract in contracts if contract["type"] == "layers"]
    return layered["layers"]


def test_no_layer_is_optional():
    # import-linter skips a parenthesised (optional) layer whose module does not exist.
    assert not [layer for layer in layers() if "(" in layer]


def test_a_misspelt_layer_module_breaks_the_contract(tmp_path):
    text = PYPROJECT.read_text()
    assert text.count('"permitgame.selectors"') == 1
    config = tmp_path / "pyproject.toml"
    config.write_text(text.replace('"permitgame.selectors"', '"permitgame.selectorz"'))

    result = lint_imports(config)

    assert result.returncode != 0
    assert "permitgame.selectorz" in result.stdout + result.stderr
