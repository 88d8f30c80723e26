"""PostgreSQL as the database: the migrations apply to a real server, and the PostgreSQL pass
(``pytest --postgres``, which ``make test`` runs over the service and whole-game tests) really
puts the test database on it.

The app's own events over Redis are tested end to end in ``test_processes.py`` (two Daphne
processes sharing one redis-server).
"""

import psycopg
import pytest

from tests import harness


@pytest.mark.postgres
@pytest.mark.slow
def test_migrate_creates_every_table_when_database_is_real_postgres(postgres_url):
    result = harness.manage("migrate", "--no-input", env={"DATABASE_URL": postgres_url})
    assert result.returncode == 0, result.stdout + result.stderr

    with psycopg.connect(postgres_url) as connection:
        tables = {
            row[0]
            for row in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
        }
        applied = connection.execute("SELECT count(*) FROM django_migrations").fetchone()
    assert {"django_migrations", "auth_user", "django_session"} <= tables
    assert applied is not None and applied[0] > 0

    again = harness.manage("migrate", "--no-input", env={"DATABASE_URL": postgres_url})
    assert again.returncode == 0
    assert "No migrations to apply." in again.stdout


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_postgres_pass_runs_the_database_tests_on_postgresql():
    from django.db import connection

    assert connection.vendor == "postgresql"


@pytest.mark.postgres
@pytest.mark.slow
def test_a_daphne_on_postgresql_keeps_its_connections_in_a_pool(postgres_url, tmp_path):
    # Every database call of the sockets (a connection, a snapshot, a batch of moves, the
    # clock's beat) takes a connection from the process's pool and gives it back: a whole game
    # opens a handful of sessions on the server, not one per call.
    import asyncio

    from permitgame.client import Player, join
    from tests.permitgame.test_processes import create_game, daphne

    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute("CREATE DATABASE pooled")
    url = postgres_url.rsplit("/", 1)[0] + "/pooled"
    env = {"DATABASE_URL": url, "DJANGO_DATABASE_POOL_SIZE": "4"}
    assert harness.manage("migrate", "--no-input", env=env).returncode == 0
    code = create_game(env, tmp_path, "--labs", "4", "--human-labs", "3")

    def sessions() -> int:
        with psycopg.connect(postgres_url) as connection:
            row = connection.execute(
                "SELECT sessions FROM pg_stat_database WHERE datname = 'pooled'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    async def play(base_url: str) -> list[dict]:
        players = [Player(join(base_url, code, f"p{i}")) for i in range(3)]
        return await asyncio.wait_for(asyncio.gather(*(p.play() for p in players)), 120)

    with daphne(env, tmp_path) as (_, base_url):
        before = sessions()
        results = asyncio.run(play(base_url))
        during = sessions() - before
    assert all(result["type"] == "game_over" for result in results)
    # Three sockets' connections and snapshots, two rounds of moves, the clock's beats: dozens
    # of database calls, within the pool's four connections (and a reconnect or two).
    assert during <= 8, during
