"""Class-scale grading against the stock way, on the same generated submissions, in one run.

    .venv/bin/python bench/bench_batch.py [-n 50] [--workers N] [--skip-nbclient] [--skip-nbgrader]

1. Generates ``n`` realistic submissions (``bench/submissions.py``: correct, buggy and unfinished
   answers, round-robin over the assignments) in nbgrader's layout, in a temporary course.
2. **grade-batch**: ``python -m autograder grade-batch`` over them (sandboxed, hidden tests, class
   report), from a cold start: every process and sandbox it needs is started inside the timing.
3. **nbclient**: executes the same notebooks the stock way, one fresh Jupyter kernel per notebook,
   one after the other (what ``nbgrader autograde`` does under the hood).
4. **nbgrader autograde**: stock nbgrader (a course configured with nbgrader's defaults: its own
   ``Execute`` preprocessor, a kernel per notebook), ``nbgrader autograde <assignment> --create``
   for every assignment, after ``nbgrader generate_assignment`` (not timed).

The stock runs do *less* work than grade-batch: the notebooks' check and test cells only import
the course's ``autograder`` package, which a stock course does not have, so they fail at once
instead of running tests. The ratios are therefore conservative.

For each: wall time, amortized time per notebook, and peak memory (the proportional set size of the
whole process tree — kernels, sandboxes and workers included — sampled every 0.2 s); for
grade-batch also the CPU time per notebook of the grader processes and of the sandboxes, from its
records. Then the ratios, and the machine's load average before each run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))

from autograder.report import class_outputs as outputs  # noqa: E402
from autograder.report.records import RecordStatus  # noqa: E402
from bench import submissions  # noqa: E402

PYTHON = REPO / ".venv" / "bin" / "python"
STOCK_CONFIG = """\
c = get_config()  # noqa: F821
c.CourseDirectory.root = {root!r}
c.CourseDirectory.db_url = "sqlite:///{root}/gradebook.db"
c.ExecutePreprocessor.timeout = 600
"""


# ------------------------------------------------------------------------------------ measuring
def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                out += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return out


def _pss(pid: int) -> int:
    """Bytes of proportional set size (shared pages divided among their users), or resident size."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakMemory:
    """Samples the memory of a process tree in a thread; ``peak`` in bytes."""

    def __init__(self, pid: int, interval: float = 0.2) -> None:
        self.pid, self.interval, self.peak = pid, interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            tree, todo = set(), [self.pid]
            while todo:
                pid = todo.pop()
                if pid not in tree:
                    tree.add(pid)
                    todo += _children(pid)
            self.peak = max(self.peak, sum(_pss(p) for p in tree))
            self._stop.wait(self.interval)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{PYTHON.parent}:{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore"}


def timed(command: list[str], cwd: Path, log: Path) -> tuple[float, int, int]:
    """(wall seconds, peak bytes, exit status) of a command, its output going to ``log``."""
    with open(log, "ab") as out:
        started = time.monotonic()
        proc = subprocess.Popen(command, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT)
        memory = PeakMemory(proc.pid)
        code = proc.wait()
        wall = time.monotonic() - started
        return wall, memory.stop(), code


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ------------------------------------------------------------------------------- stock nbclient
def run_nbclient(notebooks: list[str]) -> None:
    """Executed in a subprocess of its own: one fresh kernel per notebook, in order."""
    import nbformat
    from nbclient import NotebookClient

    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=600, kernel_name="python3", allow_errors=True,
                       resources={"metadata": {"path": str(Path(path).parent)}}).execute()


