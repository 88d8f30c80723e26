"""Django's SQLite backend, keeping no log of the queries unless asked to.

With ``DEBUG`` on (``make run``), Django logs every query of every connection, and its SQLite
backend makes the logged text by running a second statement (``SELECT QUOTE(?), ...``) for
each statement with parameters. A batch of moves cost a third more that way (12.4 against 8.3 ms
of CPU for 40 moves in a room of 200, ``python -m bench.load.cpu``), and the embedded server is
what a class plays on. Nothing here reads the log; the debug pages do not need it. A caller who
wants it asks for it as usual: ``CaptureQueriesContext`` and ``assertNumQueries`` force the
debug cursor, which still logs.
"""

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    """SQLite as Django has it; queries logged only when the debug cursor is forced."""

    @property
    def queries_logged(self) -> bool:
        return bool(self.force_debug_cursor)
