"""Create the benchmark's games through the project's own services (run in a subprocess).

``python -m bench.load.gamectl --labs N --games G`` prints one JSON object, ``{"codes": [...],
"console_cookie": null}``: the games' join codes. Every lab seat and the governor's seat wait for
a human, and each game starts by itself when its last seat is taken (``autostart``), from the
server that took that join: no instructor login is needed and the start is broadcast by the
server, as a class's is.

``--console``: the games belong to an instructor, and a session of theirs is made (its cookie,
``"<name>=<session>"``), so the benchmark can keep each game's console open as a class's
projector does.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

SCENARIO = "targeted_audit"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labs", type=int, required=True)
    parser.add_argument("--games", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--move-seconds", type=int, default=120, help="bidding, compliance, audit")
    parser.add_argument("--results-seconds", type=int, default=1, help="the results phase")
    parser.add_argument("--console", action="store_true", help="an instructor's session too")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "permitgame.settings")
    import django

    django.setup()
    from permitgame import services
    from sim_core import load_scenario, sweep_scenario

    scenario = sweep_scenario(load_scenario(SCENARIO), labs=args.labs, rounds=args.rounds)
    durations = {
        "bidding": args.move_seconds,
        "compliance": args.move_seconds,
        "audit": args.move_seconds,
        "results": args.results_seconds,
    }
    owner = instructor() if args.console else None
    codes = [
        services.game_create(
            scenario=scenario,
            human_labs=args.labs,
            human_governor=True,
            durations=durations,
            title=f"bench-load {index + 1}",
            autostart=True,
            owner=owner,
        ).code
        for index in range(args.games)
    ]
    cookie = session_cookie(owner) if owner is not None else None
    print(json.dumps({"codes": codes, "console_cookie": cookie}))


def instructor() -> Any:
    """The benchmark's instructor (made once per database)."""
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username="bench-instructor")
    return user


def session_cookie(user: Any) -> str:
    """A logged-in session of ``user``, as the cookie a browser would send ("name=key").

    The session holds what Django's ``login`` writes into it (the user, the backend and the
    password's hash), through the configured session engine. Not ``login`` itself, nor the test
    client's ``force_login``: its signal makes django-axes log the login with the request's
    address, and a request made up here has none (PostgreSQL refuses "unknown" as one).
    """
    import importlib

    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY

    session = importlib.import_module(settings.SESSION_ENGINE).SessionStore()
    session[SESSION_KEY] = user._meta.pk.value_to_string(user)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.save()
    return f"{settings.SESSION_COOKIE_NAME}={session.session_key}"


if __name__ == "__main__":
    main()
