"""Background jobs: run once per key, in their own thread and connection, and always end."""

import threading

import pytest

from permitgame import jobs
from permitgame.models import Game


def test_a_key_runs_once_at_a_time_and_wait_returns_when_every_job_has_ended():
    release = threading.Event()
    ran = []

    def job(tag):
        release.wait(10)
        ran.append(tag)

    assert jobs.start("same", job, "first")
    assert not jobs.start("same", job, "second")  # still running: not started twice
    assert jobs.running() == ["same"]
    release.set()
    jobs.wait(10)
    assert ran == ["first"] and jobs.running() == []
    assert jobs.start("same", job, "third")  # ended: the key may run again
    jobs.wait(10)
    assert ran == ["first", "third"]


def test_a_job_that_raises_is_logged_and_ends(caplog):
    def broken():
        raise ValueError("no numbers today")

    assert jobs.start("broken", broken)
    jobs.wait(10)
    assert jobs.running() == []
    assert "background job broken failed" in caplog.text and "no numbers today" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_a_job_reads_and_writes_the_database_on_its_own_connection():
    seen = []

    def count_games():
        seen.append(Game.objects.count())

    jobs.start("count", count_games)
    jobs.wait(10)
    assert seen == [0]
