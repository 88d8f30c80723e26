"""Parameter studies (docs/studies.md): any scenario keys, on one machine or a Dask cluster.

Here: the public names of ``document`` (the study document), ``engine`` (running it in chunks)
and ``analysis`` (Sobol indices, the grid as an xarray Dataset, figures). Importing this package
needs numpy only; pyarrow, scipy, SALib, xarray, pandas and dask are imported when used
(``pip install permitgame[cluster]``).
"""

from __future__ import annotations

from sim_core.study.document import (
    Design,
    Factor,
    Study,
    StudyError,
    apply_overrides,
    load_study,
    parse_study,
)
from sim_core.study.engine import ChunkTask, StudyResult, run_chunk, run_study

__all__ = [
    "ChunkTask",
    "Design",
    "Factor",
    "Study",
    "StudyError",
    "StudyResult",
    "apply_overrides",
    "load_study",
    "parse_study",
    "run_chunk",
    "run_study",
]
