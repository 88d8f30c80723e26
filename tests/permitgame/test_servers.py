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
