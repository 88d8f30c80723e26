"""Response headers: a Content-Security-Policy everywhere; no-store on seats and the console."""

import pytest
from django.test import Client

from permitgame import services


@pytest.fixture
def game(small_scenario):
    return services.game_create(scenario=small_scenario, human_labs=2, human_governor=False)


@pytest.mark.django_db
def test_every_page_has_a_policy_without_inline_scripts(client, game, ana):
    client.force_login(ana)
    for path in ("/", f"/join/{game.code}/", "/accounts/login/", "/console/", "/console/new/"):
        policy = client.get(path)["Content-Security-Policy"]
        directives = {
            part.split()[0]: part.split()[1:] for part in policy.split(";") if part.strip()
        }
        assert directives["script-src"] == ["'self'"], path
        assert directives["style-src"] == ["'self'"], path
        assert directives["object-src"] == directives["frame-ancestors"] == ["'none'"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy


@pytest.mark.django_db
def test_pages_with_a_seat_or_the_console_are_not_stored(game, ana):
    student = Client()
    assert student.post("/join/", {"code": game.code, "nickname": "Ana"}).status_code == 302
    teacher = Client()
    teacher.force_login(ana)
    game.owner = ana
    game.save()
    answers = {
        "join": student.get(f"/join/?code={game.code}&x=1"),
        "play": student.get(f"/play/{game.code}/"),
        "rejoin": Client().post("/rejoin/", {"code": game.code, "rejoin_code": "NOPE"}),
        "api join": Client().post(
            f"/api/games/{game.code}/join", {"nickname": "Bo"}, content_type="application/json"
        ),
        "console": teacher.get(f"/console/games/{game.code}/"),
        "projector": teacher.get(f"/console/games/{game.code}/projector/"),
        "login": Client().get("/accounts/login/"),
    }
    for name, response in answers.items():
        assert "no-store" in response["Cache-Control"], name
        assert "private" in response["Cache-Control"], name
    assert "Cache-Control" not in Client().get("/")  # the home page holds nothing private


@pytest.mark.django_db
def test_security_headers_that_were_right_stay(client):
    response = client.get("/")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
