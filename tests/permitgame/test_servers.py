"""The real servers the app runs on: Redis as the channel layer, PostgreSQL as the database."""

import psycopg
import pytest
from channels_redis.core import RedisChannelLayer

from tests import harness


@pytest.mark.redis
async def test_redis_channel_layer_delivers_direct_and_group_messages(redis_url):
    layer = RedisChannelLayer(hosts=[redis_url])
    try:
        channel = await layer.new_channel()
        await layer.send(channel, {"type": "game.public", "html": "<p>price 3.5</p>"})
        assert await layer.receive(channel) == {"type": "game.public", "html": "<p>price 3.5</p>"}

        await layer.group_add("game-1", channel)
        await layer.group_send("game-1", {"type": "game.advanced", "round_no": 2})
        assert await layer.receive(channel) == {"type": "game.advanced", "round_no": 2}
        await layer.group_discard("game-1", channel)
    finally:
        await layer.flush()
        await layer.close_pools()


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
