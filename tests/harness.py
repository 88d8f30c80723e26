"""Real servers for tests: Redis, PostgreSQL, Daphne, and a Chromium for Playwright.

Each server is a context manager that starts the real program on 127.0.0.1 on a free port, waits
until it answers, yields how to reach it, and stops it (and everything it started) on exit, even
when the test fails. ``tests/conftest.py`` wraps them in thin session-scoped fixtures; a test that
needs its own instance (two Daphne processes sharing one Redis, say) uses these directly.

Nothing here reaches beyond loopback, and nothing downloads anything: the programs come from the
system (``make sysdeps``), Chromium included.
"""

from __future__ import annotations

import atexit
import contextlib
import glob
import json
import os
import pwd
import secrets
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS_DIR = REPO_ROOT / "artifacts"

#: The viewports every new screen is looked at in: a phone, and the projector in the lecture hall.
PHONE = {"width": 375, "height": 812}
PROJECTOR = {"width": 1920, "height": 1080}

# Chromium flags: no sandbox (we run as root in CI), and no background traffic to Google's
# services, which this machine's closed network would refuse over and over.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# Variables that configure the app; a child server gets only the ones a test passes explicitly,
# so a developer's own REDIS_URL or DATABASE_URL never leaks into a test.
APP_ENV_PREFIXES = ("DJANGO_", "DATABASE_URL", "REDIS_URL")

STARTUP_TIMEOUT = 30.0


class ServerFailedToStart(RuntimeError):
    """A server exited or did not answer in time; the message carries its log."""


# ---- helpers


def daphne_command(
    port: int, app: str = "permitgame.asgi:application", *, connect_timeout: int | None = None
) -> list[str]:
    """Return the command line of a Daphne serving ``app`` on 127.0.0.1:``port``."""
    command = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port)]
    if connect_timeout is not None:
        command += ["--websocket_connect_timeout", str(connect_timeout)]
    return [*command, app]


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def require_program(name: str) -> str:
    """Return the path of a system program, or fail with how to install it."""
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed: run `make sysdeps`")
    return path


def app_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return this process's environment minus app settings, plus ``overrides``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(APP_ENV_PREFIXES)}
    env["DJANGO_SETTINGS_MODULE"] = "permitgame.settings"
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides or {})
    return env


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def wait_until(
    ready: Callable[[], bool],
    *,
    what: str,
    process: subprocess.Popen[Any] | None = None,
    log: Path | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    """Poll ``ready`` until it returns true; fail early if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServerFailedToStart(
                f"{what} exited with {process.returncode}:\n{_tail(log) if log else ''}"
            )
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.05)
    raise ServerFailedToStart(
        f"{what} did not answer in {timeout:.0f}s:\n{_tail(log) if log else ''}"
    )


def stop_process(process: subprocess.Popen[Any], *, timeout: float = 10.0) -> None:
    """Stop a process started with ``start_new_session=True`` and every process in its group."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=timeout)
    # Children that outlived the leader (none expected) go too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """Yield a fresh directory under the system temp dir and delete it afterwards."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ---- Redis


def _redis_answers_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
        sock.sendall(b"PING\r\n")
        return sock.recv(64).startswith(b"+PONG")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Run a throwaway ``redis-server`` on loopback; yield ``redis://127.0.0.1:PORT/0``."""
    binary = require_program("redis-server")
    with scratch_dir("permitgame-redis-") as workdir:
        port = free_port()
        log = workdir / "redis.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(port),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(workdir),
                    "--daemonize",
                    "no",
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: _redis_answers_ping(port), what="redis-server", process=process, log=log
            )
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            stop_process(process)


# ---- PostgreSQL


def postgres_bindir() -> Path:
    """Return the directory holding ``initdb``, ``pg_ctl`` and ``postgres``.

    They are on PATH on some machines (symlinks in /usr/local/bin) and only in Debian's
    /usr/lib/postgresql/<version>/bin on others.
    """
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).resolve().parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parent.parent.name),
    )
    if not candidates:
        raise FileNotFoundError("PostgreSQL server binaries are not installed: run `make sysdeps`")
    return Path(candidates[-1]).parent


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Return the user to run PostgreSQL as when we are root (initdb refuses root), else None."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("running as root and there is neither a 'postgres' nor a 'nobody' user")


