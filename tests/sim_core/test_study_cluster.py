"""Studies on a Dask distributed cluster: a LocalCluster of two worker processes.

The cluster must give the single process's numbers bit for bit, and a worker killed in the
middle of a chunk must cost only time: Dask reruns its chunk elsewhere, the result is the same.
"""

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

from sim_core.study import parse_study, run_study
from sim_core.study.engine import run_chunk

distributed = pytest.importorskip("distributed")
cloudpickle = pytest.importorskip("cloudpickle")

pytestmark = pytest.mark.slow

# The worker processes cannot import this test module: its functions travel by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def make_study(tmp_path, **changes):
    document = {
        "scenario": "targeted_audit",
        "overrides": {"labs.count": 30, "rounds": 8},
        "factors": [
            {"key": "P", "range": [0.2, 0.8]},
            {"key": "p_eff", "range": [0.25, 0.75]},
            {"key": "labs.strategy.reckless", "values": [0.0, 0.25]},
        ],
        "design": {"type": "lhs", "samples": 24, "seed": 2},
        "replicates": 3,
        "chunk_points": 3,
        "output": "out",
        **changes,
    }
    return parse_study(document, base_dir=tmp_path)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=50,
    ) as local:
        yield local


def test_local_cluster_gives_the_single_process_numbers_bit_for_bit(tmp_path, cluster):
    study = make_study(tmp_path)
    alone = run_study(study, output=tmp_path / "alone")
    on_cluster = run_study(study, scheduler=cluster.scheduler_address, output=tmp_path / "dask")
    assert on_cluster.computed == tuple(range(8))
    assert alone.table().equals(on_cluster.table())
    with distributed.Client(cluster.scheduler_address) as client:
        # Both workers took chunks (the work was spread, not run on the client).
        assert len(client.scheduler_info()["workers"]) == 2


def kill_own_worker_once(task, marker):
    """Play the chunk, except the first time chunk 4 comes: kill this worker process then."""
    if task.index == 4 and not Path(marker).exists():
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return run_chunk(task)


def test_a_worker_killed_mid_study_is_replaced_and_the_result_is_identical(tmp_path, cluster):
    study = make_study(tmp_path)
    marker = tmp_path / "killed"

    def runner(task):
        return kill_own_worker_once(task, str(marker))

    result = run_study(study, scheduler=cluster.scheduler_address, runner=runner)
    assert marker.exists()  # a worker really died in the middle of the study
    alone = run_study(study, output=tmp_path / "alone")
    assert result.table().equals(alone.table())
    assert np.array_equal(result.point_means().to_numpy(), alone.point_means().to_numpy())
