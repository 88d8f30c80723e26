"""Research exports: every lab-round with who made each move, the log, the metrics."""

import csv
import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from permitgame import realtime, services
from permitgame.exports import table_csv
from permitgame.models import Move, RoundRecord
from tests.permitgame.console_fixtures import make_instructor, play_to_end, small_game

pytestmark = pytest.mark.django_db


def read(text):
    return list(csv.DictReader(io.StringIO(text)))


def connect(seat):
    """Keep ``seat``'s (pretend) socket open, so that a missed deadline is a default."""
    name = f"test.{seat.pk}"
    services.seat_connect(seat=seat, channel_name=name)
    realtime.LOCAL_CHANNELS.add(name)


@pytest.fixture
def played(django_user_model, frozen_clock):
    """Ben bids by hand in round 1; Cy and the governor Gil are connected but never act
    (defaults); Dee leaves (a bot stands in); the fourth lab is nobody's."""
    realtime.LOCAL_CHANNELS.clear()
    owner = make_instructor(django_user_model, "ana")
    game = small_game(owner, labs=4, rounds=2, human_governor=True)
    ben = services.seat_join(game=game, nickname="Ben, the bold")
    connect(services.seat_join(game=game, nickname="Cy"))
    services.seat_join(game=game, nickname="Dee")
    gov = services.seat_join(game=game, nickname="Gil", role="governor")
    connect(gov)
    services.game_start(game=game)
    frozen_clock.advance(2.5)
    services.round_submit_bid(seat=ben, round_no=1, amount=0.4)
    game = play_to_end(game)
    realtime.LOCAL_CHANNELS.clear()
    return game, ben, gov


def test_lab_rows_hold_every_lab_round_with_who_moved_and_what_it_got(played):
    game, ben, _ = played
    rows = read(table_csv(game, "labs"))
    assert len(rows) == 4 * 2
    assert [(r["round"], r["lab"]) for r in rows[:4]] == [
        ("1", "1"),
        ("1", "2"),
        ("1", "3"),
        ("1", "4"),
    ]

    first = RoundRecord.objects.get(game=game, round_no=1)
    ben_row = next(r for r in rows if r["round"] == "1" and r["nickname"] == "Ben, the bold")
    assert ben_row["lab"] == str(ben.player_id)
    assert (float(ben_row["bid"]), ben_row["bid_by"], ben_row["bid_ms"]) == (0.4, "human", "2500")
    assert float(ben_row["value"]) == first.values[ben.lab_index]
    assert float(ben_row["payoff"]) == first.payoffs[ben.lab_index]
    assert ben_row["won"] == str(int(first.won[ben.lab_index]))

    cy_row = next(r for r in rows if r["round"] == "1" and r["nickname"] == "Cy")
    assert (cy_row["bid"], cy_row["bid_by"]) == ("0.0", "default")
    dee_row = next(r for r in rows if r["round"] == "1" and r["nickname"] == "Dee")
    assert (dee_row["seat"], dee_row["bid_by"]) == ("human", "bot")
    assert {r["seat"] for r in rows if r["nickname"] == ""} == {"bot"}
    assert sum(float(r["payoff"]) for r in rows if r["round"] == "2") == pytest.approx(
        sum(RoundRecord.objects.get(game=game, round_no=2).payoffs)
    )


def test_log_rows_are_the_whole_log_in_order_with_lab_numbers_from_one(played):
    game, _, gov = played
    rows = read(table_csv(game, "log"))
    assert all(r["game"] == game.code for r in rows)
    assert [int(r["id"]) for r in rows] == list(
        Move.objects.filter(game=game).order_by("id").values_list("pk", flat=True)
    )
    audit = next(r for r in rows if r["action"] == "audit" and r["round"] == "1")
    assert (audit["player"], audit["nickname"], audit["actor"]) == ("0", gov.nickname, "default")
    assert json.loads(audit["payload"]) == {"labs": []}


def test_exportgame_writes_the_tables_of_several_games(played, tmp_path, django_user_model):
    game, _, _ = played
    other = play_to_end(small_game(game.owner, labs=3, rounds=1))
    call_command("exportgame", game.code, other.code.lower(), "--out", str(tmp_path / "data"))

    labs = read((tmp_path / "data" / "labs.csv").read_text())
    assert [r["game"] for r in labs].count(game.code) == 8
    assert [r["game"] for r in labs].count(other.code) == 3
    metrics = read((tmp_path / "data" / "metrics.csv").read_text())
    assert [(r["game"], r["round"]) for r in metrics] == [
        (game.code, "1"), (game.code, "2"), (other.code, "1")
    ]  # fmt: skip
    described = json.loads((tmp_path / "data" / "games.json").read_text())
    assert [d["code"] for d in described] == [game.code, other.code]
    assert described[0]["seed"] == game.seed and described[0]["scenario"] == game.scenario


def test_exportgame_explains_what_is_missing():
    with pytest.raises(CommandError, match="name at least one game"):
        call_command("exportgame", "--out", "/tmp/nothing")
    with pytest.raises(CommandError, match="NOPE42"):
        call_command("exportgame", "NOPE42", "--out", "/tmp/nothing")
