"""Grading a pull request: ``python -m autograder ci --base REF [--head REF]``.

The command runs in the *trusted* checkout (the base branch): its grader, its hidden suites and its
released notebooks are the ones that count. The pull request is only data. Nothing is checked out
from it and nothing of it is imported: its changes are listed with ``git diff --raw`` and each
changed course notebook is read as bytes from the object database (``git cat-file blob``) into a
temporary directory, then graded in the sandbox exactly as ``grade`` does. Every other change
(tests, workflows, the grader's own files) is reported and never executed.

Stages: resolve refs → list changes → classify → read notebooks as data → grade each → summarise
(Markdown for the job summary and the pull-request comment, JSON) → exit status. The report's
model (total, minimum score, exit status) and both renderings are
``autograder/report/pull_request.py``; this module reads git, sorts the changes, calls the engine
and writes the files.

Exit statuses (the same numbers as the other commands, plus one):

- 0 — grading completed, whatever the scores (also when no notebook changed, and when a changed
  notebook cannot be graded: that is the student's to fix and the report says why);
- 1 — a grader bug while grading some notebook: reported as "not your fault", others still graded;
- 2 — the pull request could not be graded at all: a bad ref, not a git repository, an unwritable
  report path, or no sandbox on this machine (official grading fails closed);
- 3 — ``--min-score`` was given and a submitted notebook scored below it.

When several apply, the first in the order 2, 1, 3 wins. The reports are written in every case
where the arguments allow it, so the pull request always learns what happened.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from autograder.course import registry
from autograder.errors import INTERNAL, AutogradeError, GraderError, SandboxUnavailable, UnusableInput
from autograder.report.common import clip, fraction, one_line
from autograder.errors import EXIT_CANNOT_GRADE
from autograder.report.pull_request import Ignored, Outcome, Report, Submission, as_json, markdown
from autograder.report.results import NotebookResult

RELEASE_PREFIX = "assignments/"
REGULAR_FILE_MODES = ("100644", "100755")
MODE_NAMES = {"120000": "a symbolic link", "160000": "a submodule", "040000": "a directory"}
CHANGE_NAMES = {"A": "added", "M": "modified", "D": "deleted", "T": "type changed", "U": "unmerged"}
NOT_RUN_MESSAGE = "not graded: grading could not run"


class CannotGrade(AutogradeError):
    """The pull request cannot be examined at all (bad ref, not a repository): not the student's fault."""


# ------------------------------------------------------------------------------------ git, as data
@dataclass(frozen=True)
class Change:
    path: str
    change: str  # "added", "modified", "deleted", "type changed"
    mode: str  # the file's mode at the head ("000000" when deleted)
    blob: str  # the object id at the head (all zeros when deleted)


def _git(repo: Path, *args: str) -> bytes:
    # No pager, no prompts, no optional locks; every command here only reads.
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_OPTIONAL_LOCKS": "0", "GIT_PAGER": "cat", "LC_ALL": "C"}
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], stdin=subprocess.DEVNULL, capture_output=True, env=env)
    except OSError as exc:
        raise CannotGrade(f"cannot run git ({exc.strerror or exc.__class__.__name__})") from None
    if done.returncode != 0:
        detail = one_line(done.stderr.decode("utf-8", "replace")) or f"exit status {done.returncode}"
        raise CannotGrade(f"git {args[0]} failed in {repo}: {clip(detail, 300)}")
    return done.stdout


def resolve(repo: Path, ref: str) -> str:
    """The commit id that ``ref`` names (``--end-of-options``: a ref is never taken for an option)."""
    try:
        return _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}").decode().strip()
    except CannotGrade:
        raise CannotGrade(f"{ref!r} is not a commit of the repository at {repo}") from None


def merge_base(repo: Path, base: str, head: str) -> str:
    """Where the pull request left the base branch: changes made on the base since are not its."""
    try:
        return _git(repo, "merge-base", base, head).decode().strip()
    except CannotGrade:
        raise CannotGrade(f"{base[:12]} and {head[:12]} have no common history") from None


def changes(repo: Path, since: str, head: str) -> list[Change]:
    """What ``head`` changed since ``since``, one entry per path (a rename is a delete and an add)."""
    raw = _git(repo, "diff", "--raw", "-z", "--no-abbrev", "--no-renames", "--no-ext-diff", "--no-textconv",
               "--ignore-submodules=none", since, head, "--")
    fields = raw.split(b"\0")
    out = []
    for header, path in zip(fields[0::2], fields[1::2]):
        # ":<old mode> <new mode> <old id> <new id> <status>"
        _, new_mode, _, new_blob, status = header.decode("ascii").lstrip(":").split(" ")
        name = path.decode("utf-8", "surrogateescape")
        out.append(Change(name, CHANGE_NAMES.get(status[0], status), new_mode, new_blob))
    return sorted(out, key=lambda c: c.path)


