"""The players' pages through Django's test client: join, rejoin and a screen's first render."""

import re

import pytest
from django.test import Client

from permitgame import services
from permitgame.forms import BidForm
from permitgame.templatetags.play_format import amount, clock, ordinal, percent, signed
from permitgame.views import JOIN_GAME_FULL, JOIN_GAME_OVER


def new_game(scenario, **options):
    options.setdefault("human_labs", 2)
    options.setdefault("human_governor", True)
    return services.game_create(scenario=scenario, **options)


def error_of(response, field_id):
    """Return the error text shown under a field, checking it is tied to the field."""
    html = response.content.decode()
    match = re.search(rf'<p id="{field_id}-error" class="field-error" role="alert">(.*?)</p>', html)
    assert match, html
    assert f'aria-describedby="{field_id}-error' in html or f'{field_id}-error"' in html
    return re.sub(r"<[^>]+>", "", match.group(1)).replace("!", "", 1).strip()


@pytest.mark.django_db
def test_link_fills_the_code_in_and_focuses_the_nickname_when_opened(client, small_scenario):
    game = new_game(small_scenario, title="Tuesday class")
    html = client.get(f"/join/{game.code.lower()}/").content.decode()
    assert f'value="{game.code}"' in html
    assert "Tuesday class" in html and "waiting to start" in html
    nickname = re.search(r'<input id="join-nickname"[^>]*>', html, re.S).group(0)
    assert "autofocus" in nickname
    assert "Choose a nickname, then press Join." in html
    query = client.get(f"/join/?code={game.code}").content.decode()
    assert f'value="{game.code}"' in query


@pytest.mark.django_db
def test_session_remembers_the_seat_when_the_player_comes_back(client, small_scenario):
    game = new_game(small_scenario)
    response = client.post("/join/", {"code": game.code, "nickname": "Ana"})
    assert response.status_code == 302 and response["Location"] == f"/play/{game.code}/"
    again = client.get(f"/join/{game.code}/")
    assert again.status_code == 302 and again["Location"] == f"/play/{game.code}/"
    twice = client.post("/join/", {"code": game.code, "nickname": "Ana again"})
    assert twice.status_code == 302
    assert game.seats.filter(token__isnull=False).count() == 1


@pytest.mark.django_db
def test_join_shows_a_message_on_the_code_field_when_the_code_is_unknown_or_missing(client):
    unknown = client.post("/join/", {"code": "nope42", "nickname": "Ana"})
    assert unknown.status_code == 400
    assert "no game with the code" in error_of(unknown, "join-code")
    assert 'value="Ana"' in unknown.content.decode()  # what was typed is kept
    missing = client.post("/join/", {"code": " ", "nickname": "Ana"})
    assert error_of(missing, "join-code") == "Enter the join code shown in class."
    link = client.get("/join/NOPE42/")
    assert "no game with the code" in error_of(link, "join-code")


@pytest.mark.django_db
def test_join_says_the_game_is_full_when_every_seat_is_taken(client, small_scenario):
    one_lab = small_scenario.with_changes(labs=_labs(small_scenario, 1))
    game = new_game(one_lab, human_labs=1, human_governor=False)
    assert client.post("/join/", {"code": game.code, "nickname": "Ana"}).status_code == 302
    other = Client()
    response = other.post("/join/", {"code": game.code, "nickname": "Ben"})
    assert response.status_code == 400
    assert error_of(response, "join-code") == JOIN_GAME_FULL.format(code=game.code)
    services.game_start(game=game)
    running = other.post("/join/", {"code": game.code, "nickname": "Ben"}).content.decode()
    assert "in progress" in running and "take over" not in running  # no promise of a seat


@pytest.mark.django_db
def test_join_page_says_a_late_joiner_takes_over_a_bot_when_a_game_is_running(
    client, small_scenario
):
    game = new_game(small_scenario, human_labs=1, human_governor=False)
    services.game_start(game=game)
    html = client.get(f"/join/{game.code}/").content.decode()
    assert "in progress: you take over a bot&#x27;s lab" in html


@pytest.mark.django_db
def test_join_says_the_game_is_over_when_it_has_finished(client, small_scenario):
    game = new_game(small_scenario)
    services.game_end(game=game)
    shown = client.get(f"/join/{game.code}/")
    assert error_of(shown, "join-code") == JOIN_GAME_OVER.format(code=game.code)
    posted = client.post("/join/", {"code": game.code, "nickname": "Ana"})
    assert posted.status_code == 400
    assert error_of(posted, "join-code") == JOIN_GAME_OVER.format(code=game.code)


