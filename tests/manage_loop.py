"""``manage.py`` commands one after the other in one process (``harness.ManageProcess``).

Started with the settings of one server (``DATABASE_URL`` and the rest in its environment), it
sets Django up once, then reads one JSON request a line on stdin, ``{"argv": [...],
"environ": {...}}``, runs the command as ``manage.py`` would (``call_command`` parses the same
arguments), and answers one JSON line: ``{"returncode": ..., "stdout": ..., "stderr": ...}``.
``environ`` holds variables the command itself reads (``DJANGO_SUPERUSER_PASSWORD``); they are
set for that command only. Nothing else is kept between commands: the database connections are
closed after each one, so the server that shares the database sees every write at once.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback
from typing import Any


def _run(argv: list[str], environ: dict[str, str]) -> dict[str, Any]:
    from django.core.management import CommandError, call_command
    from django.db import connections

    stdout, stderr = io.StringIO(), io.StringIO()
    saved = {key: os.environ.get(key) for key in environ}
    os.environ.update(environ)
    returncode = 0
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                call_command(*argv)
            except CommandError as error:  # manage.py prints it and exits with 1
                print(f"CommandError: {error}", file=sys.stderr)
                returncode = 1
            except SystemExit as error:
                returncode = error.code if isinstance(error.code, int) else 1
            except Exception:
                traceback.print_exc()
                returncode = 1
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        connections.close_all()
    return {"returncode": returncode, "stdout": stdout.getvalue(), "stderr": stderr.getvalue()}


def main() -> None:
    # Answers go to a copy of stdout; anything a command writes to file descriptor 1 itself
    # (a C library, a child process) goes to stderr instead of into the answers.
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "permitgame.settings")
    import django

    django.setup()
    for line in sys.stdin:
        request = json.loads(line)
        answer = _run(list(request["argv"]), dict(request.get("environ") or {}))
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


if __name__ == "__main__":
    main()
