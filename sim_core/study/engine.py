"""Playing a study: its points cut into chunks, run here, in local processes or on Dask.

Here: ``ChunkTask`` and ``run_chunk`` (play one chunk of points, every replicate, and return its
table columns), ``chunk_tasks`` (the study cut into chunks), ``run_study`` (run the missing
chunks on one of three executors, write each finished chunk at once, then the tidy table) and
``StudyResult``. Not here: the document (``document.py``), the statistics and figures
(``analysis.py``).

Every point is played by the sweep's batched rules: engine ``cell`` hands a chunk's points to
``batch.play_cells`` exactly as the heatmap does (points that share everything but P and p_eff
are cells of one batch, in blocks of ``sweep.BLOCK_ELEMENTS``); engine ``game`` plays each point
with ``run_game`` (``resolve_round``, every rule, signals and audits included). Nothing is
reimplemented.

Reproducibility: common random numbers, as in the sweep. Replicate j of every point is the game
seeded ``replicate_seed(study seed, j)``; a point's numbers depend on its own scenario, P and
p_eff and on those seeds only, never on its chunk, its neighbours, its worker or a resume.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sim_core.arrays import FloatArray
from sim_core.batch import (
    ReplicateDraws,
    cell_scenario,
    play_cells,
    replicate_draws,
    wealth_plan,
)
from sim_core.metrics import METRICS
from sim_core.params import Scenario, scenario_to_dict
from sim_core.study.document import (
    CELL_FACTORS,
    Study,
    StudyError,
    apply_overrides,
    point_digest,
    require,
)
from sim_core.sweep import BLOCK_ELEMENTS, replicate_seed
from sim_core.theory import p_eff as effective_detection

#: A callback told how many points are done, out of how many.
Progress = Callable[[int, int], None]
#: Table columns of a chunk: name -> one value per (point, replicate) row.
Columns = dict[str, np.ndarray[Any, Any]]
#: Lab-rounds per chunk (engine cell): about a second of one core's work, so that a scheduler's
#: cost per task (milliseconds) stays far below 10 % (bench/RESULTS.md).
CHUNK_LAB_ROUNDS = 1 << 25
#: The same for engine game, whose games run round by round through the resolver.
GAME_CHUNK_LAB_ROUNDS = 1 << 17
#: At least this many chunks when the study has that many points, so that workers share them.
MIN_CHUNKS = 16
MANIFEST = "study.json"
RESULTS = "results.parquet"
CHUNKS = "chunks"


@dataclass(frozen=True, slots=True)
class ChunkTask:
    """One chunk: the study and the rows of its points in the design.

    Attributes:
        study: the study.
        index: the chunk's number (its file name).
        first: the first point's index in the design.
        unit: (points, factors) the chunk's rows of ``Study.unit_points``.
    """

    study: Study
    index: int
    first: int
    unit: FloatArray = field(repr=False)

    @property
    def points(self) -> int:
        """Return the number of points in the chunk."""
        return int(self.unit.shape[0])


def point_scenario(study: Study, values: dict[str, Any]) -> tuple[Scenario, float, float]:
    """Return a point's scenario and its cell's P and p_eff (MODEL.md §9).

    P and p_eff are the point's factors when the study has them, otherwise the scenario's own:
    P = K + φ + R and p_eff = p_s + (1 − p_s)·p_b with the scenario's β, π1, π0 and p_b.
    """
    overrides = {key: value for key, value in values.items() if key not in CELL_FACTORS}
    scenario = apply_overrides(study.scenario, overrides) if overrides else study.scenario
    audit = scenario.audit
    punishment = float(values.get("P", audit.punishment))
    detection = float(
        values.get(
            "p_eff",
            effective_detection(audit.beta, audit.high_prob, audit.base_prob, audit.backcheck_prob),
        )
    )
    return scenario, punishment, detection


def study_seeds(study: Study) -> tuple[int, ...]:
    """Return each replicate's game seed (the same for every point: common random numbers)."""
    return tuple(replicate_seed(study.seed, j) for j in range(study.replicates))


