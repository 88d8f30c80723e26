"""PermitGame's settings: one module, driven by the environment.

Every value has a default that suits local development (``make run``): SQLite in ``db.sqlite3``
at the repository root, the in-memory channel layer, ``DEBUG`` on. Production sets
``DJANGO_DEBUG=false`` and the variables below; then ``manage.py check --deploy`` is clean.

Environment (each ``DJANGO_X`` may also be given as plain ``X``: ``SECRET_KEY``, ``DEBUG``,
``ALLOWED_HOSTS``...; the prefixed name wins when both are set):
    DJANGO_DEBUG: "true" (default) or "false".
    DJANGO_SECRET_KEY: required when DEBUG is off; a fixed development key is used otherwise.
    DJANGO_ALLOWED_HOSTS: comma-separated host names (with DEBUG on, the loopback names are
        always added).
    DJANGO_CSRF_TRUSTED_ORIGINS: comma-separated origins, e.g. "https://game.example.org".
    DATABASE_URL: e.g. "postgres://user:password@host:5432/permitgame" (default: SQLite file).
    REDIS_URL: e.g. "redis://127.0.0.1:6379/0"; when set, channels-redis carries events between
        Daphne processes and the rate limits' counters are kept there (default: in-memory layer
        and cache, one process only).
    DJANGO_HTTPS: "true" (default when DEBUG is off): secure cookies, HSTS and the SSL redirect.
        Set "false" only to serve a classroom over plain HTTP on a trusted LAN.
    DJANGO_SECURE_SSL_REDIRECT: override the SSL redirect alone (default: DJANGO_HTTPS), e.g.
        "false" when the reverse proxy already redirects HTTP to HTTPS.
    DJANGO_SECURE_HSTS_SECONDS: HSTS max-age (default 31536000 when DJANGO_HTTPS, else 0).
    DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS, DJANGO_SECURE_HSTS_PRELOAD: default true with HSTS.
    DJANGO_LOG_LEVEL: root log level (default INFO).
    DJANGO_CHANNEL_CAPACITY, DJANGO_CHANNEL_EXPIRY_SECONDS, DJANGO_CHANNEL_GROUP_EXPIRY_SECONDS:
        a socket's queue of events (default 1000 messages) and the in-memory layer's expiries
        (120 s, 86400 s).
    DJANGO_HTTP_CONCURRENCY: the players' HTTP requests each process serves at once (default
        1; more wait their turn, see HTTP_CONCURRENCY); DJANGO_HTTP_OTHER_CONCURRENCY: the other
        requests (the console, its downloads, the admin) at once (default 2).
    DJANGO_DATABASE_POOL_SIZE: with PostgreSQL, the connections each process keeps in its pool
        at most (default 10; several Daphnes x this must stay under the server's
        max_connections).
    DJANGO_RATE_LIMITS: overrides of the rate limits, "name=count/seconds,..." (e.g.
        "join=5000/60"; names in permitgame/throttle.py).
"""

import datetime as dt
import os
from pathlib import Path
from typing import Any

import dj_database_url
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _getenv(name: str) -> str | None:
    """Read ``DJANGO_X``, or plain ``X`` (the names the deployment guide also accepts)."""
    value = os.environ.get(name)
    if value is None and name.startswith("DJANGO_"):
        value = os.environ.get(name.removeprefix("DJANGO_"))
    return value