def read_blob(repo: Path, blob: str, limit: int) -> bytes:
    size = int(_git(repo, "cat-file", "-s", blob).decode().strip())
    if size > limit:
        raise UnusableInput(f"the notebook is {size / 2**20:.0f} MiB, larger than the {limit >> 20} MiB limit")
    return _git(repo, "cat-file", "blob", blob)


# --------------------------------------------------------------------------------------- classify
def course_notebooks() -> dict[str, str]:
    """Release path of each course notebook -> its assignment id (from the registry)."""
    return {f"{RELEASE_PREFIX}{exercises[0].notebook_path}": assignment for assignment, exercises in registry.assignments().items()}


def max_points(assignment: str) -> int:
    return sum(e.points for e in registry.assignments()[assignment])


def classify(report: Report, found: Sequence[Change]) -> None:
    notebooks = course_notebooks()
    for change in found:
        if change.path in notebooks:
            assignment = notebooks[change.path]
            submission = Submission(change.path, change.change, assignment, max_points(assignment))
            if change.change == "deleted":
                submission.outcome, submission.message = Outcome.DELETED, "deleted by the pull request: nothing to grade"
            elif change.mode not in REGULAR_FILE_MODES:
                what = MODE_NAMES.get(change.mode, f"a git object of mode {change.mode}")
                submission.outcome = Outcome.UNUSABLE
                submission.message = f"the pull request makes this path {what}, not a notebook file; it was not read"
            report.submissions.append(submission)
        elif change.path.startswith(RELEASE_PREFIX) and change.path.endswith(".ipynb"):
            report.ignored_notebooks.append(Ignored(change.path, change.change, _why_not_graded(change.path, notebooks)))
        else:
            report.other_changes.append(Ignored(change.path, change.change))


def _why_not_graded(path: str, notebooks: dict[str, str]) -> str:
    folder = path[len(RELEASE_PREFIX):].split("/", 1)[0]
    expected = [p for p, assignment in notebooks.items() if assignment == folder]
    if expected:
        return f"not one of the course's notebooks: {folder} is graded from {expected[0]}"
    return "not one of the course's notebooks: not in an assignment's folder"


# ------------------------------------------------------------------------------------------ grade
def _engine() -> ModuleType:
    # Looked up when something is to be graded (it imports torch), through sys.modules so that
    # tests can stand a fake engine in.
    return importlib.import_module("autograder.grading.engine")


def grade(report: Report, repo: Path, changed: dict[str, Change], device: str, seed: int | None = None) -> None:
    pending = [s for s in report.submissions if s.outcome == Outcome.PENDING]
    if not pending:
        return
    from autograder import hidden

    refusal = hidden.refusal()
    if refusal:  # the workflow restores the hidden suites first; without them nothing is scored
        report.failure = refusal
        for submission in pending:
            submission.outcome, submission.message = Outcome.NOT_RUN, NOT_RUN_MESSAGE
        return
    engine = _engine()
    from autograder import limits

    # The job has a timeout of its own (grade-pr.yml): the whole pull request gets a budget well
    # inside it, so that the report is always written, whatever the notebooks do.
    deadline = time.monotonic() + limits.CI_SECONDS
    for submission in pending:
        if report.failure:  # fail closed: nothing more is graded once grading cannot run
            submission.outcome, submission.message = Outcome.NOT_RUN, NOT_RUN_MESSAGE
            continue
        left = deadline - time.monotonic()
        if left < 30:
            submission.outcome = Outcome.NOT_RUN
            submission.message = (f"not graded: the pull request's notebooks used up the grading time budget "
                                  f"({limits.CI_SECONDS:g} s); grade fewer notebooks per pull request")
            continue
        try:
            submission.result = _grade_one(engine, repo, changed[submission.path], submission, device, seed,
                                           min(limits.SUBMISSION_SECONDS, left))
            submission.outcome = Outcome.GRADED
        except UnusableInput as error:
            submission.outcome, submission.message = Outcome.UNUSABLE, str(error)
        except (SandboxUnavailable, CannotGrade) as error:
            report.failure = f"sandbox unavailable: {error}" if isinstance(error, SandboxUnavailable) else str(error)
            submission.outcome, submission.message = Outcome.NOT_RUN, NOT_RUN_MESSAGE
        except GraderError as error:  # retried already; never a score
            submission.outcome, submission.message = Outcome.ERROR, clip(one_line(str(error)), 300)
        except Exception as error:  # noqa: BLE001 - a grader bug: reported, never the student's fault
            if os.environ.get("AUTOGRADER_DEBUG") == "1":
                traceback.print_exc(file=sys.stderr)
            submission.outcome, submission.message = Outcome.ERROR, f"{INTERNAL}: {type(error).__name__}"


