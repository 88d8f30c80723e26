"""The placeholder home page, through Django's test client."""

import pytest
from django.core.management import call_command

from permitgame.models import Game, Status


@pytest.mark.django_db
def test_home_page_names_the_game_when_requested(client):
    response = client.get("/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "<h1>PermitGame</h1>" in content
    assert "/static/vendor/htmx/htmx.min.js" in content
    assert '<meta name="viewport"' in content


@pytest.mark.django_db
def test_demo_command_prints_where_to_go_when_run(capsys):
    call_command("demo", "--base-url", "http://127.0.0.1:9999/")
    out = capsys.readouterr().out
    assert "http://127.0.0.1:9999/ " in out


@pytest.mark.django_db
def test_demo_gives_the_instructor_a_login_and_a_finished_class_to_debrief(
    client, capsys, settings
):
    settings.DEBUG = True
    call_command("demo", "--base-url", "http://127.0.0.1:9999")
    out = capsys.readouterr().out
    assert "Log in as demo / permitgame-demo" in out
    debrief = next(line for line in out.splitlines() if "/debrief/" in line).split()[-1]
    path = debrief.removeprefix("http://127.0.0.1:9999")

    code = path.split("/")[-3]
    played = Game.objects.get(code=code)
    assert played.status == Status.FINISHED
    assert played.records.count() == played.rounds
    login = client.post("/accounts/login/", {"username": "demo", "password": "permitgame-demo"})
    assert login.status_code == 302
    console = client.get("/console/").content.decode()
    assert console.count("Demo class (played by bots)") == 1

    call_command("demo", "--base-url", "http://127.0.0.1:9999")
    assert path in capsys.readouterr().out  # the same class again, not a second one