def _run_as(user: pwd.struct_passwd | None) -> dict[str, Any]:
    """Return Popen keyword arguments that drop root to ``user`` (all groups included)."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _postgres_accepts_connections(port: int) -> bool:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=port, user="permitgame", dbname="postgres", connect_timeout=1
    ):
        return True


@contextlib.contextmanager
def postgres_server(max_connections: int = 50) -> Iterator[str]:
    """Run a throwaway PostgreSQL cluster on loopback; yield its ``postgres://`` URL.

    ``max_connections``: the server's limit (the load benchmark's several Daphnes, each with a
    connection per request thread, need more than the tests).

    ``initdb`` into a fresh temp directory, ``pg_ctl start`` on a free port on 127.0.0.1 with the
    Unix socket in that directory, create a ``permitgame`` database owned by the ``permitgame``
    superuser (trust authentication: loopback only, and gone after the session). As root, the
    cluster runs as the ``postgres`` system user (or ``nobody``), because PostgreSQL refuses root.
    Durability is switched off: it is a test server.
    """
    bindir = postgres_bindir()
    user = _unprivileged_user()
    with scratch_dir("permitgame-pg-") as workdir:
        datadir, socketdir, log = workdir / "data", workdir / "socket", workdir / "postgres.log"
        socketdir.mkdir()
        log.touch()
        if user is not None:
            # mkdtemp made workdir 0700 for root; hand the whole tree to the server's user.
            for path in (workdir, socketdir, log):
                os.chown(path, user.pw_uid, user.pw_gid)
        env = {**os.environ, "HOME": str(workdir), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
        as_user = _run_as(user)

        def run(*args: str) -> None:
            result = subprocess.run(
                args,
                cwd=workdir,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
                stdin=subprocess.DEVNULL,
                check=False,
                **as_user,
            )
            if result.returncode != 0:
                raise ServerFailedToStart(
                    f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n"
                    f"{result.stderr}\n{_tail(log)}"
                )

        run(
            str(bindir / "initdb"),
            "-D",
            str(datadir),
            "-U",
            "permitgame",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )
        port = free_port()
        options = (
            f"-h 127.0.0.1 -p {port} -k {socketdir} -c fsync=off -c synchronous_commit=off "
            f"-c full_page_writes=off -c max_connections={max_connections}"
        )
        pg_ctl = str(bindir / "pg_ctl")
        try:
            run(
                pg_ctl, "start", "-w", "-t", "60", "-D", str(datadir), "-l", str(log), "-o", options
            )
            wait_until(lambda: _postgres_accepts_connections(port), what="postgres", log=log)
            import psycopg

            with psycopg.connect(
                host="127.0.0.1", port=port, user="permitgame", dbname="postgres", autocommit=True
            ) as connection:
                connection.execute("CREATE DATABASE permitgame")
            yield f"postgres://permitgame@127.0.0.1:{port}/permitgame"
        finally:
            # pg_ctl daemonises the server, so it is not our child: stop it through pg_ctl.
            if (datadir / "postmaster.pid").exists():
                try:
                    run(pg_ctl, "stop", "-w", "-t", "30", "-D", str(datadir), "-m", "fast")
                except ServerFailedToStart:
                    run(pg_ctl, "stop", "-w", "-t", "30", "-D", str(datadir), "-m", "immediate")


# ---- Django / Daphne


def manage(
    *args: str, env: Mapping[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python manage.py ARGS`` in a subprocess with exactly ``app_env(env)``."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "manage.py"), *args],
        cwd=REPO_ROOT,
        env=app_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def python_module(
    module: str, *args: str, cwd: Path = REPO_ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module ARGS`` in checkout ``cwd`` with this interpreter and ``app_env()``."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=app_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


class ManageProcess:
    """Run ``manage.py`` commands for one server's settings in one long-lived process.

    Each ``manage.py`` start sets Django up again (about 1.5 s of CPU); the browser tests make
    their users and games with a few dozen commands, so each server gets one process
    (``tests/manage_loop.py``) that runs them one after the other, with the same argument parsing
    as the command line, and answers as ``manage`` does. Tests of a command's own start-up (its
    settings from the environment, its exit) run it with ``manage``.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = dict(env)
        self._process: subprocess.Popen[str] | None = None  # started by the first command
        self._log = Path(tempfile.mkdtemp(prefix="permitgame-manage-")) / "manage.log"

    def _started(self) -> subprocess.Popen[str]:
        if self._process is None:
            self._log.parent.mkdir(exist_ok=True)
            with self._log.open("ab") as log_file:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "tests.manage_loop"],
                    cwd=REPO_ROOT,
                    env=app_env(self._env),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log_file,
                    text=True,
                    encoding="utf-8",
                    start_new_session=True,
                )
        return self._process

    def __call__(
        self, *args: str, environ: Mapping[str, str] | None = None, timeout: float = 300
    ) -> subprocess.CompletedProcess[str]:
        """Run ``manage.py ARGS``; ``environ``: variables the command reads, for it alone."""
        process = self._started()
        assert process.stdin is not None and process.stdout is not None
        request = {"argv": list(args), "environ": dict(environ or {})}
        process.stdin.write(json.dumps(request) + "\n")
        process.stdin.flush()
        ready, _, _ = select.select([process.stdout], [], [], timeout)
        line = process.stdout.readline() if ready else ""
        if not line:
            log = _tail(self._log)
            self.close()
            raise ServerFailedToStart(f"manage.py {' '.join(args)} did not answer:\n{log}")
        answer = json.loads(line)
        return subprocess.CompletedProcess(
            ["manage.py", *args], answer["returncode"], answer["stdout"], answer["stderr"]
        )

    def close(self) -> None:
        """Stop the process (closing its input ends it; a stuck one is killed)."""
        process, self._process = self._process, None
        if process is not None:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stop_process(process)
            if process.stdout is not None:
                process.stdout.close()
        shutil.rmtree(self._log.parent, ignore_errors=True)


