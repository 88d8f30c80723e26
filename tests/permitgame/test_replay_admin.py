"""Reviewing a game: the replay from seed and log, its command, and the admin's pages."""

import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from permitgame import services
from permitgame.models import Move, RoundRecord, Status
from permitgame.replay import replay_game
from tests.permitgame.console_fixtures import make_instructor, play_to_end, small_game

pytestmark = pytest.mark.django_db


@pytest.fixture
def played(django_user_model):
    """A finished game in which two students bid by hand in round 1 and the rest defaulted."""
    owner = make_instructor(django_user_model, "ana")
    game = small_game(owner, labs=4, rounds=3, human_governor=True)
    ben = services.seat_join(game=game, nickname="Ben")
    cy = services.seat_join(game=game, nickname="Cy")
    services.game_start(game=game)
    services.round_submit_bid(seat=ben, round_no=1, amount=0.4)
    services.round_submit_bid(seat=cy, round_no=1, amount=0.05)
    game = play_to_end(game)
    assert game.status == Status.FINISHED
    return game


def test_finished_game_replays_exactly_from_its_seed_and_log(played):
    report = replay_game(played)
    assert [check.round_no for check in report.rounds] == [1, 2, 3]
    assert report.ok, report.summary()
    assert "all 3 settled rounds replay exactly" in report.summary()


def test_replay_names_the_round_and_fields_when_a_logged_bid_was_tampered_with(played):
    bid = Move.objects.get(game=played, round_no=1, action="bid", seat__nickname="Ben")
    bid.payload = {**bid.payload, "amount": 0.39}  # was 0.4: still the top bid
    Move.objects.filter(pk=bid.pk).update(payload=bid.payload)

    report = replay_game(played)

    assert not report.ok
    first = next(check for check in report.rounds if not check.ok)
    assert first.round_no == 1
    assert "bids" in first.differing
    assert "round 1 first" in report.summary()


def test_replay_command_prints_each_round_and_fails_when_a_record_was_changed(played, capsys):
    call_command("replay_game", played.code.lower(), "--json")
    assert json.loads(capsys.readouterr().out)["ok"] is True

    RoundRecord.objects.filter(game=played, round_no=2).update(price=99.0)
    with pytest.raises(CommandError, match="differ"):
        call_command("replay_game", played.code)
    out = capsys.readouterr().out
    assert "round   1: same" in out
    assert "round   2: DIFFERS in" in out and "price" in out


def test_replay_command_explains_an_unknown_code():
    with pytest.raises(CommandError, match="ZZZZZZ"):
        call_command("replay_game", "ZZZZZZ")


@pytest.fixture
def admin_client_(client, django_user_model):
    admin = django_user_model.objects.create_superuser("root", "root@example.org", "pw-12345678")
    client.force_login(admin)
    return client


def test_admin_game_page_links_to_its_log_in_order(admin_client_, played):
    page = admin_client_.get(f"/admin/permitgame/game/{played.pk}/change/")
    assert page.status_code == 200
    count = Move.objects.filter(game=played).count()
    link = f"/admin/permitgame/move/?game__id__exact={played.pk}"
    assert link in page.content.decode()
    assert f"{count} entries" in page.content.decode()

    log = admin_client_.get(link)
    assert log.status_code == 200
    assert f"{count} moves" in log.content.decode()
    other = small_game(played.owner)
    services.seat_join(game=other, nickname="Zed")
    assert "Zed" not in admin_client_.get(link).content.decode()


def test_admin_replay_action_reports_each_game(admin_client_, played):
    answer = admin_client_.post(
        "/admin/permitgame/game/",
        {"action": "replay", "_selected_action": [played.pk]},
        follow=True,
    )
    assert answer.status_code == 200
    assert "replay exactly from the seed and the move log" in answer.content.decode()


def test_admin_cannot_edit_or_delete_the_log(admin_client_, played):
    move = Move.objects.filter(game=played).first()
    assert admin_client_.post(f"/admin/permitgame/move/{move.pk}/delete/").status_code == 403
    page = admin_client_.get(f"/admin/permitgame/move/{move.pk}/change/")
    assert page.status_code == 200
    assert 'name="_save"' not in page.content.decode()


def test_replay_reports_a_log_that_breaks_the_rules(played):
    bid = Move.objects.get(game=played, round_no=1, action="bid", seat__nickname="Ben")
    Move.objects.filter(pk=bid.pk).update(payload={**bid.payload, "amount": 1000.0})

    report = replay_game(played)

    assert not report.ok
    assert report.rounds[0].round_no == 1
    assert "wealth" in report.rounds[0].differing[0]
