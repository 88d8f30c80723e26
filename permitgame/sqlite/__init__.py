"""The embedded database: Django's SQLite backend, its writers queued in the process (``base``).

``ahead()`` lets a thread's transactions go before the process's other writers (a room's moves,
the clock); it changes nothing with PostgreSQL.
"""

from permitgame.sqlite.base import ahead

__all__ = ["ahead"]
