"""Grading a whole class: ``python -m autograder grade-batch PATH...`` (see ``docs/batch.md``).

The batch, as stages:

1. **discover** every notebook under the paths (``discover.py``), each under a stable key;
2. **skip** those already graded with unchanged content by the same grader (their JSON records);
3. **grade** the rest in parallel (``local.py``: a process pool on this machine; ``ray_executor.py``:
   Ray actors on a local instance or a cluster), each grader owning one sandbox slot with a warm
   fork server (``autograder/sandbox/forkserver.py``) and one long-lived pytest session
   (``autograder/grading/runner.py``), saving each record as soon as it exists;
4. **report**: CSV tables, the class report (HTML), optionally the nbgrader gradebook.

This process never imports torch or runs student code: it reads files, dispatches and writes.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from autograder.frontends.batch import discover
from autograder.report import class_outputs as outputs
from autograder.report.records import BatchRecord, RecordStatus
from autograder.errors import EXIT_INTERNAL, EXIT_OK, SandboxUnavailable, UnusableInput
from autograder.report.common import one_line
from autograder.limits import MAX_NOTEBOOK_BYTES
from autograder.safeio import read_submitted

DEFAULT_REPORT = Path("reports") / "batch"


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``grade-batch`` subcommand, added to the command line's subparsers."""
    parser = commands.add_parser(
        "grade-batch", help="grade many submissions in parallel (resumable), with CSV and a class report",
        description="Grade every notebook under PATH (nbgrader's submitted/<student>/<assignment>/ layout, or plain "
        "files and folders) in parallel sandboxes. Submissions graded before, with unchanged content and the same "
        "grader, are not graded again. Exit status: 0 all graded (whatever the scores), 1 some could not be graded "
        "because of a grader error (run again to retry them), 2 unusable arguments or no sandbox.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="notebooks, or folders of them")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="submissions graded at once (default: the number of CPUs)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: processes on this machine; ray: Ray actors (default: local)")
    parser.add_argument("--ray-address", metavar="ADDR",
                        help="an existing Ray cluster (e.g. auto, or ray://head:10001); default: start a local Ray")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device the tests run on")
    parser.add_argument("--gpus-per-worker", type=float, default=1.0, metavar="F",
                        help="with --executor ray --device cuda: GPUs Ray reserves per worker (may be a fraction)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, metavar="DIR",
                        help=f"where records, CSV tables and the class report go (default: {DEFAULT_REPORT})")
    parser.add_argument("--gradebook", metavar="DB_URL",
                        help="also write the scores into this nbgrader gradebook (e.g. sqlite:///gradebook.db)")
    parser.add_argument("--seed", type=int, help="seed of the random test inputs for every submission "
                        "(default: derived from the course secret and the submission's graded content, "
                        "so a regrade draws the same inputs; recorded in its JSON)")
    parser.add_argument("--force", action="store_true", help="grade every submission again")
    parser.add_argument("--first-slot", type=int, default=0, metavar="K",
                        help="sandbox slots K..K+N-1 (uids 61000+slot when root); keep concurrent batches apart")
    parser.set_defaults(run=run_command)
    return parser


def _record(submission: discover.Submission, out: BatchRecord, grader: str, device: str) -> BatchRecord:
    """The grader's ``out``, with where the submission came from and how it was graded."""
    from autograder.frontends import stale

    assignment = (out.result.assignment if out.result is not None else None) or submission.assignment
    return replace(out, key=submission.key, path=str(submission.path), student=submission.student,
                   assignment=assignment, notebook=submission.notebook, grader=grader, device=device,
                   depends=stale.parts(assignment) if assignment else None)


def _up_to_date(record: BatchRecord, digest: str, grader: str, device: str, seed: int | None) -> bool:
    return (record.status in (RecordStatus.GRADED, RecordStatus.UNUSABLE) and record.sha256 == digest
            and record.grader == grader and record.device == device and (seed is None or record.seed == seed))


def _preload(module: str) -> None:
    try:
        if module.startswith("matplotlib"):
            import matplotlib

            matplotlib.use("Agg")
        importlib.import_module(module)
    except Exception:  # noqa: BLE001 - imported again, with its error, where it is used
        pass


def run_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from autograder.sandbox import bubblewrap as sandbox

    console = Console(stderr=True)
    if args.workers < 1:
        raise UnusableInput("--workers must be at least 1")
    if args.report.exists() and not args.report.is_dir():
        raise UnusableInput(f"--report {args.report}: not a folder")
    skipped: list[str] = []
    submissions = discover.discover(args.paths, skipped)
    if not submissions:
        raise UnusableInput("no notebooks found under " + ", ".join(map(str, args.paths)))
    from autograder import hidden

    refusal = hidden.refusal()
    if refusal:
        raise UnusableInput(refusal)
    reason = sandbox.unavailable_reason() if args.executor == "local" else None
    if reason:
        raise SandboxUnavailable(f"the sandbox is unavailable ({reason}); official grading refuses to run")
    started = time.monotonic()
    grader = discover.grader_fingerprint()
    report = args.report
    (report / outputs.RECORDS).mkdir(parents=True, exist_ok=True)

    from autograder.frontends import stale
    from autograder.submission.notebook import renamed

    records: dict[str, BatchRecord] = {}
    tasks: list[dict[str, Any]] = []
    stale_lines: list[str] = []
    refused = 0  # unusable before grading (unreadable, renamed)
    by_key = {s.key: s for s in submissions}
    for submission in submissions:
        path = outputs.record_path(report, submission.record_name)
        try:  # a regular file, never through a symbolic link (checked again when it is graded)
            digest = discover.sha256(read_submitted(submission.path, below=submission.root, limit=MAX_NOTEBOOK_BYTES))
            problem = renamed(submission.notebook, submission.assignment) if submission.assignment else None
            if problem:  # as nbgrader autograde and grade refuse it
                raise UnusableInput(problem)
        except UnusableInput as exc:  # the student's input: recorded, the batch goes on
            record = _record(submission, BatchRecord(submission.key, RecordStatus.UNUSABLE, message=str(exc)),
                             grader, args.device)
            outputs.write_record(path, record)
            records[submission.key] = record
            refused += 1
            continue
        previous = None if args.force else outputs.read_record(path)
        if previous is not None and _up_to_date(previous, digest, grader, args.device, args.seed):
            records[submission.key] = previous
            continue
        if previous is not None and previous.status == RecordStatus.GRADED and previous.sha256 == digest:
            what = stale.changed(previous.depends, str(previous.assignment))
            if what:
                stale_lines.append(f"{submission.key} ({stale.reason(what)})")
        tasks.append({"key": submission.key, "name": submission.notebook, "path": str(submission.path.absolute()),
                      "root": str((submission.root or submission.path.parent).absolute()),
                      "sha256": digest, "assignment": submission.assignment, "device": args.device,
                      "seed": args.seed})  # None: derived from the content (autograder/seeds.py)

    workers = max(1, min(args.workers, len(tasks))) if tasks else 0
    # The class report's plotting library loads while the graders start (this process is idle then).
    # (Not while a local Ray instance starts: its agents must start within Ray's fixed deadlines.)
    if args.executor == "local" or args.ray_address:
        threading.Thread(target=_preload, args=("matplotlib.pyplot",), daemon=True).start()
    columns = (TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
               TextColumn("{task.fields[last]}", markup=False))  # names are the students': never markup
    aborted: list[str] = []
    with Progress(*columns, console=console, transient=False) as progress:
        bar = progress.add_task("grading", total=len(tasks), last=f"{len(records)} up to date, {workers} workers")

        def on_result(out: BatchRecord) -> None:
            if out.status == RecordStatus.NO_SANDBOX:
                aborted.append(out.message)
                raise SandboxUnavailable(out.message)
            submission = by_key[out.key]
            record = _record(submission, out, grader, args.device)
            outputs.write_record(outputs.record_path(report, submission.record_name), record)
            records[submission.key] = record
            last = (f"{submission.key}: {out.result.score:g}/{out.result.max_score:g}" if out.result is not None
                    else f"{submission.key}: {out.status.value}")
            progress.update(bar, advance=1, last=one_line(last)[-60:])

        if tasks:
            common = {"workers": workers, "device": args.device, "first_slot": args.first_slot,
                      "log_folder": report / "logs", "on_result": on_result}
            (report / "logs").mkdir(exist_ok=True)
            if args.executor == "ray":
                from autograder.frontends.batch import ray_executor

                ray_executor.run(tasks, address=args.ray_address, gpus_per_worker=args.gpus_per_worker, **common)
            else:
                from autograder.frontends.batch import local

                local.run(tasks, **common)

    ordered = [records[s.key] for s in submissions if s.key in records]
    lines = []
    if stale_lines:
        lines.append(f"{len(stale_lines)} stale grades regraded: " + "; ".join(stale_lines[:20])
                     + ("; ..." if len(stale_lines) > 20 else ""))
    if args.gradebook:
        from autograder.frontends.batch import gradebook

        written, not_written, late = gradebook.write(args.gradebook, ordered)
        for submission in submissions:  # lateness (from the gradebook's due date) into the records
            if submission.key in late and submission.key in records:
                records[submission.key] = replace(records[submission.key], late=late[submission.key])
                outputs.write_record(outputs.record_path(report, submission.record_name), records[submission.key])
        lines.append(f"gradebook: {written} submissions written to {args.gradebook}")
        lines += [f"gradebook: skipped {line}" for line in not_written[:20]]
    # The tables and the class report cover every record in the folder: a run on some of the
    # submissions updates their rows and keeps the others'.
    everything = outputs.read_all(report)
    every = [everything[key] for key in sorted(everything)]
    tables = outputs.write_tables(report, every)
    from autograder.report import class_report

    wall = time.monotonic() - started
    html = class_report.write(report / "class_report.html", every,
                              note=f"Grader {grader}, device {args.device}.")
    lines.insert(0, f"{len(tasks)} graded, {len(submissions) - len(tasks) - refused} up to date, "
                    f"{refused} refused unread, in {wall:.1f} s "
                    f"({wall / max(1, len(tasks)):.3f} s per graded submission, {workers} workers, {args.executor})")
    errors = [r for r in ordered if r.status == RecordStatus.ERROR]
    unusable = [r for r in ordered if r.status == RecordStatus.UNUSABLE]
    if skipped:
        lines.append(f"{len(skipped)} skipped (symbolic links or not regular files, never read): " + "; ".join(skipped[:5]))
    if unusable:
        lines.append(f"{len(unusable)} unusable: " + "; ".join(f"{r.key} ({r.message})" for r in unusable[:5]))
    if errors:
        lines.append(f"{len(errors)} not graded because of grader errors (not the students' fault; run again to retry): "
                     + "; ".join(r.key for r in errors[:5]))
    lines.append(f"records in {report / outputs.RECORDS}; tables {', '.join(p.name for p in tables)}; class report {html}")
    for line in lines:  # names and messages are the students': no control character reaches the terminal
        sys.stdout.write(one_line(line) + "\n")
    return EXIT_INTERNAL if errors else EXIT_OK
