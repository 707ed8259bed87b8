"""The Ray executor: the same batch as Ray tasks, on a local Ray instance or an existing cluster.

A pool of ``workers`` Ray actors (``ray.util.ActorPool``; Ray schedules them, nothing here does),
each a :class:`~autograder.frontends.batch.grader.SlotGrader` owning one sandbox slot on the node Ray placed it
on, asking Ray for one CPU and, with ``--device cuda``, ``gpus_per_worker`` GPUs (fractions let
several actors share one GPU); Ray's ``CUDA_VISIBLE_DEVICES`` is passed into the sandbox. Every
submission is one actor task: the notebook travels as bytes (nodes need not share a file system)
and the result comes back as JSON-ready data.

Each node needs this repository (the engine, the hidden suites, the reference and the trusted
notebooks) importable, the pinned environment and bubblewrap, as for local grading:
``docs/batch.md`` shows how to run it on a cluster.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Iterable

from autograder.frontends.batch.discover import REPO


class GradingActor:
    """The body of a Ray actor (wrapped with ``ray.remote`` at run time)."""

    def __init__(self, slot: int, device: str, log_folder: str | None) -> None:
        from autograder.frontends.batch.grader import SlotGrader, redirect_output

        if log_folder and Path(log_folder).is_dir():  # the driver's folder, when this node shares it
            redirect_output(Path(log_folder) / f"grader-ray-slot{slot}-{os.uname().nodename}.log")
        self.grader = SlotGrader(slot, device)

    def grade(self, task: dict[str, Any]) -> dict[str, Any]:
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


def run(tasks: Iterable[dict[str, Any]], *, workers: int, device: str, first_slot: int, log_folder: Path,
        on_result: Callable[[dict[str, Any]], None], address: str | None = None,
        gpus_per_worker: float = 1.0) -> None:
    import ray
    from ray.util import ActorPool

    runtime_env = {"env_vars": {"PYTHONPATH": str(REPO)}}
    started_here = not ray.is_initialized()
    if started_here:
        options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, runtime_env=runtime_env, **options)
        else:
            ray.init(num_cpus=workers, runtime_env=runtime_env, **options)
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
        if started_here:
            ray.shutdown()
