"""Checked by mypy in ``make lint``, never run: the public names of sim_core are typed.

``sim_core/__init__.py`` imports its names lazily (PEP 562). Its ``__getattr__`` is hidden from
mypy, so a misspelt name is an error and a public name has its real type. Each ``type: ignore``
below must be needed (``warn_unused_ignores``): if mypy accepted the misspelt name, the ignore
would be unused and ``make lint`` would fail.
"""

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sim_core import resolve_rund  # type: ignore[attr-defined]

    resolve_rund()

if TYPE_CHECKING:
    from sim_core import unpermitted_value

    unpermitted_value("not a number", 1.0, 2.0)  # type: ignore[type-var]
