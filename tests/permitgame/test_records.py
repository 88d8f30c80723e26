"""Records a researcher can trust: programs declared and marked, every event with its actor,
the hash-chained log (an edited entry named) and the bundle replayed without a database."""

import csv
import io
import itertools
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from permitgame import realtime, services
from permitgame.client import CLIENT
from permitgame.exports import table_csv
from permitgame.models import Game, Move, Seat
from permitgame.replay import game_bundle, replay_bundle, replay_game, verify_game_chain
from tests.permitgame.console_fixtures import make_instructor, play_to_end, small_game

pytestmark = pytest.mark.django_db


def read(text):
    return list(csv.DictReader(io.StringIO(text)))


def api_join(client, code, body):
    return client.post(f"/api/games/{code}/join", json.dumps(body), content_type="application/json")


@pytest.fixture
def owner(django_user_model):
    return make_instructor(django_user_model, "ana")


# ------------------------------------------------------------------------------ programs


@pytest.mark.parametrize(
    ("client_field", "named"),
    [
        ("a program", "client:"),
        ({"kind": "program", "name": "x", "version": "1", "colour": "red"}, "client.colour"),
        ({"kind": "robot", "name": "x", "version": "1"}, "client.kind"),
        ({"kind": "program", "name": "", "version": "1"}, "client.name"),
        ({"kind": "program", "name": "x", "version": 1}, "client.version"),
        ({"kind": "program", "name": "x"}, "client.version"),
        ({"kind": "program", "name": "x" * 61, "version": "1"}, "client.name"),
    ],
)
def test_a_bad_client_declaration_is_refused_by_its_key_and_takes_no_seat(
    client, owner, client_field, named
):
    game = small_game(owner)
    answer = api_join(client, game.code, {"nickname": "bot-1", "client": client_field})
    assert answer.status_code == 400
    body = answer.json()
    assert body["code"] == "bad_request"
    assert body["message"].startswith(named)
    assert not Seat.objects.filter(game=game, token__isnull=False).exists()


@pytest.fixture
def mixed(client, owner, frozen_clock):
    """A finished game: lab 1 a declared program, lab 2 a student, the rest bots."""
    game = small_game(owner, labs=4, rounds=2)
    answer = api_join(client, game.code, {"nickname": "bot-1", "client": CLIENT})
    assert answer.status_code == 201
    program = Seat.objects.get(game=game, token=answer.json()["token"])
    student = services.seat_join(game=game, nickname="Ben")
    services.game_start(game=game)
    services.round_submit_bid(seat=program, round_no=1, amount=0.3)
    services.round_submit_bid(seat=student, round_no=1, amount=0.2)
    return play_to_end(game), program, student


def test_a_declared_program_is_marked_as_a_program_in_the_console_projector_admin_and_exports(
    client, django_user_model, mixed
):
    game, program, student = mixed
    assert program.is_program and program.client_name == CLIENT["name"]
    assert not student.is_program

    client.force_login(game.owner)
    console = client.get(f"/console/games/{game.code}/").content.decode()
    assert "program (permitgame.client 0.1.0)" in console
    assert "1 played by students, 1 by programs" in console
    projector = client.get(f"/console/games/{game.code}/projector/").content.decode()
    assert "Lab 1 · program" in projector

    admin = django_user_model.objects.create_superuser("root", "r@example.org", "pw-12345678")
    client.force_login(admin)
    seats = client.get(f"/admin/permitgame/seat/?game__id__exact={game.pk}").content.decode()
    assert "Program (permitgame.client 0.1.0)" in seats
    assert "Student" in seats
    log = client.get(f"/admin/permitgame/move/?game__id__exact={game.pk}&actor__exact=program")
    assert "Program (declared" in log.content.decode()

    labs = read(table_csv(game, "labs"))
    first = {r["lab"]: r for r in labs if r["round"] == "1"}
    assert (first["1"]["seat"], first["1"]["bid_by"]) == ("program", "program")
    assert (first["2"]["seat"], first["2"]["bid_by"]) == ("human", "human")
    assert first["3"]["seat"] == "bot"
    assert "strategy" not in first["2"] and first["2"]["fallback_strategy"]
    assert {r["held_by"] for r in read(table_csv(game, "log")) if r["player"] == "1"} == {"program"}

    players = client.get(f"/api/games/{game.code}").json()["players"]
    lab1 = next(p for p in players if p["player_id"] == 1)
    assert (lab1["program"], lab1["human"]) == (True, False)


# ------------------------------------------------------------------------------ events


