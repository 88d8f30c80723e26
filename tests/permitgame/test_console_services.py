"""The instructor's services (lobby seats, the governor, presets) and the ownership selector."""

import pytest

from permitgame import host_selectors, services
from permitgame.errors import BadRequest, NotRunning, NotYourGame, SeatChange, UnknownGame
from permitgame.models import Action, Game, Move, SavedPreset, Seat, Status
from sim_core import Role
from tests.permitgame.console_fixtures import (
    make_instructor,
    play_to_end,
    small_game,
    small_scenario,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def game(ana):
    return small_game(ana)


def lab_seats(game):
    return list(Seat.objects.filter(game=game, role=Role.LAB).order_by("lab_index"))


def governor_seat(game):
    return Seat.objects.get(game=game, role=Role.GOVERNOR)


# ------------------------------------------------------------------------------ ownership


def test_owner_gets_the_game_when_asking_by_code(ana, game):
    assert host_selectors.game_for_host(ana, game.code.lower()) == game


def test_another_instructor_is_refused_when_asking_for_a_game_not_theirs(ben, game):
    with pytest.raises(NotYourGame, match="belongs to another instructor"):
        host_selectors.game_for_host(ben, game.code)


def test_staff_get_every_game_when_asking(django_user_model, game):
    staff = make_instructor(django_user_model, "root", is_staff=True)
    assert host_selectors.game_for_host(staff, game.code) == game
    assert game in host_selectors.host_games(staff)


def test_unknown_code_is_not_found_when_asking(ana):
    with pytest.raises(UnknownGame):
        host_selectors.game_for_host(ana, "NOPE42")


def test_anonymous_user_is_refused_when_asking(game):
    from django.contrib.auth.models import AnonymousUser

    with pytest.raises(NotYourGame):
        host_selectors.game_for_host(AnonymousUser(), game.code)


def test_games_list_holds_only_own_games_when_not_staff(ana, ben, game):
    theirs = small_game(ben)
    assert host_selectors.host_games(ana) == [game]
    assert host_selectors.host_games(ben) == [theirs]


# ------------------------------------------------------------------------------ bots in the lobby


def test_adding_a_bot_grows_the_labs_and_the_scenario_when_in_the_lobby(game):
    seat = services.game_add_bot(game=game)
    game.refresh_from_db()
    assert game.lab_count == 5
    assert seat.lab_index == 4
    assert seat.kind == Seat.Kind.BOT
    assert seat.fallback_strategy == "rational"
    assert Move.objects.filter(game=game, action=Action.ADD_BOT).count() == 1


def test_removing_a_bot_takes_the_last_empty_seat_when_no_seat_is_named(game):
    services.seat_join(game=game, nickname="Ada")
    services.game_remove_bot(game=game)
    game.refresh_from_db()
    assert game.lab_count == 3
    assert [s.lab_index for s in lab_seats(game)] == [0, 1, 2]
    assert lab_seats(game)[0].nickname == "Ada"


def test_removing_a_named_seat_renumbers_the_labs_after_it_when_in_the_lobby(game):
    ada = services.seat_join(game=game, nickname="Ada")
    bob = services.seat_join(game=game, nickname="Bob")
    services.game_set_governor(game=game, seat=ada)  # lab 1 is empty now
    empty = lab_seats(game)[0]
    assert not empty.has_player
    services.game_remove_bot(game=game, seat=empty)
    bob.refresh_from_db()
    assert bob.lab_index == 0
    assert [s.lab_index for s in lab_seats(game)] == [0, 1, 2]


def test_seat_with_a_player_cannot_be_removed_when_named(game):
    ada = services.seat_join(game=game, nickname="Ada")
    with pytest.raises(SeatChange, match="Ada's seat"):
        services.game_remove_bot(game=game, seat=ada)


def test_last_lab_cannot_be_removed_when_only_one_is_left(ana):
    game = small_game(ana, labs=1)
    with pytest.raises(SeatChange, match="at least one lab"):
        services.game_remove_bot(game=game)


def test_no_seat_is_removed_when_every_lab_has_a_player(ana):
    game = small_game(ana, labs=2)
    services.seat_join(game=game, nickname="Ada")
    services.seat_join(game=game, nickname="Bob")
    with pytest.raises(SeatChange, match="Every lab seat has a player"):
        services.game_remove_bot(game=game)


def test_seats_cannot_change_when_the_game_has_started(game):
    services.game_start(game=game)
    with pytest.raises(NotRunning, match="before the game starts"):
        services.game_add_bot(game=game)
    with pytest.raises(NotRunning):
        services.game_remove_bot(game=game)
    with pytest.raises(NotRunning):
        services.game_set_governor(game=game, seat=None)


def test_strategy_mix_is_recounted_when_the_number_of_labs_changes(ana):
    scenario = small_scenario(labs=4)
    scenario = scenario.with_changes(
        labs=scenario.labs.__class__(
            **{
                **{k: getattr(scenario.labs, k) for k in scenario.labs.__slots__},
                "strategy": {"rational": 0.5, "reckless": 0.5},
            }
        )
    )
    game = services.game_create(scenario=scenario, human_labs=4, owner=ana)
    services.game_add_bot(game=game)
    services.game_add_bot(game=game)
    strategies = sorted(s.fallback_strategy for s in lab_seats(game))
    assert strategies == ["rational"] * 3 + ["reckless"] * 3


# ------------------------------------------------------------------------------ the governor


def test_student_becomes_governor_and_keeps_their_seat_when_assigned(game):
    ada = services.seat_join(game=game, nickname="Ada")
    old_governor = governor_seat(game)
    services.game_set_governor(game=game, seat=ada)
    game.refresh_from_db()
    ada.refresh_from_db()
    old_governor.refresh_from_db()
    assert game.human_governor
    assert ada.role == Role.GOVERNOR and ada.lab_index is None and ada.nickname == "Ada"
    assert old_governor.role == Role.LAB and old_governor.lab_index == 0
    assert not old_governor.has_player
    assert game.lab_count == 4
    assert Move.objects.filter(game=game, action=Action.ASSIGN, seat=ada).exists()


def test_previous_governor_takes_the_lab_seat_when_another_student_is_assigned(game):
    ada = services.seat_join(game=game, nickname="Ada")
    bob = services.seat_join(game=game, nickname="Bob")
    services.game_set_governor(game=game, seat=ada)
    services.game_set_governor(game=game, seat=bob)
    ada.refresh_from_db()
    bob.refresh_from_db()
    assert bob.role == Role.GOVERNOR
    assert ada.role == Role.LAB and ada.lab_index == 1  # Bob's former number


def test_governor_moves_to_an_empty_lab_when_a_bot_takes_over(game):
    ada = services.seat_join(game=game, nickname="Ada")
    services.game_set_governor(game=game, seat=ada)
    services.game_set_governor(game=game, seat=None)
    game.refresh_from_db()
    ada.refresh_from_db()
    governor = governor_seat(game)
    assert not game.human_governor
    assert ada.role == Role.LAB
    assert not governor.has_player and governor.kind == Seat.Kind.BOT
    assert game.lab_count == 4


def test_governor_gets_a_new_lab_when_a_bot_takes_over_and_no_lab_is_free(ana):
    game = small_game(ana, labs=1, human_governor=True)
    ada = services.seat_join(game=game, nickname="Ada")
    bob = services.seat_join(game=game, nickname="Bob")  # takes the governor's seat
    assert bob.role == Role.GOVERNOR
    services.game_set_governor(game=game, seat=None)
    game.refresh_from_db()
    bob.refresh_from_db()
    assert bob.role == Role.LAB and bob.lab_index == 1
    assert game.lab_count == 2
    assert {s.nickname for s in lab_seats(game)} == {"Ada", "Bob"}
    assert ada.pk != bob.pk


def test_only_a_student_who_joined_can_be_governor_when_assigning(game):
    empty = lab_seats(game)[0]
    with pytest.raises(SeatChange, match="has joined"):
        services.game_set_governor(game=game, seat=empty)


def test_seat_of_another_game_is_refused_when_assigning(ana, game):
    other = small_game(ana)
    stranger = services.seat_join(game=other, nickname="Zed")
    with pytest.raises(SeatChange, match="not a lab of this game"):
        services.game_set_governor(game=game, seat=stranger)


def test_assigned_governor_plays_the_audits_when_the_game_runs(game, frozen_clock):
    ada = services.seat_join(game=game, nickname="Ada")
    services.game_set_governor(game=game, seat=ada)
    services.game_start(game=game)  # bots play every lab: the game waits only for the audits
    game.refresh_from_db()
    assert game.phase == "audit"
    services.round_submit_audits(seat=ada, round_no=1, labs=[0])
    game.refresh_from_db()
    assert game.phase == "results"


# ------------------------------------------------------------------------------ presets


def test_preset_is_saved_and_replaced_by_name_when_saved_twice(ana):
    first = services.preset_save(
        owner=ana,
        name="  My   class ",
        scenario=small_scenario(),
        human_governor=True,
        durations={},
    )
    second = services.preset_save(
        owner=ana,
        name="My class",
        scenario=small_scenario(labs=7),
        human_governor=False,
        durations={},
    )
    assert first.pk == second.pk
    assert second.name == "My class"
    assert SavedPreset.objects.get(pk=first.pk).scenario["labs"]["count"] == 7
    assert not SavedPreset.objects.get(pk=first.pk).human_governor


def test_preset_needs_a_name_when_saved(ana):
    with pytest.raises(BadRequest, match=services.PRESET_NAME_EMPTY):
        services.preset_save(
            owner=ana, name=" ", scenario=small_scenario(), human_governor=False, durations={}
        )


def test_preset_of_another_instructor_is_not_deleted_when_asked(ana, ben):
    preset = services.preset_save(
        owner=ana, name="Mine", scenario=small_scenario(), human_governor=False, durations={}
    )
    assert not services.preset_delete(owner=ben, preset_id=preset.pk)
    assert services.preset_delete(owner=ana, preset_id=preset.pk)
    assert not SavedPreset.objects.exists()


# ------------------------------------------------------------------------------ a whole game


def test_same_scenario_games_are_the_owners_finished_games_of_that_scenario(ana, ben):
    first = play_to_end(small_game(ana))
    second = play_to_end(small_game(ana))
    play_to_end(small_game(ana, labs=5))  # another scenario
    play_to_end(small_game(ben))  # another instructor
    small_game(ana)  # not finished
    assert host_selectors.same_scenario_games(second) == [first, second]
    assert Game.objects.get(pk=first.pk).status == Status.FINISHED
