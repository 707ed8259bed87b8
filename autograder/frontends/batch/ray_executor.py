"""The Ray executor: the same batch as Ray tasks, on a local Ray instance or an existing cluster.

A pool of ``workers`` Ray actors (``ray.util.ActorPool``; Ray schedules them, nothing here does),
each a :class:`~autograder.frontends.batch.grader.SlotGrader` owning one sandbox slot on the node Ray placed it
on, asking Ray for one CPU and, with ``--device cuda``, ``gpus_per_worker`` GPUs (fractions let
several actors share one GPU); Ray's ``CUDA_VISIBLE_DEVICES`` is passed into the sandbox. Every
submission is one actor task: the notebook travels as bytes (nodes need not share a file system)
and its :class:`~autograder.report.records.BatchRecord` comes back (pickled, as Ray sends objects).

Each node needs this repository (the engine, the hidden suites, the reference and the trusted
notebooks) importable, the pinned environment and bubblewrap, as for local grading:
``docs/batch.md`` shows how to run it on a cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from autograder.frontends.batch.discover import REPO
from autograder.report.records import BatchRecord


class GradingActor:
    """The body of a Ray actor (wrapped with ``ray.remote`` at run time)."""

    def __init__(self, slot: int, device: str, log_folder: str | None) -> None:
        from autograder.frontends.batch.grader import SlotGrader, redirect_output

        try:  # a worker of a local instance started at a raised priority: graders run at the normal one
            if os.getpriority(os.PRIO_PROCESS, 0) < NORMAL_PRIORITY:
                os.setpriority(os.PRIO_PROCESS, 0, NORMAL_PRIORITY)
        except OSError:
            pass

        if log_folder and Path(log_folder).is_dir():  # the driver's folder, when this node shares it
            redirect_output(Path(log_folder) / f"grader-ray-slot{slot}-{os.uname().nodename}.log")
        self.grader = SlotGrader(slot, device)

    def grade(self, task: dict[str, Any]) -> BatchRecord:
        return self.grader.grade(task)

    def where(self) -> str:
        return os.uname().nodename

    def close(self) -> None:
        self.grader.close()


def _with_data(task: dict[str, Any]) -> dict[str, Any]:
    """The task with the notebook's bytes, read only when it is dispatched."""
    if task.get("data") is None and task.get("path"):
        try:
            task = {**task, "data": Path(task["path"]).read_bytes()}
        except OSError:
            pass  # the grader reports it unreadable
    return task


def actor_resources(device: str, gpus_per_worker: float) -> dict[str, Any]:
    """What each actor asks Ray for: one CPU, and GPUs when the tests run on CUDA."""
    resources: dict[str, Any] = {"num_cpus": 1}
    if device == "cuda":
        resources["num_gpus"] = gpus_per_worker
    return resources


#: Ray's own start-up waits are fixed: the raylet gives its agents (Python processes) about 15 s to
#: report their ports and the driver gives the raylet 30 s to register. On a loaded 2-core machine
#: importing the agents can take longer; the local instance is then stopped and started again (the
#: second start finds the files in the page cache), up to this many times in all.
START_ATTEMPTS = 4
STARTUP_TIMEOUT = "timed out during startup"
START_PRIORITY = -10  # nice value of Ray's daemons, where the grading machine allows it
NORMAL_PRIORITY = 0


def local_options(workers: int, runtime_env: dict[str, Any], temp_dir: str) -> dict[str, Any]:
    """``ray.init`` options of a local instance for one batch: no dashboard, no metrics, a private
    session folder (so that a failed start can be cleaned up without touching anyone else's Ray)."""
    return {"num_cpus": workers, "include_dashboard": False, "log_to_driver": False, "configure_logging": False,
            "runtime_env": runtime_env, "_temp_dir": temp_dir,
            # Fewer processes compete with the agents while they start: no metrics, and no idle
            # workers started ahead of time (the actors start their own).
            "_system_config": {"enable_metrics_collection": False, "enable_worker_prestart": False,
                               "prestart_worker_first_driver": False}}


def _leftovers(temp_dir: str) -> None:
    """Stop every process of this batch's local Ray instance (they name its session folder)."""
    import psutil
    import ray

    ray.shutdown()
    mine = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(temp_dir in part for part in child.cmdline()):
                mine.append(child)
        except psutil.Error:
            continue
    for child in mine:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(mine, timeout=5)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass


@contextlib.contextmanager
def _raised_priority() -> Iterator[None]:
    """Ray's daemons (GCS, raylet, its agents) inherit a raised CPU priority while they start, so that
    Ray's fixed start-up deadlines hold on a busy machine; graders go back to the normal priority
    (:class:`GradingActor`). Without the privilege to raise it (not root), nothing changes."""
    before = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, START_PRIORITY)
    except OSError:
        yield
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, 0, before)


def start_local(workers: int, runtime_env: dict[str, Any]) -> tuple[str, int]:
    """Start a local Ray instance; returns its session folder and the number of attempts it took."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage report from a grading machine
    temp_dir = tempfile.mkdtemp(prefix="agray-")  # short: Ray's socket paths must fit in 107 bytes
    for attempt in range(1, START_ATTEMPTS + 1):
        try:
            with _raised_priority():
                ray.init(**local_options(workers, runtime_env, temp_dir))
            return temp_dir, attempt
        except Exception as error:
            _leftovers(temp_dir)
            if STARTUP_TIMEOUT not in str(error) or attempt == START_ATTEMPTS:
                shutil.rmtree(temp_dir, ignore_errors=True)
                raise
            sys.stderr.write(f"autograder: the local Ray instance did not start in time (attempt {attempt} of "
                             f"{START_ATTEMPTS}, a busy machine); starting it again\n")
    raise AssertionError("unreachable")


def stop_local(temp_dir: str) -> None:
    _leftovers(temp_dir)
    shutil.rmtree(temp_dir, ignore_errors=True)


def run(tasks: Iterable[dict[str, Any]], *, workers: int, device: str, first_slot: int, log_folder: Path,
        on_result: Callable[[BatchRecord], None], address: str | None = None,
        gpus_per_worker: float = 1.0) -> None:
    import ray
    from ray.util import ActorPool

    runtime_env = {"env_vars": {"PYTHONPATH": str(REPO)}}
    started_here = not ray.is_initialized()
    local = None
    if started_here:
        if address:
            ray.init(address=address, runtime_env=runtime_env, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        else:
            local, _ = start_local(workers, runtime_env)
    try:
        actor = ray.remote(**actor_resources(device, gpus_per_worker))(GradingActor)
        actors = [actor.remote(first_slot + index, device, str(log_folder)) for index in range(workers)]
        pool = ActorPool(actors)
        for result in pool.map_unordered(lambda a, task: a.grade.remote(_with_data(task)), tasks):
            on_result(result)
        ray.get([handle.close.remote() for handle in actors])  # sandboxes stopped and waited for
        for handle in actors:
            ray.kill(handle)
    finally:
        if local is not None:
            stop_local(local)
        elif started_here:
            ray.shutdown()
