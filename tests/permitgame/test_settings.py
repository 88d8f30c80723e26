"""Settings come from the environment, and production settings pass ``check --deploy``.

Settings are read once per process, so each case runs ``manage.py`` in a subprocess with exactly
the environment under test.
"""

import json

import pytest

from tests import harness

PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECRET_KEY": harness.random_secret_key(),
    "DJANGO_ALLOWED_HOSTS": "game.example.org",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://game.example.org",
    "DATABASE_URL": "postgres://permitgame:secret@db.example.org:5432/permitgame",
    "REDIS_URL": "redis://redis.example.org:6379/0",
}

SHOW_SETTINGS = """
import json
from django.conf import settings
db = settings.DATABASES["default"]
print(json.dumps({
    "debug": settings.DEBUG,
    "engine": db["ENGINE"], "name": str(db["NAME"]), "host": db.get("HOST", ""),
    "port": str(db.get("PORT", "")), "user": db.get("USER", ""),
    "conn_max_age": db["CONN_MAX_AGE"], "pool": "pool" in db.get("OPTIONS", {}),
    "layer": settings.CHANNEL_LAYERS["default"]["BACKEND"],
    "layer_hosts": settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("hosts", []),
    "http_concurrency": [settings.HTTP_CONCURRENCY, settings.HTTP_OTHER_CONCURRENCY],
    "allowed_hosts": settings.ALLOWED_HOSTS,
    "ssl_redirect": settings.SECURE_SSL_REDIRECT,
    "hsts": settings.SECURE_HSTS_SECONDS,
    "log_level": settings.LOGGING["root"]["level"],
}))
"""


def settings_under(env: dict[str, str]) -> dict[str, object]:
    result = harness.manage("shell", "--no-imports", "-c", SHOW_SETTINGS, env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_when_production_env_is_set():
    result = harness.manage("check", "--deploy", "--fail-level", "DEBUG", env=PRODUCTION_ENV)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output, output


def test_check_deploy_warns_when_https_is_switched_off_for_a_lan_classroom():
    env = {**PRODUCTION_ENV, "DJANGO_HTTPS": "false"}
    result = harness.manage("check", "--deploy", env=env)
    output = result.stdout + result.stderr
    for warning in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert warning in output


def test_settings_refuse_to_start_when_production_has_no_secret_key():
    env = {key: value for key, value in PRODUCTION_ENV.items() if key != "DJANGO_SECRET_KEY"}
    result = harness.manage("check", env=env)
    assert result.returncode != 0
    assert "DJANGO_SECRET_KEY must be set" in result.stderr


def test_defaults_are_sqlite_and_in_memory_layer_when_env_is_empty():
    shown = settings_under({})
    assert shown["debug"] is True
    assert shown["engine"] == "permitgame.sqlite"  # Django's SQLite, without DEBUG's query log
    assert shown["name"] == str(harness.REPO_ROOT / "db.sqlite3")
    # Each thread keeps its SQLite connection: no new connection (and schema read) per call.
    assert shown["conn_max_age"] is None and shown["pool"] is False
    assert shown["layer"] == "permitgame.layers.InMemoryLayer"
    assert shown["ssl_redirect"] is False
    assert shown["hsts"] == 0


def test_database_and_channel_layer_follow_env_when_urls_are_set():
    shown = settings_under(PRODUCTION_ENV)
    assert shown["debug"] is False
    assert shown["engine"] == "django.db.backends.postgresql"
    # A pool per process instead (the two exclude each other in Django).
    assert shown["conn_max_age"] == 0 and shown["pool"] is True
    assert (shown["host"], shown["port"], shown["user"], shown["name"]) == (
        "db.example.org",
        "5432",
        "permitgame",
        "permitgame",
    )
    # Pub/sub: Redis pushes a game's messages to each process as they are published.
    assert shown["layer"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    (host,) = shown["layer_hosts"]
    assert host["address"] == "redis://redis.example.org:6379/0"
    assert host["socket_timeout"] > 0 and host["socket_connect_timeout"] > 0
    assert shown["http_concurrency"] == [1, 2]  # the players' lane, the others'
    assert shown["allowed_hosts"] == ["game.example.org"]
    assert shown["ssl_redirect"] is True


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_settings_refuse_to_start_when_a_boolean_is_unreadable(value):
    result = harness.manage("check", env={"DJANGO_DEBUG": value})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be true or false" in result.stderr


def test_plain_variable_names_configure_production_too():
    env = {
        "DEBUG": "false",
        "SECRET_KEY": harness.random_secret_key(),
        "ALLOWED_HOSTS": "game.example.org",
        "CSRF_TRUSTED_ORIGINS": "https://game.example.org",
    }
    result = harness.manage("check", "--deploy", "--fail-level", "DEBUG", env=env)
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_a_classroom_host_keeps_the_teachers_loopback_address_when_debug_is_on():
    shown = settings_under({"DJANGO_ALLOWED_HOSTS": "192.168.1.20", "LOG_LEVEL": "DEBUG"})
    assert shown["allowed_hosts"] == ["192.168.1.20", "localhost", "127.0.0.1", "[::1]"]
    assert shown["log_level"] == "DEBUG"


def test_the_served_application_keeps_its_startup_objects_out_of_the_collectors_walks():
    # Daphne imports permitgame.asgi once per process: what exists by then (modules, settings,
    # URL patterns, template engines) is frozen, so a full collection in a busy room walks only
    # what the games made since (permitgame/asgi.py).
    script = (
        "import gc, json; before = gc.get_freeze_count(); import permitgame.asgi; "
        "print(json.dumps([before, gc.get_freeze_count(), len(gc.get_objects())]))"
    )
    result = harness.manage("shell", "--no-imports", "-c", script, env={})
    assert result.returncode == 0, result.stderr
    before, frozen, walked = json.loads(result.stdout.strip().splitlines()[-1])
    assert before == 0
    # Most of the process's objects are frozen; what a collection still walks is a fraction.
    assert frozen > 50_000
    assert walked < frozen / 5


def test_the_embedded_database_keeps_no_query_log_unless_asked_for_one():
    # DEBUG is on by default (make run), yet no query is logged: Django's SQLite backend would run
    # a second statement per query to write the log. A test that counts queries still can.
    script = (
        "import json; from django.conf import settings; from django.db import connection; "
        "from django.test.utils import CaptureQueriesContext; "
        "cursor = connection.cursor(); cursor.execute('SELECT %s', [1]); "
        "logged = len(connection.queries); "
        "captured = CaptureQueriesContext(connection); captured.__enter__(); "
        "connection.cursor().execute('SELECT %s', [2]); captured.__exit__(None, None, None); "
        "print(json.dumps([settings.DEBUG, connection.vendor, logged, len(captured)]))"
    )
    result = harness.manage("shell", "--no-imports", "-c", script, env={})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [True, "sqlite", 0, 1]
