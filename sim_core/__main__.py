"""``python -m sim_core``: see ``sim_core.cli``.

Two settings of the command's own process come first, before numpy is imported (the package's
``__init__`` imports nothing eagerly). Both only change speed, never a number.
"""

import ctypes
import os
import sys

# One BLAS thread. sim_core's only matrix products are small (``metrics.lab_tallies``) and a sweep
# keeps every core busy with its own processes, while starting OpenBLAS's pool of threads costs
# tens of milliseconds of start-up. A thread count set by the user is left alone.
if not any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
    os.environ["OPENBLAS_NUM_THREADS"] = "1"


def _keep_freed_memory() -> None:
    """Ask glibc's allocator to keep freed memory for reuse instead of returning it at once.

    A sweep allocates and frees arrays of a few hundred KiB many times a round; by default glibc
    hands such blocks back to the kernel (trims the heap, or maps and unmaps them), and the
    page faults of taking them again cost about a tenth of the sweep's time. Peak memory stays
    about the same: freed blocks are reused, not added to. Elsewhere than Linux, or without
    ``mallopt``, nothing is done.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return
    trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
    mallopt(trim_threshold, 1 << 30)
    mallopt(mmap_threshold, 32 << 20)


_keep_freed_memory()

from sim_core.cli import main  # noqa: E402

sys.exit(main())
