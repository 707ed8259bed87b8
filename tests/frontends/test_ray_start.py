"""A local Ray instance for ``grade-batch --executor ray``: no dashboard UI, no metrics, no idle
workers started ahead of the agents, a private session folder, retried when Ray's fixed start-up
deadlines are missed on a busy machine, and nothing left behind when it stops."""

from __future__ import annotations

from pathlib import Path

import pytest

from autograder.frontends.batch import ray_executor as rx


def test_local_options_start_the_least_that_grading_needs(tmp_path: Path) -> None:
    options = rx.local_options(2, {"env_vars": {"A": "1"}}, str(tmp_path))
    assert options["include_dashboard"] is False and options["num_cpus"] == 2
    assert options["_temp_dir"] == str(tmp_path)
    config = options["_system_config"]
    assert config["enable_metrics_collection"] is False  # the raylet reports no metrics to an agent
    assert config["enable_worker_prestart"] is False and config["prestart_worker_first_driver"] is False
    assert rx.START_ATTEMPTS >= 3


@pytest.mark.slow
def test_a_real_local_ray_starts_runs_and_leaves_nothing() -> None:
    ray = pytest.importorskip("ray")
    import psutil

    temp, attempts = rx.start_local(2, {})
    try:
        assert 1 <= attempts <= rx.START_ATTEMPTS
        assert ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
        assert ray.get(ray.remote(lambda: 41 + 1).remote()) == 42
        daemons = [p for p in psutil.Process().children(recursive=True) if any(temp in a for a in p.cmdline())]
        assert daemons, "Ray's daemons run in the batch's own session folder"
    finally:
        rx.stop_local(temp)
    assert not ray.is_initialized() and not Path(temp).exists()
    left = [p for p in psutil.Process().children(recursive=True) if any(temp in a for a in p.cmdline())]
    assert left == []