#: Keys of the labs section that ``batch.replicate_draws`` does not read.
DRAWLESS = frozenset({"racing_value", "endowment"})
#: Draws of the last few populations a process played (a worker's chunks usually share them).
_DRAWS: OrderedDict[str, ReplicateDraws] = OrderedDict()
_DRAWS_KEPT = 4


def _draws(scenario: Scenario, seeds: tuple[int, ...], dtype: np.dtype[Any]) -> ReplicateDraws:
    """Return the replicates' draws, kept per population: what ``replicate_draws`` reads.

    The racing value and the endowment draw nothing, so points that differ only by them (or by
    P, p_eff, the market or the welfare) share one population's draws.
    """
    labs = scenario_to_dict(scenario)["labs"]
    population = {key: value for key, value in labs.items() if key not in DRAWLESS}
    key = json.dumps([population, scenario.rounds, seeds, dtype.name], sort_keys=True)
    if key in _DRAWS:
        _DRAWS.move_to_end(key)
        return _DRAWS[key]
    draws = replicate_draws(scenario, seeds=seeds, rounds=scenario.rounds, dtype=dtype)
    _DRAWS[key] = draws
    while len(_DRAWS) > _DRAWS_KEPT:
        _DRAWS.popitem(last=False)
    return draws


def _play_cell_points(
    study: Study, points: list[tuple[Scenario, float, float]], seeds: tuple[int, ...]
) -> FloatArray:
    """Play points through ``play_cells``; return (points, R, len(METRICS))."""
    dtype = np.dtype(study.precision)
    out = np.empty((len(points), len(seeds), len(METRICS)))
    groups: dict[str, list[int]] = {}
    rules_of: dict[int, str] = {}  # points of one scenario object share it: written once
    for index, (scenario, _, _) in enumerate(points):
        if id(scenario) not in rules_of:
            document = scenario_to_dict(scenario)
            rules = [document[key] for key in ("labs", "market", "welfare", "rounds")]
            rules_of[id(scenario)] = json.dumps(rules, sort_keys=True)
        groups.setdefault(rules_of[id(scenario)], []).append(index)
    for members in groups.values():
        scenario = points[members[0]][0]
        draws = _draws(scenario, seeds, dtype)
        punishments = np.array([points[i][1] for i in members])
        p_effs = np.array([points[i][2] for i in members])
        indices = np.array(members)
        size = max(1, BLOCK_ELEMENTS // (scenario.labs.count * len(seeds)))
        # As the sweep does: cells of one wealth plan together, in blocks of equal size, so that
        # ``play_cells`` plays each block in one go. Only speed depends on it, never a number.
        plan = wealth_plan(scenario, punishments, p_effs, rounds=scenario.rounds)
        order = np.lexsort((p_effs, punishments, plan))
        for mode in sorted(set(plan.tolist())):
            cells = order[plan[order] == mode]
            for block in np.array_split(cells, -(-cells.size // size)):
                values = play_cells(
                    scenario, draws, punishments=punishments[block], p_effs=p_effs[block]
                )
                out[indices[block]] = values.transpose(1, 0, 2)
    return out


def _play_game_points(
    study: Study, points: list[tuple[Scenario, float, float]], seeds: tuple[int, ...]
) -> FloatArray:
    """Play every point and replicate with ``run_game`` (every rule of the game)."""
    from sim_core.simulate import run_game

    cell = any(factor.key in CELL_FACTORS for factor in study.factors)
    out = np.empty((len(points), len(seeds), len(METRICS)))
    for index, (scenario, punishment, detection) in enumerate(points):
        game = cell_scenario(scenario, punishment=punishment, p_eff=detection) if cell else scenario
        for replicate, seed in enumerate(seeds):
            summary = run_game(game, seed=seed).summary
            out[index, replicate] = [summary[name] for name in METRICS]
    return out


def _keep_freed_memory() -> None:
    """Keep freed memory for reuse in this process, as ``python -m sim_core`` does (speed only).

    A chunk allocates and frees arrays of a few hundred KiB many times a round; returned to the
    kernel at once (Dask's nanny even asks glibc to trim at 64 KiB), they cost page faults.
    """
    global _TUNED
    if _TUNED or not sys.platform.startswith("linux"):
        return
    _TUNED = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return
    mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD


_TUNED = False


def run_chunk(task: ChunkTask) -> Columns:
    """Play one chunk: every point, every replicate. Return its table's columns.

    Rows are point-major (point, then replicate); columns ``point``, ``replicate``, ``seed``,
    one per factor, then the study's metrics (each game's mean over its rounds, §8).
    """
    _keep_freed_memory()
    study = task.study
    seeds = study_seeds(study)
    values = [study.values_at(row) for row in task.unit]
    # Points with the same scenario keys share one scenario (validated once), whatever P, p_eff.
    scenarios: dict[str, tuple[Scenario, float, float]] = {}
    points = []
    for point in values:
        keys = {key: value for key, value in point.items() if key not in CELL_FACTORS}
        name = json.dumps(keys, sort_keys=True)
        if name not in scenarios:
            scenarios[name] = point_scenario(study, keys)
        scenario, punishment, detection = scenarios[name]
        points.append(
            (scenario, float(point.get("P", punishment)), float(point.get("p_eff", detection)))
        )
    play = _play_cell_points if study.engine == "cell" else _play_game_points
    played = play(study, points, seeds)
    replicates = len(seeds)
    columns: Columns = {
        "point": np.repeat(np.arange(task.first, task.first + task.points), replicates),
        "replicate": np.tile(np.arange(replicates), task.points),
        "seed": np.tile(np.array(seeds, dtype=np.int64), task.points),
    }
    for factor in study.factors:
        labels = [factor.label(point[factor.key]) for point in values]
        column = np.repeat(
            np.array(labels, dtype=object if not factor.numeric else None), replicates
        )
        if factor.numeric:
            column = column.astype(np.int64 if factor.integer else np.float64)
        columns[factor.key] = column
    for name in study.metrics:
        columns[name] = played[:, :, METRICS.index(name)].reshape(-1)
    return columns


def chunk_size(study: Study, points: int) -> int:
    """Return the points per chunk: the study's ``chunk_points``, or about a second of work.

    Engine cell: about ``CHUNK_LAB_ROUNDS`` lab-rounds, fewer so that a study of few points still
    has ``MIN_CHUNKS`` chunks, but never less than one block of ``BLOCK_ELEMENTS`` lab-games.

    Chosen from the document only (never from the workers), so a resumed study, on any number of
    workers, cuts the same chunks.
    """
    if study.chunk_points is not None:
        return study.chunk_points
    games = study.replicates * study.scenario.labs.count
    per_point = games * study.scenario.rounds
    if study.engine == "game":
        return max(1, min(-(-GAME_CHUNK_LAB_ROUNDS // per_point), -(-points // MIN_CHUNKS)))
    # At least one full block of the sweep's size: a smaller batch pays numpy's cost per call.
    block = -(-BLOCK_ELEMENTS // games)
    return max(block, min(-(-CHUNK_LAB_ROUNDS // per_point), -(-points // MIN_CHUNKS)))


def chunk_tasks(study: Study, unit: FloatArray) -> list[ChunkTask]:
    """Return the study cut into chunks of consecutive points."""
    size = chunk_size(study, len(unit))
    return [
        ChunkTask(study, index, first, unit[first : first + size])
        for index, first in enumerate(range(0, len(unit), size))
    ]


# --- output ----------------------------------------------------------------------------------


def chunk_path(directory: Path, index: int) -> Path:
    """Return where chunk ``index`` is written."""
    return directory / CHUNKS / f"chunk-{index:06d}.parquet"


def write_chunk(directory: Path, index: int, columns: Columns) -> Path:
    """Write a finished chunk at once: to a temporary file, then renamed (atomic on POSIX)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    path = chunk_path(directory, index)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    pq.write_table(pa.table(columns), temporary)
    os.replace(temporary, path)
    return path


def _manifest(study: Study, unit: FloatArray, tasks: list[ChunkTask]) -> dict[str, Any]:
    return {
        "study": study.document(),
        "digest": study.digest(),
        "points_digest": point_digest(unit),
        "points": len(unit),
        "chunks": len(tasks),
        "chunk_points": chunk_size(study, len(unit)),
        "seeds": list(study_seeds(study)),
        "reproducibility": "common random numbers: replicate j of every point is the game of "
        "that point seeded with seeds[j]",
    }


def _prepare(directory: Path, manifest: dict[str, Any], *, resume: bool) -> set[int]:
    """Create the output directory; return the chunks already written (with ``resume``)."""
    path = directory / MANIFEST
    try:
        (directory / CHUNKS).mkdir(parents=True, exist_ok=True)
        if path.exists():
            old = json.loads(path.read_text("utf-8"))
            same = (old.get("digest"), old.get("points_digest"), old.get("chunks")) == (
                manifest["digest"],
                manifest["points_digest"],
                manifest["chunks"],
            )
            if not resume:
                raise StudyError(
                    "output",
                    f"{directory} already holds a study; --resume finishes it, or remove it",
                )
            if not same:
                raise StudyError(
                    "output", f"{directory} holds another study (its document or points differ)"
                )
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        raise StudyError("output", f"cannot write to {directory}: {exc.strerror or exc}") from None
    for stale in (directory / CHUNKS).glob("*.tmp"):
        stale.unlink()
    return {index for index in range(manifest["chunks"]) if chunk_path(directory, index).exists()}


def _combine(directory: Path, chunks: int) -> Path:
    """Write the tidy table, chunk after chunk (memory flat in the number of points)."""
    pq = require("pyarrow.parquet")
    path = directory / RESULTS
    temporary = path.with_suffix(".tmp")
    writer = None
    try:
        for index in range(chunks):
            table = pq.read_table(chunk_path(directory, index))
            if writer is None:
                writer = pq.ParquetWriter(temporary, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    os.replace(temporary, path)
    return path


# --- executors -------------------------------------------------------------------------------

Runner = Callable[[ChunkTask], Columns]


def _serial(runner: Runner, tasks: list[ChunkTask]) -> Iterator[tuple[ChunkTask, Columns]]:
    for task in tasks:
        yield task, runner(task)


def _processes(
    runner: Runner, tasks: list[ChunkTask], workers: int
) -> Iterator[tuple[ChunkTask, Columns]]:
    """Run chunks in ``workers`` local processes (forked where possible), a few in flight."""
    import concurrent.futures as cf
    import multiprocessing

    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    window = 2 * workers
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending = iter(tasks)
        running: dict[cf.Future[Columns], ChunkTask] = {}
        try:
            while True:
                while len(running) < window:
                    task = next(pending, None)
                    if task is None:
                        break
                    running[pool.submit(runner, task)] = task
                if not running:
                    return
                done, _ = cf.wait(running, return_when=cf.FIRST_COMPLETED)
                for future in done:
                    yield running.pop(future), future.result()
        finally:
            for future in running:
                future.cancel()


def _dask(
    runner: Runner, tasks: list[ChunkTask], scheduler: str
) -> Iterator[tuple[ChunkTask, Columns]]:
    """Run chunks on a Dask distributed cluster; a lost worker's chunks are rerun by Dask."""
    distributed = require("distributed")
    with distributed.Client(scheduler, set_as_default=False) as client:
        threads = max(1, sum(client.nthreads().values()))
        window = 4 * threads
        pending = iter(tasks)
        running: dict[str, tuple[Any, ChunkTask]] = {}

        def submit() -> Any:
            task = next(pending, None)
            if task is None:
                return None
            key = f"permitgame-study-{task.study.digest()}-{task.index}"
            future = client.submit(runner, task, key=key)
            running[future.key] = (future, task)
            return future

        first = [future for future in (submit() for _ in range(window)) if future is not None]
        if not first:
            return
        queue = distributed.as_completed(first, loop=client.loop)
        try:
            for future in queue:
                columns = future.result()
                _, task = running.pop(future.key)
                future.release()
                following = submit()
                if following is not None:
                    queue.add(following)
                yield task, columns
        finally:
            if running:
                client.cancel([future for future, _ in running.values()])


# --- the study -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StudyResult:
    """A finished study, on disk in ``directory``.

    Attributes:
        study: the study.
        directory: the output directory (``results.parquet``, ``study.json``, ``chunks/``).
        chunks: the number of chunks.
        computed: the chunks this run computed (a resumed run skips those already written).
        seconds: wall time of this run.
    """

    study: Study
    directory: Path
    chunks: int
    computed: tuple[int, ...]
    seconds: float

    @property
    def results_path(self) -> Path:
        """Return the tidy table's path."""
        return self.directory / RESULTS

    def table(self) -> Any:
        """Return the tidy table as a pandas DataFrame: one row per point and replicate."""
        pq = require("pyarrow.parquet")
        return pq.read_table(self.results_path).to_pandas()

    def point_means(self) -> Any:
        """Return one row per point: its factors and each metric's mean over replicates."""
        table = self.table()
        keys = ["point"] + [factor.key for factor in self.study.factors]
        return table.groupby(keys, sort=True)[list(self.study.metrics)].mean().reset_index()

    def dataset(self) -> Any:
        """Return a grid study as an ``xarray.Dataset`` (see ``analysis.grid_dataset``)."""
        from sim_core.study.analysis import grid_dataset

        return grid_dataset(self)

    def sensitivity(self) -> Any:
        """Return the Sobol indices of a sobol study (see ``analysis.sobol_indices``)."""
        from sim_core.study.analysis import sobol_indices

        return sobol_indices(self)


def run_study(
    study: Study,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    resume: bool = False,
    output: str | Path | None = None,
    progress: Progress | None = None,
    runner: Runner = run_chunk,
) -> StudyResult:
    """Run a study's missing chunks, write each at once, then write the tidy table.

    Args:
        study: the study (``load_study`` or ``parse_study``).
        workers: local processes (1: this process only); ignored with ``scheduler``.
        scheduler: a Dask scheduler's address (``tcp://host:8786``): chunks run on its workers.
        resume: finish a study already started in the output directory, computing only the
            chunks missing there (the study and its points must be the same).
        output: the output directory (the study's ``output`` when None).
        progress: called with (points done, points) as chunks finish.
        runner: the function that plays a chunk (``run_chunk``; a wrapper may add to it).

    Raises:
        StudyError: a missing library, an output directory that holds another study, or one that
            holds this study without ``resume``.
    """
    require("pyarrow")
    started = time.perf_counter()
    directory = Path(output) if output is not None else study.output
    unit = study.unit_points()
    tasks = chunk_tasks(study, unit)
    done = _prepare(directory, _manifest(study, unit, tasks), resume=resume)
    missing = [task for task in tasks if task.index not in done]
    finished = sum(tasks[index].points for index in done)
    if progress is not None:
        progress(finished, len(unit))
    if scheduler is not None:
        results: Iterable[tuple[ChunkTask, Columns]] = _dask(runner, missing, scheduler)
    elif workers > 1 and len(missing) > 1:
        results = _processes(runner, missing, workers)
    else:
        results = _serial(runner, missing)
    computed = []
    for task, columns in results:
        write_chunk(directory, task.index, columns)
        computed.append(task.index)
        finished += task.points
        if progress is not None:
            progress(finished, len(unit))
    _combine(directory, len(tasks))
    return StudyResult(
        study=study,
        directory=directory,
        chunks=len(tasks),
        computed=tuple(sorted(computed)),
        seconds=time.perf_counter() - started,
    )


def lab_rounds(study: Study, points: int) -> float:
    """Return the lab-rounds of ``points`` points of the study (its size in the sweep's unit)."""
    return float(points) * study.replicates * study.scenario.labs.count * study.scenario.rounds


__all__ = ["ChunkTask", "StudyResult", "chunk_tasks", "lab_rounds", "run_chunk", "run_study"]