@pytest.mark.django_db
def test_join_shows_a_message_on_the_nickname_when_it_is_taken_or_empty(client, small_scenario):
    game = new_game(small_scenario)
    services.seat_join(game=game, nickname="Ana")
    taken = client.post("/join/", {"code": game.code, "nickname": " ana "})
    assert taken.status_code == 400
    assert "is taken in this game" in error_of(taken, "join-nickname")
    empty = client.post("/join/", {"code": game.code, "nickname": ""})
    assert error_of(empty, "join-nickname") == "Choose a nickname."
    assert game.seats.filter(token__isnull=False).count() == 1


@pytest.mark.django_db
def test_rejoin_code_moves_the_seat_to_another_browser(client, small_scenario):
    game = new_game(small_scenario)
    client.post("/join/", {"code": game.code, "nickname": "Ana"})
    seat = game.seats.get(nickname="Ana")
    screen = client.get(f"/play/{game.code}/").content.decode()
    assert seat.rejoin_code in screen

    phone = Client()
    wrong = phone.post("/rejoin/", {"code": game.code, "rejoin_code": "ZZZZZZ"})
    assert wrong.status_code == 400 and "rejoin code" in error_of(wrong, "rejoin-code")
    assert '<details class="rejoin" open>' in wrong.content.decode()
    moved = phone.post("/rejoin/", {"code": game.code.lower(), "rejoin_code": seat.rejoin_code})
    assert moved.status_code == 302 and moved["Location"] == f"/play/{game.code}/"
    assert "Lab 1" in phone.get(f"/play/{game.code}/").content.decode()


@pytest.mark.django_db
def test_play_page_sends_a_browser_without_a_seat_to_the_join_page(client, small_scenario):
    game = new_game(small_scenario)
    response = client.get(f"/play/{game.code}/")
    assert response.status_code == 302 and response["Location"] == f"/join/?code={game.code}"


@pytest.mark.django_db
def test_lab_screen_shows_its_own_numbers_and_no_signals_when_playing(client, small_scenario):
    game = new_game(small_scenario)
    client.post("/join/", {"code": game.code, "nickname": "Ana"})
    services.seat_join(game=game, nickname="Ben")
    governor = services.seat_join(game=game, nickname="Gil")
    services.game_start(game=game)
    html = client.get(f"/play/{game.code}/").content.decode()
    assert 'id="bid-form"' in html and 'name="amount"' in html
    assert "Value this round" in html and "Rules in force" in html and "p<sub>eff</sub>" in html
    assert 'id="signals"' not in html and "data-signal" not in html
    assert "Waiting for" in html and "Lab 2 · Ben" in html

    gov = Client()
    gov.post("/rejoin/", {"code": game.code, "rejoin_code": governor.rejoin_code})
    gov_html = gov.get(f"/play/{game.code}/").content.decode()
    assert 'id="governor-action"' in gov_html and "Labs are bidding" in gov_html
    assert "Value this round" not in gov_html and 'id="bid-form"' not in gov_html


def test_bid_form_takes_a_decimal_comma_and_explains_a_bad_number():
    assert BidForm({"round": "1", "amount": "0,25"}).is_valid()
    form = BidForm({"round": "1", "amount": "lots"})
    assert not form.is_valid() and form.errors["amount"] == ["Enter a number, like 0.25."]
    empty = BidForm({"round": "1", "amount": ""})
    assert not empty.is_valid() and "0 to go without a permit" in empty.errors["amount"][0]


def test_numbers_are_formatted_for_people_when_shown():
    assert (amount(0.25), amount(-0.08), amount(None)) == ("0.250", "\u22120.080", "\u2014")
    assert (signed(0.125), signed(-0.08), signed(-0.0001)) == ("+0.125", "\u22120.080", "0.000")
    assert (percent(0.53), percent(0.125), percent(0.05)) == ("53%", "12.5%", "5%")
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
    ]
    assert (clock(65.2), clock(0), clock(-3), clock(9.01)) == ("1:06", "0:00", "0:00", "0:10")


def _labs(scenario, count):
    from dataclasses import replace

    return replace(scenario.labs, count=count)


def _playing(client, scenario, **options):
    """A started game in which the ``client`` holds Lab 1 (Ana); return the game."""
    options.setdefault("human_labs", 1)
    options.setdefault("human_governor", False)
    game = new_game(scenario, **options)
    client.post("/join/", {"code": game.code, "nickname": "Ana"})
    services.game_start(game=game)
    game.refresh_from_db()
    return game