def _grade_one(engine: ModuleType, repo: Path, change: Change, submission: Submission,
               device: str, seed: int | None = None, budget_s: float | None = None) -> NotebookResult:
    from autograder.submission.notebook import MAX_NOTEBOOK_BYTES, Submitted

    # Its bytes and its path in the repository (what the student knows it by); the assignment
    # is the registry's, never the pull request's.
    submitted = Submitted(submission.path, read_blob(repo, change.blob, MAX_NOTEBOOK_BYTES))
    with contextlib.redirect_stdout(sys.stderr):  # stray prints must not corrupt a report on stdout
        result = engine.grade_notebook(submitted, device=device, sandbox=True, assignment=submission.assignment,
                                       seed=seed, **({"budget_s": budget_s} if budget_s is not None else {}))
    result.notebook = submission.path
    return result


def _write(path: Path | None, text: str) -> None:
    if path is None:
        return
    path.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


# ------------------------------------------------------------------------------------ command line
def examine(repo: Path, base: str, head: str, device: str, min_score: float | None, seed: int | None = None) -> Report:
    """Every stage but writing: the report of grading ``head`` against ``base`` in ``repo``."""
    report = Report(min_score=min_score)
    try:
        report.base = resolve(repo, base)
        report.head = resolve(repo, head)
        report.merge_base = merge_base(repo, report.base, report.head)
        found = changes(repo, report.merge_base, report.head)
    except CannotGrade as error:
        report.failure = error.message
        return report
    classify(report, found)
    grade(report, repo, {c.path: c for c in found}, device, seed)
    return report


def run(args: argparse.Namespace) -> int:
    for path in (args.markdown, args.json):
        if path is not None and not path.parent.is_dir():
            _say(f"error: cannot write the report to {path}: {path.parent} is not a directory")
            return EXIT_CANNOT_GRADE
    if args.min_score is not None and not 0 <= args.min_score <= 100:
        _say("error: --min-score is a percentage between 0 and 100")
        return EXIT_CANNOT_GRADE
    report = examine(args.repo, args.base, args.head, args.device, args.min_score, getattr(args, "seed", None))
    text = markdown(report)
    try:
        _write(args.markdown, text)
        _write(args.json, json.dumps(as_json(report), indent=2, ensure_ascii=False, allow_nan=False))
    except OSError as error:
        _say(f"error: cannot write the report: {error.strerror or error}")
        return EXIT_CANNOT_GRADE
    if args.markdown is None and args.json is None:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    if report.failure:
        _say(f"error: grading could not run: {report.failure}")
    summary = f"{len(report.scored)} notebook(s) graded: {fraction(report.score, report.max_score)}"
    _say(f"autograder ci: {report.status}; {summary}; exit status {report.exit_code}")
    return report.exit_code


def _say(message: str) -> None:
    sys.stderr.write(clip(one_line(message), 1000) + "\n")
    sys.stderr.flush()


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``ci`` subcommand, added to the command line's subparsers."""
    parser = commands.add_parser(
        "ci",
        help="grade the course notebooks a pull request changes (reads them from git as data)",
        description="Grade the notebooks under assignments/ that HEAD changes since it left BASE, reading them "
        "from git as data (nothing is checked out). Exit status: 0 graded (any score), 1 grader bug, "
        "2 could not grade (bad ref, no sandbox), 3 below --min-score.",
    )
    parser.add_argument("--base", required=True, metavar="REF", help="the branch or commit the pull request targets")
    parser.add_argument("--head", default="HEAD", metavar="REF", help="the pull request's commit (default: HEAD)")
    parser.add_argument("--repo", type=Path, default=Path("."), metavar="DIR", help="the git repository (default: .)")
    parser.add_argument("--markdown", type=Path, metavar="FILE", help="write the Markdown report to FILE")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the JSON report to FILE")
    parser.add_argument("--min-score", type=float, metavar="PERCENT",
                        help="exit 3 when a submitted notebook scores below PERCENT of its maximum (default: never)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="device the tests run on")
    parser.add_argument("--seed", type=int, help="seed of the hidden inputs (default: derived from the course "
                        "secret and each notebook's graded content)")
    parser.set_defaults(run=run)
    return parser