def _env_bool(name: str, default: bool) -> bool:
    raw = _getenv(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def _env_list(name: str, default: list[str]) -> list[str]:
    raw = _getenv(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def _env_int(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = _getenv(name)
    if raw is None or not raw.strip():
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, not {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}")
    return value


# ---------------------------------------------------------------------------------------- core

DEBUG = _env_bool("DJANGO_DEBUG", default=True)

_DEV_SECRET_KEY = "django-insecure-permitgame-local-development-only"
SECRET_KEY = _getenv("DJANGO_SECRET_KEY") or ""
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is false")
    SECRET_KEY = _DEV_SECRET_KEY

_LOOPBACK_HOSTS = ["localhost", "127.0.0.1", "[::1]"]
# With DEBUG on (a teacher's laptop) the loopback names stay allowed beside any given host, so
# serving a classroom's network never locks the teacher's own browser out.
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", [])
if DEBUG:
    ALLOWED_HOSTS += [host for host in _LOOPBACK_HOSTS if host not in ALLOWED_HOSTS]
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves ASGI (HTTP and WebSockets)
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_htmx",
    "template_partials",
    # django-axes: locks out a username at one address after repeated wrong passwords, on the
    # instructor login and the admin's (a maintained library rather than our own counters).
    "axes",
    "permitgame",
    "permitgame.experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "csp.middleware.CSPMiddleware",
    "permitgame.middleware.NoStoreMiddleware",
    # Last, as django-axes asks: it turns a lockout during authentication into its answer.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "permitgame.urls"
ASGI_APPLICATION = "permitgame.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# ---------------------------------------------------------------------------------------- data

# Under ASGI, Channels' database_sync_to_async closes a connection around each call unless it
# is persistent. With PostgreSQL each process keeps a pool instead (Django's own, on
# psycopg_pool; a pool and CONN_MAX_AGE > 0 exclude each other): a batch of moves, a snapshot or
# a beat of the clock takes a connection and gives it back, where it would otherwise open a new
# one (a new server process on PostgreSQL's side) every time. With SQLite (`make run`) each
# thread keeps its connection for good (CONN_MAX_AGE None): opening one and reading the schema
# again cost about 2 ms of CPU on every database call, and almost all of a Daphne's are on one
# thread (Channels' thread-sensitive database_sync_to_async), the rest on a few executor threads.
DATABASE_POOL_SIZE = _env_int("DJANGO_DATABASE_POOL_SIZE", 10, minimum=1)
#: psycopg_pool's settings of each process's pool (waits up to 30 s for a free connection).
POSTGRES_POOL = {"min_size": 1, "max_size": DATABASE_POOL_SIZE, "timeout": 30}
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
        conn_health_checks=True,
    )
}
#: The embedded database's backend: Django's SQLite without DEBUG's query log (permitgame.sqlite).
SQLITE_ENGINE = "permitgame.sqlite"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["ENGINE"] = SQLITE_ENGINE
    # SQLite has no SELECT ... FOR UPDATE. Every transaction therefore begins IMMEDIATE: it takes
    # the database's write lock at its start, so a game service (which reads, then writes) runs
    # alone, as it does under PostgreSQL's row lock, across threads and server processes alike.
    # Waiting writers queue for up to `timeout` seconds; WAL lets readers go on meanwhile.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "transaction_mode": "IMMEDIATE",
            "timeout": 30,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
    DATABASES["default"]["CONN_MAX_AGE"] = None
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = dict(POSTGRES_POOL)
# The players' HTTP requests (joins, their pages, the JSON API) a server process runs at once;
# the others wait their turn on its event loop (permitgame.middleware.ConcurrencyLimit). Daphne
# runs each Django request on a thread of its own, without a limit, and the interpreter runs
# one thread at a time: a hundred students joining at once made a hundred threads take turns
# with the threads that record the moves of the rooms already playing and with the loop that
# sends their events, and those rooms' moves waited behind the joins (bench/RESULTS.md: one at a
# time gave the playing rooms' moves their answers sooner than two or three, and the joins took
# no longer). The other requests (the console, its downloads and debrief, the admin) have a lane
# of their own, HTTP_OTHER_CONCURRENCY at once, so a slow download never holds up a join.
HTTP_CONCURRENCY = _env_int("DJANGO_HTTP_CONCURRENCY", 1, minimum=1)
HTTP_OTHER_CONCURRENCY = _env_int("DJANGO_HTTP_OTHER_CONCURRENCY", 2, minimum=1)
#: Threads of each process that record the players' moves (``permitgame.movequeue``), apart
#: from the one thread its sockets' other database calls share: one with SQLite (its writers
#: take turns at the file's lock), a few with PostgreSQL (each game has its own row lock; each
#: thread holds one of the pool's connections while it records).
MOVE_THREADS = 1 if DATABASES["default"]["ENGINE"] == SQLITE_ENGINE else 3
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Channel layer. Without REDIS_URL: in-memory, which only reaches consumers in the same process
# (fine for `make run` and tests). With REDIS_URL: channels-redis's pub/sub layer
# (RedisPubSubChannelLayer). The layer carries only the hubs' messages (permitgame/hub.py): one
# reader per process, which sockets never wait on directly. Redis pushes each message to every
# process subscribed to the game, as it is published, many in one read; the core layer
# (RedisChannelLayer) hands a reader one message per blocking pop, two round trips each, and a
# busy process's hub fell a second behind a lecture hall's events that way (bench/RESULTS.md).
# What pub/sub does not do, the hubs and sockets do: a process subscribed to a game gets all its
# messages while its connection stays up; one that drops (Redis restarted, or a subscriber
# too slow for Redis's output buffer) misses those sent meanwhile, logs it, and subscribes
# again; its sockets see the gap in the seq numbers at the next event or progress beacon and
# ask for a snapshot (docs/protocol.md, "Delivery").
REDIS_URL = os.environ.get("REDIS_URL", "")
# Sized for a room of 1,000 (docs/protocol.md, "Delivery"): a socket's queue of events handed
# over by its process's hub (and, in-memory, each channel) holds the events and coalesced
# progress (O(1) per player per phase, about three progress messages a second at most) waiting
# for it; 1,000 of them means a socket that stalls for minutes, and what is dropped beyond that
# is seen as a gap in the seq numbers and mended with a snapshot. In-memory, messages older than
# two minutes are stale (the snapshot on reconnect replaces them) and a group outlives the
# longest class. Each can be set from the environment: CHANNEL_CAPACITY, CHANNEL_EXPIRY_SECONDS,
# CHANNEL_GROUP_EXPIRY_SECONDS (or with the DJANGO_ prefix). Without Redis the layer is
# permitgame.layers.InMemoryLayer: Channels' own, without the per-send expiry sweep and without
# silently dropping a socket whose message expired from every group (see that module).
CHANNEL_CAPACITY = _env_int("DJANGO_CHANNEL_CAPACITY", 1000, minimum=1)
CHANNEL_EXPIRY_SECONDS = _env_int("DJANGO_CHANNEL_EXPIRY_SECONDS", 120, minimum=1)
CHANNEL_GROUP_EXPIRY_SECONDS = _env_int("DJANGO_CHANNEL_GROUP_EXPIRY_SECONDS", 86400, minimum=1)
# A command to Redis (a publish, a subscribe) that gets no answer within this many seconds
# fails, logged, rather than holding up the thread or loop that sent it; the subscribers' reads
# wait for messages on their own, without this limit.
REDIS_SOCKET_TIMEOUT = 10.0
REDIS_CONNECT_TIMEOUT = 5.0
CHANNEL_LAYERS: dict[str, dict[str, Any]]
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {
                "hosts": [
                    {
                        "address": REDIS_URL,
                        "socket_timeout": REDIS_SOCKET_TIMEOUT,
                        "socket_connect_timeout": REDIS_CONNECT_TIMEOUT,
                    }
                ],
            },
        }
    }
else:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "permitgame.layers.InMemoryLayer",
            "CONFIG": {
                "capacity": CHANNEL_CAPACITY,
                "expiry": CHANNEL_EXPIRY_SECONDS,
                "group_expiry": CHANNEL_GROUP_EXPIRY_SECONDS,
            },
        }
    }

# ---------------------------------------------------------------------------------------- auth

AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # first: refuses a locked-out login before checking
    "django.contrib.auth.backends.ModelBackend",
]
# A username is locked out at one client address after 5 wrong passwords, for 15 minutes; the
# page answers 429 with Retry-After (permitgame.console.views.login_locked_out). Locking by
# address and username together keeps a student who types wrong passwords from locking the
# instructor out; permitgame/throttle.py also caps login attempts per address.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = dt.timedelta(minutes=15)
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_CALLABLE = "permitgame.console.views.login_locked_out"
# The address Daphne gives (behind the proxy, from X-Forwarded-For with --proxy-headers), never
# a header a client could set.
AXES_CLIENT_IP_CALLABLE = "permitgame.throttle.client_address"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# ---------------------------------------------------------------------------------------- cache

# The rate limits' counters (permitgame/throttle.py). Without REDIS_URL: this process's memory.
# With REDIS_URL: Django's Redis cache, so every Daphne process counts into the same counters;
# its connections are one pool per process (permitgame/cachepool.py), not one per request.
CACHES: dict[str, dict[str, Any]]