@contextlib.contextmanager
def manage_process(env: Mapping[str, str]) -> Iterator[ManageProcess]:
    """Yield a ``ManageProcess`` for ``env``; stop it on exit."""
    process = ManageProcess(env)
    try:
        yield process
    finally:
        process.close()


def sqlite_database_url(directory: Path) -> str:
    """Return a DATABASE_URL for a fresh SQLite file in ``directory``."""
    return f"sqlite:///{directory / 'db.sqlite3'}"


_migrated_template: Path | None = None


def _template_database() -> Path:
    """Return a SQLite file migrated once per test process (deleted when the process exits)."""
    global _migrated_template
    if _migrated_template is None:
        directory = Path(tempfile.mkdtemp(prefix="permitgame-migrated-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        result = manage(
            "migrate", "--no-input", env={"DATABASE_URL": sqlite_database_url(directory)}
        )
        if result.returncode != 0:
            raise ServerFailedToStart(f"migrate failed:\n{result.stdout}\n{result.stderr}")
        _migrated_template = directory / "db.sqlite3"
    return _migrated_template


def migrated_sqlite(directory: Path) -> str:
    """Put a migrated SQLite file in ``directory``; return its DATABASE_URL.

    ``manage.py migrate`` runs once per test process; every later database is a copy of that
    one (a copy takes milliseconds, a migration seconds).
    """
    template = _template_database()
    # SQLite's backup: a consistent copy, whatever the journal mode.
    with (
        contextlib.closing(sqlite3.connect(template)) as source,
        contextlib.closing(sqlite3.connect(directory / "db.sqlite3")) as copy,
    ):
        source.backup(copy)
    return sqlite_database_url(directory)


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True  # any HTTP answer means the server is up


@contextlib.contextmanager
def daphne_server(env: Mapping[str, str], *, migrate: bool = True) -> Iterator[str]:
    """Serve ``permitgame.asgi:application`` with real Daphne on loopback; yield its base URL.

    Args:
        env: app settings for the server (``DATABASE_URL``, ``REDIS_URL``, ``DJANGO_*``); the
            rest of the environment is inherited, minus any app settings of the caller's own.
        migrate: run ``manage.py migrate`` with the same env first.

    Yields:
        ``http://127.0.0.1:PORT`` (no trailing slash).
    """
    if migrate:
        url = env.get("DATABASE_URL", "")
        if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
            migrated_sqlite(Path(url.removeprefix("sqlite:///")).parent)
        else:
            result = manage("migrate", "--no-input", env=env)
            if result.returncode != 0:
                raise ServerFailedToStart(f"migrate failed:\n{result.stdout}\n{result.stderr}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with scratch_dir("permitgame-daphne-") as workdir:
        log = workdir / "daphne.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                daphne_command(port),
                cwd=REPO_ROOT,
                env=app_env(env),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            wait_until(
                lambda: _answers_http(base_url + "/"), what="daphne", process=process, log=log
            )
            yield base_url
        finally:
            stop_process(process)


@dataclass(frozen=True)
class LiveServer:
    """A Daphne server on a SQLite file: its address, its settings, the file itself, and
    ``manage``, which runs ``manage.py`` commands on the same settings (``ManageProcess``)."""

    base_url: str
    env: dict[str, str]
    database: Path
    manage: ManageProcess


@contextlib.contextmanager
def live_server(extra_env: Mapping[str, str] | None = None) -> Iterator[LiveServer]:
    """Serve the app from a freshly migrated SQLite file in a temp dir."""
    with scratch_dir("permitgame-live-") as workdir:
        env = {"DATABASE_URL": migrated_sqlite(workdir), **(extra_env or {})}
        with daphne_server(env, migrate=False) as base_url, manage_process(env) as commands:
            yield LiveServer(base_url, env, workdir / "db.sqlite3", commands)


@contextlib.contextmanager
def migrated_sqlite_daphne(extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """Serve the app from a freshly migrated SQLite file in a temp dir; yield its base URL."""
    with live_server(extra_env) as server:
        yield server.base_url


# ---- Chromium


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Launch Debian's Chromium headless through Playwright's sync API; yield the Browser."""
    from playwright.sync_api import sync_playwright

    executable = require_program("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def second_window(page: Any, viewport: Mapping[str, int]) -> Any:
    """Open a page in a window of its own, logged in as ``page`` is (the same session cookie).

    An instructor's console and projector are two windows, each on a screen. Not a second tab
    of ``page``'s context: Chromium shows one tab of a window and runs no animation frames in
    the one behind, and every Playwright click there waits about a second for frames that do
    not come. Close it with ``page.context.close()``.
    """
    context = page.context.browser.new_context(
        viewport=dict(viewport), storage_state=page.context.storage_state()
    )
    return context.new_page()


def artifact_path(name: str) -> Path:
    """Return ``artifacts/<name>`` (git-ignored), creating the directory."""
    ARTIFACTS_DIR.mkdir(exist_ok=True)
    return ARTIFACTS_DIR / name


#: Set (to anything but "" or "0") to save the browser tests' screenshots in ``artifacts/``.
SCREENSHOTS_ENV = "PERMITGAME_SCREENSHOTS"


def screenshots_wanted() -> bool:
    """Whether this run saves screenshots (``PERMITGAME_SCREENSHOTS=1``)."""
    return os.environ.get(SCREENSHOTS_ENV, "") not in ("", "0")


def screenshot(page: Any, name: str, *, full_page: bool = True) -> None:
    """Save ``artifacts/<name>`` of ``page`` when screenshots are wanted, else nothing.

    The screenshots are for people to look at (new screens, at a phone's and a projector's
    size); no test reads them back, and each costs Chromium a full render and a PNG encoding,
    about a third of the browser tests' time. ``make test`` leaves them off;
    ``PERMITGAME_SCREENSHOTS=1 make test`` (or pytest) saves them all. What a test asserts
    about the page (nothing wider than the phone, say) it asserts either way.
    """
    if screenshots_wanted():
        page.screenshot(path=artifact_path(name), full_page=full_page)


def random_secret_key() -> str:
    """Return a strong throwaway SECRET_KEY for production-mode settings in tests."""
    return secrets.token_urlsafe(50)