def test_drops_reconnects_stand_ins_reclaims_rejoins_and_lobby_fills_are_logged_with_actors(
    client, owner, frozen_clock
):
    realtime.LOCAL_CHANNELS.clear()
    game = small_game(owner, labs=3, rounds=1)
    ben = services.seat_join(game=game, nickname="Ben")
    services.seat_connect(seat=ben, channel_name="t.lobby")  # the lobby's presence: not logged
    services.seat_disconnect(channel_name="t.lobby")
    services.game_start(game=game)  # labs 2 and 3 were kept for students: filled by bots
    services.seat_connect(seat=ben, channel_name="t.ben")
    services.seat_disconnect(channel_name="t.ben")
    services.game_advance_now(game=game)  # Ben is away: his bot stands in
    services.seat_connect(seat=ben, channel_name="t.ben2")  # back: takes the seat again
    answer = client.post(
        f"/api/games/{game.code}/rejoin",
        json.dumps({"rejoin_code": ben.rejoin_code}),
        content_type="application/json",
    )
    assert answer.status_code == 200

    log = [
        (m.action, m.actor, m.seat.player_id if m.seat else None)
        for m in Move.objects.filter(game=game).select_related("seat").order_by("id")
        if m.action not in ("phase", "bid", "decide", "audit")
    ]
    assert log == [
        ("create", "host", None),
        ("join", "human", 1),
        ("start", "host", None),
        ("fill", "system", 2),
        ("fill", "system", 3),
        ("connect", "human", 1),
        ("drop", "human", 1),
        ("advance", "host", None),
        ("stand_in", "system", 1),
        ("connect", "human", 1),
        ("reclaim", "human", 1),
        ("rejoin", "human", 1),
    ]
    realtime.LOCAL_CHANNELS.clear()


def test_bot_moves_before_a_late_join_carry_no_nickname(owner, frozen_clock):
    game = small_game(owner, labs=2, rounds=2)
    services.game_start(game=game)
    services.game_advance_now(game=game)  # round 1 bidding: both bots
    late = services.seat_join(game=game, nickname="Late")  # joins in round 1's compliance
    game = play_to_end(game)

    log = read(table_csv(game, "log"))
    mine = [r for r in log if r["player"] == str(late.player_id)]
    before = [
        r for r in mine if int(r["id"]) < next(int(r["id"]) for r in mine if r["action"] == "join")
    ]
    assert before and all(r["nickname"] == "" and r["held_by"] == "bot" for r in before)
    labs = read(table_csv(game, "labs"))
    round1 = next(r for r in labs if r["round"] == "1" and r["lab"] == str(late.player_id))
    assert round1["bid_by"] == "bot"


# ------------------------------------------------------------------------------ hash chain


@pytest.fixture
def played(owner):
    game = small_game(owner, labs=3, rounds=2)
    ben = services.seat_join(game=game, nickname="Ben")
    services.game_start(game=game)
    services.round_submit_bid(seat=ben, round_no=1, amount=0.4)
    return play_to_end(game)


def test_every_entry_holds_the_hash_of_the_one_before(played):
    moves = list(Move.objects.filter(game=played).order_by("id"))
    assert moves[0].prev_hash == ""
    assert all(len(m.hash) == 64 for m in moves)
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(moves))
    assert verify_game_chain(played).ok


def test_an_edited_move_is_detected_and_named(played, capsys):
    bid = Move.objects.get(game=played, round_no=1, action="bid", seat__nickname="Ben")
    # An edit that the replay cannot see (the bid still wins or loses the same way)...
    Move.objects.filter(pk=bid.pk).update(latency_ms=(bid.latency_ms or 0) + 1)

    report = verify_game_chain(played)
    assert not report.ok and report.broken_id == bid.pk
    assert f"entry {bid.pk} (round 1 bidding: bid by human, lab 1) was changed" in report.summary()
    with pytest.raises(CommandError, match=f"entry {bid.pk}"):
        call_command("replay_game", played.code)


def test_a_removed_entry_is_detected_at_the_entry_after_it(played):
    moves = list(Move.objects.filter(game=played).order_by("id"))
    Move.objects.filter(pk=moves[5].pk).delete()
    report = verify_game_chain(played)
    assert report.broken_id == moves[6].pk
    assert "removed or inserted" in report.problem


def test_a_game_logged_before_the_chain_existed_still_replays(played):
    Move.objects.filter(game=played).update(hash="", prev_hash="")
    chain = verify_game_chain(played)
    assert chain.ok and chain.unchained == chain.entries
    assert "before the hash chain existed" in chain.summary()
    assert replay_game(played).ok
    call_command("replay_game", played.code)  # no error


# ------------------------------------------------------------------------------ bundles


def test_a_bundle_replays_with_no_database_rows(played, tmp_path, capsys):
    path = tmp_path / "game.json"
    call_command("replay_game", played.code, "--save-bundle", str(path))
    capsys.readouterr()
    bundle = json.loads(path.read_text())
    assert "token" not in json.dumps(bundle["seats"])
    Game.objects.filter(pk=played.pk).delete()  # as on another machine: nothing of it here

    call_command("replay_game", "--bundle", str(path), "--json")
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True and out["chain"]["ok"] is True
    assert [r["round"] for r in out["rounds"]] == [1, 2]


def test_a_tampered_bundle_names_the_entry(played, tmp_path):
    bundle = json.loads(json.dumps(game_bundle(played)))
    bid = next(e for e in bundle["log"] if e["action"] == "bid" and e["actor"] == "human")
    bid["payload"]["amount"] = 0.41
    chain, _ = replay_bundle(bundle)
    assert chain.broken_id == bid["id"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bundle))
    with pytest.raises(CommandError, match=f"entry {bid['id']}"):
        call_command("replay_game", "--bundle", str(path))


def test_a_file_that_is_not_a_bundle_gets_a_clear_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"hello": 1}))
    with pytest.raises(CommandError, match="not a game bundle"):
        call_command("replay_game", "--bundle", str(path))