def _text(html):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", html))


@pytest.mark.django_db
def test_paused_game_says_so_and_disables_the_bid_when_paused(client, small_scenario):
    game = _playing(client, small_scenario)
    services.game_pause(game=game)
    html = client.get(f"/play/{game.code}/").content.decode()
    assert "Paused" in html and "left when resumed" in html
    assert "moves are taken again when it resumes" in html
    assert "disabled" in re.search(r'<input id="bid-amount"[^>]*>', html).group(0)
    assert "disabled" in re.search(r"<button type=\"submit\"[^>]*>Place bid", html).group(0)


@pytest.mark.django_db
def test_lab_handed_to_a_bot_is_told_so_when_the_instructor_hands_it_over(client, small_scenario):
    game = _playing(client, small_scenario)
    services.seat_hand_to_bot(seat=game.seats.get(nickname="Ana"))
    html = client.get(f"/play/{game.code}/").content.decode()
    assert "The instructor handed your lab to a bot" in html
    assert 'id="bid-form"' not in html


@pytest.mark.django_db
def test_open_seats_and_permit_holders_read_as_sentences_when_the_market_clears(
    client, small_scenario
):
    game = _playing(client, small_scenario, human_labs=2)
    lobby_like = _text(client.get(f"/play/{game.code}/").content.decode())
    assert "Lab 2 Open seat · bot plays" in lobby_like
    # Ana bids nothing; the open seat's bot bids at once, so the market clears.
    services.round_submit_bid(seat=game.seats.get(nickname="Ana"), round_no=1, amount=0.0)
    game.refresh_from_db()
    assert game.phase == "compliance"
    text = _text(client.get(f"/play/{game.code}/").content.decode())
    holders = re.search(r"Permit holders: (.*?)\. ", text).group(1)
    assert re.fullmatch(r"Lab \d, Lab \d", holders), holders
    assert "Your bid of 0.000 did not win a permit; the price was" in text


@pytest.mark.django_db
def test_fixed_price_rules_say_what_a_permit_costs_when_shown(client):
    from sim_core import load_preset

    game = _playing(client, load_preset("carbon_tax"))
    text = _text(client.get(f"/play/{game.code}/").content.decode())
    assert "Any bid of at least 0.300 buys a permit at 0.300." in text
    assert "Any bid of at least 0.300 wins and pays 0.300." in text


@pytest.mark.django_db
def test_a_join_form_sent_again_after_its_answer_was_lost_finds_the_seat(small_scenario):
    game = new_game(small_scenario)
    page = Client().get(f"/join/{game.code}/").content.decode()
    key = re.search(r'name="join_key" value="([^"]+)"', page).group(1)
    form = {"code": game.code, "nickname": "Ana", "join_key": key}

    first = Client()
    assert first.post("/join/", form).status_code == 302
    # The answer (and its session cookie) never arrived: the same form is sent again.
    again = Client()
    answer = again.post("/join/", form)
    assert answer.status_code == 302 and answer["Location"] == f"/play/{game.code}/"
    assert "Lab 1" in again.get(f"/play/{game.code}/").content.decode()
    assert game.seats.filter(nickname="Ana").count() == 1
    assert game.moves.filter(action="join").count() == 1

    # Another browser's form has its own key: the nickname is taken there.
    other_page = Client().get(f"/join/{game.code}/").content.decode()
    other_key = re.search(r'name="join_key" value="([^"]+)"', other_page).group(1)
    assert other_key != key
    taken = Client().post("/join/", {**form, "join_key": other_key})
    assert "is taken in this game" in error_of(taken, "join-nickname")


@pytest.mark.django_db
def test_an_api_join_resent_with_its_key_gets_the_same_seat(client, small_scenario):
    game = new_game(small_scenario)
    body = {"nickname": "Bot-7", "join_key": "b1f3c9e2-retry-7f4a"}
    first = client.post(f"/api/games/{game.code}/join", body, content_type="application/json")
    again = client.post(f"/api/games/{game.code}/join", body, content_type="application/json")
    assert first.status_code == again.status_code == 201
    assert again.json()["token"] == first.json()["token"]
    assert again.json()["player_id"] == first.json()["player_id"]
    unkeyed = client.post(
        f"/api/games/{game.code}/join", {"nickname": "Bot-7"}, content_type="application/json"
    )
    assert unkeyed.status_code == 409 and unkeyed.json()["code"] == "nickname_taken"
