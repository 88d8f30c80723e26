"""Array type aliases and the small helpers every sim_core module shares.

Here: the ``FloatArray``/``BoolArray``/``IntArray`` aliases and ``frozen``, which makes an array
read-only so that an accidental mutation of a value crossing a function boundary raises.
Not here: any rule of the model.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.float64]
BoolArray: TypeAlias = npt.NDArray[np.bool_]
IntArray: TypeAlias = npt.NDArray[np.int64]


def frozen(array: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """Return ``array`` marked read-only (the same object, for chaining)."""
    array.setflags(write=False)
    return array