def redis_caches(url: str, key_prefix: str = "permitgame") -> dict[str, dict[str, Any]]:
    """The CACHES of a deployment with Redis at ``url`` (tests take theirs from here too)."""
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": key_prefix,
            "OPTIONS": {"pool_class": "permitgame.cachepool.SharedConnectionPool"},
        }
    }


if REDIS_URL:
    CACHES = redis_caches(REDIS_URL)
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


def _env_rate_limits(name: str) -> dict[str, tuple[int, int]]:
    """Read ``"join=5000/60,code_miss=30/60"`` (name=count/seconds, comma-separated)."""
    raw = _getenv(name)
    limits: dict[str, tuple[int, int]] = {}
    for item in (raw or "").split(","):
        if not item.strip():
            continue
        key, _, value = item.partition("=")
        count, _, seconds = value.partition("/")
        try:
            limits[key.strip()] = (int(count), int(seconds))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item.strip()!r} is not name=count/seconds, e.g. join=5000/60"
            ) from None
        if limits[key.strip()][0] < 1 or limits[key.strip()][1] < 1:
            raise ImproperlyConfigured(f"{name}: {item.strip()!r}: count and seconds must be >= 1")
    return limits


#: Overrides of permitgame.throttle.LIMITS: {"code_miss": (count, seconds), ...}; from the
#: environment as DJANGO_RATE_LIMITS (or RATE_LIMITS), e.g. "join=5000/60,code_miss=60/60".
RATE_LIMITS: dict[str, tuple[int, int]] = _env_rate_limits("DJANGO_RATE_LIMITS")

# ---------------------------------------------------------------------------------------- static

# Under `make run` (DEBUG) Daphne serves these through ASGIStaticFilesHandler (permitgame/asgi.py).
# In production run `manage.py collectstatic` and let the reverse proxy serve STATIC_ROOT; the
# manifest storage gives every file a content-hashed name, so the proxy may cache them forever.
STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"
        )
    },
}

# ---------------------------------------------------------------------------------------- security

HTTPS = _env_bool("DJANGO_HTTPS", default=not DEBUG)
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", default=HTTPS)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = _env_int("DJANGO_SECURE_HSTS_SECONDS", 31_536_000 if HTTPS else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
# Content-Security-Policy (django-csp): scripts and styles only from this site's own files (htmx,
# its ws extension and permitgame/*.js are static files; no inline script, handler or style, no
# eval: templates/base.html sets htmx's allowEval and includeIndicatorStyles off), sockets and
# fetches only to this origin, images from here or data:/blob: (the favicon, a chart's PNG),
# no plugins, no framing, forms post only here.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:", "blob:"],
        "connect-src": [SELF],
        "font-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

# ---------------------------------------------------------------------------------------- logging

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": _getenv("DJANGO_LOG_LEVEL") or "INFO"},
}
