"""The package itself: its public names, and what importing it or starting the command costs.

``sim_core/__init__.py`` imports its names on first use, so that ``python -m sim_core`` starts
quickly (the sweep's speed target counts the interpreter's start); these tests keep it that way.
"""

import ast
import subprocess
import sys
from pathlib import Path

import sim_core


def python(code):
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()


def test_every_public_name_resolves_from_the_module_that_defines_it():
    assert sorted(sim_core._ORIGINS) == sorted(sim_core.__all__)
    for name in sim_core.__all__:
        value = getattr(sim_core, name)
        assert value is getattr(sys.modules[sim_core._ORIGINS[name]], name), name
    assert set(sim_core.__all__) <= set(dir(sim_core))


def test_unknown_name_raises_attribute_error_when_looked_up():
    code = (
        "import sim_core\n"
        "try:\n    sim_core.no_such_name\nexcept AttributeError as exc:\n    print(exc)"
    )
    assert python(code) == ["module 'sim_core' has no attribute 'no_such_name'"]


def test_importing_the_package_loads_neither_numpy_nor_any_module_of_it():
    code = (
        "import sys, sim_core\n"
        "print(sorted(m for m in sys.modules if m.startswith('sim_core.')))\n"
        "print('numpy' in sys.modules)"
    )
    assert python(code) == ["[]", "False"]


def test_sweep_command_loads_only_what_it_needs_when_no_figure_is_wanted():
    # numpy.ma (which np.unique imports), the resolver, the game simulator, importlib.resources
    # and the figure are not needed by `sweep --no-plot --json`; each costs milliseconds of the
    # command's start.
    code = (
        "import runpy, sys\n"
        "sys.argv = ['sim_core', 'sweep', 'targeted_audit', '--grid', '2x2', '--labs', '8',\n"
        "            '--rounds', '2', '--replicates', '2', '--no-plot', '--json']\n"
        "try:\n    runpy.run_module('sim_core', run_name='__main__')\n"
        "except SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "unwanted = ('numpy.ma', 'sim_core.round', 'sim_core.governor', 'sim_core.simulate',\n"
        "            'importlib.resources', 'sim_core.plot', 'matplotlib')\n"
        "print([name for name in unwanted if name in sys.modules])"
    )
    assert python(code)[-1] == "[]"


def type_checking_imports():
    """Return {name: module} of the ``if TYPE_CHECKING:`` block of sim_core/__init__.py."""
    tree = ast.parse(Path(sim_core.__file__).read_text())
    [block] = [
        node
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name)
        if node.test.id == "TYPE_CHECKING"
    ]
    names = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.module, ast.dump(node)
        for alias in node.names:
            # `X as X`: an explicit re-export, which mypy's strict mode needs.
            assert alias.asname == alias.name, alias.name
            names[alias.name] = node.module
    return names


def test_the_names_mypy_sees_are_the_names_imported_at_run_time():
    assert type_checking_imports() == sim_core._ORIGINS
    assert sim_core.__all__ == list(sim_core._ORIGINS)
