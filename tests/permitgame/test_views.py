"""The placeholder home page, through Django's test client."""

import pytest
from django.core.management import call_command


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
