"""The servers of one benchmark setup, started on 127.0.0.1 and stopped on exit (even on error).

Redis and PostgreSQL come from ``tests/harness.py`` (the same throwaway servers the tests use);
Daphne processes are started here because the benchmark needs their process ids to read their
CPU time and memory from ``/proc``.
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.load import trace
from tests.harness import (
    REPO_ROOT,
    ServerFailedToStart,
    _answers_http,
    app_env,
    artifact_path,
    daphne_command,
    free_port,
    manage,
    postgres_server,
    redis_server,
    scratch_dir,
    stop_process,
    wait_until,
)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: Seconds Daphne gives the application to accept a websocket (its default is 5 s; the clients,
#: like a phone's browser, wait 30 s). On this shared machine a room filling up queues the
#: handshakes for longer than 5 s, Daphne then drops them, the clients retry and the retries
#: lengthen the queue: the benchmark measures the server with the same wait as its clients
#: (README's deployment command sets it too). Failed handshakes are still counted.
WEBSOCKET_CONNECT_TIMEOUT = 30
#: PostgreSQL's max_connections in the setups with PostgreSQL.
POSTGRES_CONNECTIONS = 250


@dataclass(frozen=True)
class Setup:
    """How a room is served: ``daphnes`` processes, with Redis and PostgreSQL or not."""

    name: str
    label: str
    daphnes: int
    redis_postgres: bool


SETUPS = {
    "one": Setup("one", "1 Daphne, in-memory layer, SQLite", 1, False),
    "two": Setup("two", "2 Daphnes, Redis, PostgreSQL", 2, True),
    "four": Setup("four", "4 Daphnes, Redis, PostgreSQL", 4, True),
}


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` so far (from ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


#: The database servers' process names.
DATABASES = ("postgres", "redis-server")


def database_cpu_seconds() -> float:
    """User + system CPU of every PostgreSQL and Redis process on the machine so far."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() in DATABASES:
                total += process_cpu_seconds(int(entry.name))
        except OSError:  # the process ended meanwhile
            continue
    return total