# ------------------------------------------------------------------------------------ the bench
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=50, help="submissions (default 50)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="grade-batch workers")
    parser.add_argument("--seed", type=int, default=0, help="which submissions are generated")
    parser.add_argument("--first-slot", type=int, default=30, help="sandbox slots of grade-batch")
    parser.add_argument("--skip-nbclient", action="store_true")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--nbclient-run", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nbclient_run is not None:
        run_nbclient(args.nbclient_run)
        return 0

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    course = work / "course"
    if course.exists():
        shutil.rmtree(course)
    made = submissions.make_class(course, args.n, seed=args.seed)
    notebooks = [str(m.path) for m in made]
    assignments = sorted({m.assignment for m in made})
    log = work / "bench.log"
    print(f"{len(made)} submissions over {len(assignments)} assignments in {course}; machine: {os.cpu_count()} CPUs")
    figures: dict[str, dict] = {}

    # 1. grade-batch, cold
    report = work / "report"
    shutil.rmtree(report, ignore_errors=True)
    before = load()
    wall, peak, code = timed([str(PYTHON), "-m", "autograder", "grade-batch", str(course), "--report", str(report),
                              "--workers", str(args.workers), "--first-slot", str(args.first_slot)], REPO, log)
    graded = [r for r in outputs.read_all(report).values() if r.status == RecordStatus.GRADED]
    if code != 0 or len(graded) != len(made):
        print(f"grade-batch failed (exit {code}, {len(graded)}/{len(made)} graded): see {log}")
        return 1
    cpu_grader = sum(r.cpu["grader"] for r in graded) / len(graded)
    cpu_sandbox = sum(r.cpu["sandbox"] for r in graded) / len(graded)
    figures["grade-batch"] = {"wall_s": wall, "peak_bytes": peak, "load_before": before,
                              "cpu_per_notebook_s": {"grader": round(cpu_grader, 3), "sandbox": round(cpu_sandbox, 3)},
                              "workers": args.workers}

    # 2. nbclient, one kernel per notebook
    if not args.skip_nbclient:
        before = load()
        wall, peak, code = timed([str(PYTHON), str(Path(__file__).resolve()), "--nbclient-run", *notebooks], REPO, log)
        if code != 0:
            print(f"the nbclient run failed (exit {code}): see {log}")
            return 1
        figures["nbclient"] = {"wall_s": wall, "peak_bytes": peak, "load_before": before}

    # 3. stock nbgrader autograde
    if not args.skip_nbgrader:
        for assignment in assignments:
            shutil.copytree(REPO / "solutions" / assignment, course / "source" / assignment, dirs_exist_ok=True)
        (course / "nbgrader_config.py").write_text(STOCK_CONFIG.format(root=str(course)))
        nbgrader = str(PYTHON.parent / "nbgrader")
        for assignment in assignments:
            done = subprocess.run([nbgrader, "generate_assignment", assignment, "--force"], cwd=course, env=_env(),
                                  capture_output=True, text=True)
            if done.returncode != 0:
                print(f"nbgrader generate_assignment {assignment} failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")
                return 1
        before = load()
        total, peak_max = 0.0, 0
        for assignment in assignments:
            wall, peak, code = timed([nbgrader, "autograde", assignment, "--create", "--force"], course, log)
            if code != 0:
                print(f"nbgrader autograde {assignment} failed (exit {code}): see {log}")
                return 1
            total, peak_max = total + wall, max(peak_max, peak)
        autograded = list((course / "autograded").rglob("*.ipynb"))
        if len(autograded) != len(made):
            print(f"nbgrader autograded {len(autograded)} of {len(made)} notebooks: see {log}")
            return 1
        figures["nbgrader autograde"] = {"wall_s": total, "peak_bytes": peak_max, "load_before": before}

    n = len(made)
    print()
    print(f"{'':22s}{'wall s':>10s}{'per notebook s':>16s}{'peak MiB':>10s}{'load before':>18s}")
    for name, f in figures.items():
        f["per_notebook_s"] = f["wall_s"] / n
        print(f"{name:22s}{f['wall_s']:10.1f}{f['per_notebook_s']:16.3f}{f['peak_bytes'] / 2**20:10.0f}{f['load_before']:>18s}")
    batch = figures["grade-batch"]
    print(f"\ngrade-batch CPU per notebook: grader {batch['cpu_per_notebook_s']['grader']:.3f} s, "
          f"sandbox {batch['cpu_per_notebook_s']['sandbox']:.3f} s ({args.workers} workers)")
    for name in ("nbclient", "nbgrader autograde"):
        if name in figures:
            ratio = figures[name]["wall_s"] / batch["wall_s"]
            figures["grade-batch"][f"speedup_vs_{name.replace(' ', '_')}"] = round(ratio, 2)
            print(f"grade-batch is {ratio:.1f}x faster than {name}")
    if args.json:
        args.json.write_text(json.dumps({"n": n, "cpus": os.cpu_count(), "figures": figures}, indent=1))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
