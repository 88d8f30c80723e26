"""sim_core imports nothing from the web: stdlib, numpy and itself only (STYLE.md §3.1)."""

import ast
import subprocess
import sys
from pathlib import Path

import sim_core

PACKAGE = Path(sim_core.__file__).parent
FORBIDDEN = {"django", "channels", "django_htmx", "permitgame", "daphne", "redis"}
#: The optional extras' packages (`permitgame[cluster]`, `permitgame[mesa]`): only the study and
#: the Mesa adapter use them, imported when used, so `import sim_core` never loads them.
OPTIONAL_EXTRAS = {"dask", "distributed", "scipy", "SALib", "pyarrow", "xarray", "pandas", "mesa"}
#: Third-party packages sim_core may import; the plot module's matplotlib is imported lazily.
ALLOWED_THIRD_PARTY = {"numpy", "matplotlib"} | OPTIONAL_EXTRAS


def imported_roots(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module.split(".")[0]


def test_no_module_of_sim_core_imports_the_web_stack():
    offenders = {
        f"{path.relative_to(PACKAGE.parent)} imports {root}"
        for path in PACKAGE.rglob("*.py")
        for root in imported_roots(path)
        if root in FORBIDDEN
        or (root not in sys.stdlib_module_names and root not in ALLOWED_THIRD_PARTY | {"sim_core"})
    }
    assert not offenders


def test_importing_sim_core_loads_no_web_package():
    code = (
        "import sys, sim_core, sim_core.cli; "
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in %r)))"
        % (FORBIDDEN | {"matplotlib"} | OPTIONAL_EXTRAS)
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