@dataclass
class Daphne:
    process: subprocess.Popen[Any]
    url: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def cpu_seconds(self) -> float:
        """User + system CPU time of the process so far."""
        return process_cpu_seconds(self.process.pid)

    def peak_rss_mib(self) -> float:
        """The process's resident-set high-water mark (VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class Servers:
    setup: Setup
    env: dict[str, str]
    game: list[Daphne] = field(default_factory=list)
    floor: list[Daphne] = field(default_factory=list)


@dataclass(frozen=True)
class CpuTimes:
    """CPU seconds so far (user + system) of a setup's game servers, of its PostgreSQL and
    Redis (none in the embedded setup) and of this process, whose clients play every seat."""

    servers: float
    databases: float
    client: float

    @classmethod
    def now(cls, served: Servers) -> CpuTimes:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            servers=sum(d.cpu_seconds() for d in served.game),
            databases=database_cpu_seconds() if served.setup.redis_postgres else 0.0,
            client=own.ru_utime + own.ru_stime,
        )

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(
            self.servers - other.servers,
            self.databases - other.databases,
            self.client - other.client,
        )


def _start_daphne(app: str, env: dict[str, str], workdir: Path, name: str) -> Daphne:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = workdir / f"{name}.log"
    with log.open("wb") as log_file:
        process = subprocess.Popen(
            daphne_command(port, app, connect_timeout=WEBSOCKET_CONNECT_TIMEOUT),
            cwd=REPO_ROOT,
            env=app_env(env),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    daphne = Daphne(process, url, log)
    try:
        wait_until(lambda: _answers_http(url + "/"), what=name, process=process, log=log)
    except BaseException:
        stop_process(process)
        raise
    return daphne


def _production_env() -> dict[str, str]:
    """Settings of a deployment behind several processes (DEBUG off, plain HTTP on loopback)."""
    return {
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "DJANGO_HTTPS": "false",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_LOG_LEVEL": "WARNING",
    }


@contextlib.contextmanager
def serve(setup: Setup, *, trace_to: Path | None = None) -> Iterator[Servers]:
    """Start the setup's databases, game Daphnes and floor Daphnes; stop them all on exit."""
    with contextlib.ExitStack() as stack:
        workdir = stack.enter_context(scratch_dir("permitgame-bench-load-"))
        if setup.redis_postgres:
            redis_url = stack.enter_context(redis_server())
            # Every join request runs in a thread of its own with its own connection (Django's
            # ASGI handler), and a hundred join at once (clients.JOINING_AT_ONCE), queued on the
            # game's row lock while they hold it: the tests' 50 would refuse some with "too
            # many clients" (a 500). A deployment sizes this, or puts a pooler in front.
            postgres = postgres_server(max_connections=POSTGRES_CONNECTIONS)
            database_url = stack.enter_context(postgres)
            env = {**_production_env(), "DATABASE_URL": database_url, "REDIS_URL": redis_url}
            # The floor's groups live in another Redis database of the same server.
            floor_env = {**env, "REDIS_URL": redis_url.rsplit("/", 1)[0] + "/1"}
        else:
            # What `make run` uses: DEBUG on, SQLite, the in-memory layer.
            env = {
                "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
                "DJANGO_LOG_LEVEL": "WARNING",
            }
            floor_env = {**env, "DATABASE_URL": f"sqlite:///{workdir / 'floor.sqlite3'}"}
        result = manage("migrate", "--no-input", env=env)
        if result.returncode != 0:
            raise ServerFailedToStart(f"migrate failed:\n{result.stdout}\n{result.stderr}")
        if setup.redis_postgres:
            # As a deployment does (README): without it every page (the readiness probe's "/")
            # fails on the missing static manifest with DEBUG off.
            result = manage("collectstatic", "--no-input", env=env)
            if result.returncode != 0:
                raise ServerFailedToStart(f"collectstatic failed:\n{result.stderr}")
        servers = Servers(setup, env)
        # ``trace_to``: the game servers write their steps there (``bench.load.trace``).
        game_app, game_env = (
            ("permitgame.asgi:application", env)
            if trace_to is None
            else (trace.APPLICATION, {**env, trace.FOLDER_VARIABLE: str(trace_to)})
        )
        for index in range(setup.daphnes):
            daphne = _start_daphne(game_app, game_env, workdir, f"game-{index}")
            stack.callback(stop_process, daphne.process)
            servers.game.append(daphne)
        for index in range(setup.daphnes):
            daphne = _start_daphne(
                "bench.load.floor_asgi:application", floor_env, workdir, f"floor-{index}"
            )
            stack.callback(stop_process, daphne.process)
            servers.floor.append(daphne)
        yield servers


#: A line of a server's log that someone should read: a warning, an error, a traceback.
PROBLEM = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|^Traceback")


def keep_logs(served: Servers, name: str) -> tuple[Path, int]:
    """Copy the game servers' logs to ``artifacts/bench-load-logs/<name>/`` (the last run's).

    Returns the folder and how many of their lines are warnings, errors or tracebacks: a lost
    event is found there (two were, by the layer's errors and by their absence).
    """
    folder = artifact_path("bench-load-logs") / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    problems = 0
    for daphne in served.game:
        shutil.copy(daphne.log, folder / daphne.log.name)
        text = daphne.log.read_text(errors="replace")
        problems += sum(1 for line in text.splitlines() if PROBLEM.search(line))
    return folder, problems


@dataclass(frozen=True)
class Games:
    """The games made for a repeat: their join codes, and the instructor's session cookie if
    their consoles are to be open (``--console``)."""

    codes: list[str]
    console_cookie: str | None = None


def create_games(
    servers: Servers, *, labs: int, games: int, rounds: int, console: bool = False
) -> Games:
    """Create ``games`` games of ``labs`` human labs and a human governor.

    ``console``: the games belong to an instructor, whose session cookie comes with them.
    """
    import json

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.load.gamectl",
            "--labs",
            str(labs),
            "--games",
            str(games),
            "--rounds",
            str(rounds),
            *(["--console"] if console else []),
        ],
        cwd=REPO_ROOT,
        env=app_env(servers.env),
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"creating the games failed:\n{result.stdout}\n{result.stderr}")
    made = json.loads(result.stdout.strip().splitlines()[-1])
    return Games(list(made["codes"]), made["console_cookie"])


def tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""
