"""The game's application with the steps of its phase changes traced (``bench.load.trace``).

A game server started with ``--trace`` runs this instead of ``permitgame.asgi``: the same
application, once Django is set up, with ``trace.install`` writing to the folder named by
``BENCH_TRACE_DIR``.
"""

from __future__ import annotations

import os
from pathlib import Path

from bench.load import trace
from permitgame.asgi import application  # sets Django up first

trace.install(Path(os.environ[trace.FOLDER_VARIABLE]))

__all__ = ["application"]
