"""The command line: creategame + playbots play a whole game on a real Daphne server."""

import contextlib
import json
import re
import sqlite3

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from permitgame.models import Game
from tests import harness

SCENARIO = {
    "name": "two_rounds",
    "rounds": 2,
    "labs": {"count": 5},
    "market": {"type": "clearing", "token_cap": 2},
    "governor": {"policy": "policy"},
}


@pytest.mark.slow
def test_playbots_play_a_created_game_to_the_end_when_every_human_seat_is_a_client(tmp_path):
    scenario = tmp_path / "two_rounds.json"
    scenario.write_text(json.dumps(SCENARIO))
    env = {"DATABASE_URL": harness.sqlite_database_url(tmp_path)}
    with harness.daphne_server(env) as url:
        created = harness.manage(
            "creategame", "--scenario", str(scenario), "--labs", "4", "--human-labs", "2",
            "--human-governor", "--phase-seconds", "20", "--results-seconds", "0", "--seed", "11",
            "--json",
            "--base-url", url, env=env,
        )  # fmt: skip
        assert created.returncode == 0, created.stderr
        info = json.loads(created.stdout)
        assert info["labs"] == 4 and info["status"] == "lobby" and len(info["code"]) == 6
        assert info["join_url"] == f"{url}/join/{info['code']}/"

        played = harness.manage(
            "playbots", info["code"], "--count", "3", "--strategy", "truthful", "--url", url,
            env=env, timeout=120,
        )  # fmt: skip
        assert played.returncode == 0, played.stdout + played.stderr
        assert "Game over. Final standings:" in played.stdout
        assert played.stdout.count(" lab ") >= 4

    # What the server stored, read from its database file.
    with contextlib.closing(sqlite3.connect(tmp_path / "db.sqlite3")) as connection:
        status, round_no, records, program_moves = connection.execute(
            "SELECT g.status, g.round_no, "
            "(SELECT count(*) FROM permitgame_roundrecord r WHERE r.game_id = g.id), "
            "(SELECT count(*) FROM permitgame_move m "
            "WHERE m.game_id = g.id AND m.actor = 'program') "
            "FROM permitgame_game g WHERE g.code = ?",
            (info["code"],),
        ).fetchone()
    assert (status, round_no, records) == ("finished", 2, 2)
    # playbots declares itself: 2 labs bid twice and the governor audited twice, as programs.
    assert int(program_moves) >= 6


@pytest.mark.django_db
def test_creategame_explains_an_unknown_scenario():
    with pytest.raises(CommandError, match="neither a preset"):
        call_command("creategame", "--scenario", "no_such_thing")
    assert not Game.objects.exists()


@pytest.mark.django_db
def test_creategame_holds_the_results_screen_as_long_as_asked(capsys):
    call_command("creategame", "--scenario", "targeted_audit", "--results-seconds", "0", "--json")
    game = Game.objects.get(code=json.loads(capsys.readouterr().out)["code"])
    assert game.durations["results"] == 0
    call_command("creategame", "--scenario", "targeted_audit", "--phase-seconds", "20", "--json")
    game = Game.objects.get(code=json.loads(capsys.readouterr().out)["code"])
    assert (game.durations["bidding"], game.durations["results"]) == (20, 5)
    with pytest.raises(CommandError, match="--results-seconds must be at least 0"):
        call_command("creategame", "--scenario", "targeted_audit", "--results-seconds", "-1")


@pytest.mark.django_db
def test_creategame_scales_the_cap_with_the_labs_unless_a_cap_is_given(capsys):
    call_command("creategame", "--scenario", "targeted_audit", "--labs", "6", "--json")
    created = json.loads(capsys.readouterr().out)
    assert (created["labs"], created["token_cap"]) == (6, 3)  # the preset's 10 of 20, scaled
    game = Game.objects.get(code=created["code"])
    assert game.scenario["market"]["token_cap"] == 3
    assert game.seats.filter(role="lab").count() == 6

    call_command(
        "creategame", "--scenario", "targeted_audit", "--labs", "6", "--cap", "5", "--json"
    )
    assert json.loads(capsys.readouterr().out)["token_cap"] == 5


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--labs", "0"], "--labs or --cap: the number of labs must be at least 1, got 0"),
        (["--cap", "-1"], "--labs or --cap: the cap must be at least 0, got -1"),
        (["--seed", str(2**64)], "the seed must be between 0 and"),
        (["--human-labs", "99"], "human_labs must be between 0 and 20"),
    ],
)
def test_creategame_refuses_bad_numbers_with_a_message_and_creates_nothing(flags, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("creategame", "--scenario", "targeted_audit", *flags)
    assert not Game.objects.exists()
