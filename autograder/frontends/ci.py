"""Grading a pull request: ``python -m autograder ci --base REF [--head REF]``.

The command runs in the *trusted* checkout (the base branch): its grader, its hidden suites and its
released notebooks are the ones that count. The pull request is only data. Nothing is checked out
from it and nothing of it is imported: its changes are listed with ``git diff --raw`` and each
changed course notebook is read as bytes from the object database (``git cat-file blob``) into a
temporary directory, then graded in the sandbox exactly as ``grade`` does. Every other change
(tests, workflows, the grader's own files) is reported and never executed.

Stages: resolve refs → list changes → classify → read notebooks as data → grade each → summarise
(Markdown for the job summary and the pull-request comment, JSON) → exit status.

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
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Sequence

from autograder.course import registry
from autograder.errors import INTERNAL, AutogradeError, GraderError, SandboxUnavailable, UnusableInput
from autograder.report import render
from autograder.report.common import clip, fraction, one_line, visible
from autograder.report.json import as_data
from autograder.report.markdown import STATUS_EMOJI, code_block, inline
from autograder.report.results import NotebookResult

EXIT_OK, EXIT_INTERNAL, EXIT_CANNOT_GRADE, EXIT_BELOW_MIN_SCORE = 0, 1, 2, 3

#: First line of the Markdown report; the workflow finds its own comment by it and updates it.
COMMENT_MARKER = "<!-- autograder-ci -->"
#: UTF-8 bytes of the Markdown. GitHub refuses comments over 65,536 characters, and the workflow
#: passes the report base64-encoded through an environment variable (at most 128 KiB on Linux);
#: past this the per-exercise details are left to the JSON report.
COMMENT_LIMIT = 60_000
#: Changes listed by name in the Markdown (the JSON keeps up to JSON_LIST_LIMIT).
LIST_LIMIT = 50
JSON_LIST_LIMIT = 1000
SCHEMA = "autograder-ci/1"

RELEASE_PREFIX = "assignments/"
REGULAR_FILE_MODES = ("100644", "100755")
MODE_NAMES = {"120000": "a symbolic link", "160000": "a submodule", "040000": "a directory"}
CHANGE_NAMES = {"A": "added", "M": "modified", "D": "deleted", "T": "type changed", "U": "unmerged"}


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


@dataclass
class Submission:
    """A changed course notebook and what came of it."""

    path: str
    change: str
    assignment: str
    outcome: str = "pending"  # graded | unusable | error | deleted | not_run
    message: str = ""
    result: NotebookResult | None = None

    @property
    def score(self) -> float:
        return self.result.score if self.result is not None else 0.0

    @property
    def max_score(self) -> float:
        return self.result.max_score if self.result is not None else float(max_points(self.assignment))

    @property
    def scored(self) -> bool:
        """Counts towards the total and the minimum score: what the pull request submitted."""
        return self.outcome in ("graded", "unusable")


@dataclass
class Ignored:
    path: str
    change: str
    reason: str = ""


@dataclass
class Report:
    base: str = ""
    head: str = ""
    merge_base: str = ""
    submissions: list[Submission] = field(default_factory=list)
    ignored_notebooks: list[Ignored] = field(default_factory=list)
    other_changes: list[Ignored] = field(default_factory=list)
    failure: str = ""  # why grading could not run at all (exit 2)
    min_score: float | None = None  # percent of each notebook's maximum

    @property
    def scored(self) -> list[Submission]:
        return [s for s in self.submissions if s.scored]

    @property
    def score(self) -> float:
        return round(sum(s.score for s in self.scored), 6)

    @property
    def max_score(self) -> float:
        return sum(s.max_score for s in self.scored)

    def below_min_score(self) -> list[Submission]:
        if self.min_score is None:
            return []
        return [s for s in self.scored if s.max_score > 0 and 100 * s.score / s.max_score < self.min_score - 1e-9]

    @property
    def exit_code(self) -> int:
        if self.failure:
            return EXIT_CANNOT_GRADE
        if any(s.outcome == "error" for s in self.submissions):
            return EXIT_INTERNAL
        if self.below_min_score():
            return EXIT_BELOW_MIN_SCORE
        return EXIT_OK

    @property
    def status(self) -> str:
        if self.failure:
            return "not_graded"
        if not self.scored:
            return "nothing_to_grade"  # no change to a course notebook, or only deletions
        return "graded"


def classify(report: Report, found: Sequence[Change]) -> None:
    notebooks = course_notebooks()
    for change in found:
        if change.path in notebooks:
            submission = Submission(change.path, change.change, notebooks[change.path])
            if change.change == "deleted":
                submission.outcome, submission.message = "deleted", "deleted by the pull request: nothing to grade"
            elif change.mode not in REGULAR_FILE_MODES:
                what = MODE_NAMES.get(change.mode, f"a git object of mode {change.mode}")
                submission.outcome = "unusable"
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
    pending = [s for s in report.submissions if s.outcome == "pending"]
    if not pending:
        return
    from autograder import hidden

    refusal = hidden.refusal()
    if refusal:  # the workflow restores the hidden suites first; without them nothing is scored
        report.failure = refusal
        for submission in pending:
            submission.outcome, submission.message = "not_run", "not graded: grading could not run"
        return
    engine = _engine()
    from autograder import limits

    # The job has a timeout of its own (grade-pr.yml): the whole pull request gets a budget well
    # inside it, so that the report is always written, whatever the notebooks do.
    deadline = time.monotonic() + limits.CI_SECONDS
    for submission in pending:
        if report.failure:  # fail closed: nothing more is graded once grading cannot run
            submission.outcome, submission.message = "not_run", "not graded: grading could not run"
            continue
        left = deadline - time.monotonic()
        if left < 30:
            submission.outcome = "not_run"
            submission.message = (f"not graded: the pull request's notebooks used up the grading time budget "
                                  f"({limits.CI_SECONDS:g} s); grade fewer notebooks per pull request")
            continue
        try:
            submission.result = _grade_one(engine, repo, changed[submission.path], submission, device, seed,
                                           min(limits.SUBMISSION_SECONDS, left))
            submission.outcome = "graded"
        except UnusableInput as error:
            submission.outcome, submission.message = "unusable", str(error)
        except (SandboxUnavailable, CannotGrade) as error:
            report.failure = f"sandbox unavailable: {error}" if isinstance(error, SandboxUnavailable) else str(error)
            submission.outcome, submission.message = "not_run", "not graded: grading could not run"
        except GraderError as error:  # retried already; never a score
            submission.outcome, submission.message = "error", clip(one_line(str(error)), 300)
        except Exception as error:  # noqa: BLE001 - a grader bug: reported, never the student's fault
            if os.environ.get("AUTOGRADER_DEBUG") == "1":
                traceback.print_exc(file=sys.stderr)
            submission.outcome, submission.message = "error", f"{INTERNAL}: {type(error).__name__}"


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


# ------------------------------------------------------------------------------------ reports
def _short(commit: str) -> str:
    return f"`{commit[:12]}`" if commit else "?"


def _outcome_cell(submission: Submission) -> str:
    if submission.outcome == "graded" and submission.result is not None:
        statuses = {e.status for e in submission.result.exercises}
        emoji = "✅" if statuses == {"passed"} else STATUS_EMOJI.get("partial" if submission.score > 0 else "failed")
        return f"{emoji} graded" + ("" if submission.result.official else " (unofficial)")
    return {
        "unusable": "⚠️ could not be graded",
        "error": f"💥 {INTERNAL}",
        "deleted": "🗑️ deleted, not graded",
        "not_run": "⏸️ not graded",
    }.get(submission.outcome, inline(submission.outcome))


def _score_cell(submission: Submission) -> str:
    return fraction(submission.score, submission.max_score) if submission.scored else "—"


def _listing(items: Sequence[Ignored], with_reason: bool) -> list[str]:
    lines = []
    for item in items[:LIST_LIMIT]:
        reason = f" — {inline(item.reason)}" if with_reason and item.reason else ""
        lines.append(f"- {inline(item.change)}: {inline(item.path)}{reason}")
    if len(items) > LIST_LIMIT:
        lines.append(f"- … and {len(items) - LIST_LIMIT} more")
    return lines


def _overview(report: Report) -> list[str]:
    lines = [COMMENT_MARKER, "## 🎓 Autograder: pull request", ""]
    if report.head:
        lines += [f"Graded the notebooks that {_short(report.head)} changes since {_short(report.merge_base)}, "
                  f"with the course's own grader and hidden tests; nothing else from the pull request was run.", ""]
    if report.failure:
        lines += ["> [!WARNING]", f"> **Grading could not run**: {inline(clip(report.failure, 500))}",
                  "> This is not your fault, and no score was recorded; the course staff can see the failed run.", ""]
    if not report.submissions and not report.failure:
        lines += ["No course notebook under `assignments/` changed: nothing to grade.", ""]
    if report.submissions:
        lines += ["| Notebook | Change | Result | Score |", "|---|---|---|---:|"]
        for s in report.submissions:
            lines.append(f"| {inline(s.path)} | {inline(s.change)} | {_outcome_cell(s)} | {_score_cell(s)} |")
        if report.scored:
            lines.append(f"| **Total** | | | **{fraction(report.score, report.max_score)}** |")
        lines.append("")
    if report.min_score is not None and report.scored:
        below = report.below_min_score()
        verdict = "❌ not reached by " + ", ".join(inline(s.path) for s in below) if below else "✅ reached"
        lines += [f"Minimum score: {report.min_score:g} % of each notebook — {verdict}.", ""]
    return lines


def _problems(report: Report) -> list[str]:
    lines = []
    problems = [s for s in report.submissions if s.outcome in ("unusable", "error")]
    if problems:
        lines += ["### Could not be graded", ""]
        for s in problems:
            lines += [f"**{inline(s.path)}**", "", code_block(s.message), ""]
    if report.ignored_notebooks:
        lines += ["### Notebooks not graded", ""] + _listing(report.ignored_notebooks, True) + [""]
    if report.other_changes:
        lines += ["### Other changes (reported, not run)", "",
                  "The grader, its tests and the workflows come from the base branch; these changes are listed "
                  "for the reviewer and were not executed.", ""]
        lines += _listing(report.other_changes, False) + [""]
    return lines


def markdown(report: Report) -> str:
    """The job summary and pull-request comment; the first line is :data:`COMMENT_MARKER`."""
    # One section per graded notebook, as ``grade --format markdown`` renders it.
    details = [line for s in report.submissions if s.result is not None for line in (render(s.result, "markdown"), "")]
    full = "\n".join(_overview(report) + details + _problems(report))
    if _size(full) <= COMMENT_LIMIT:
        return full
    # Too long for a comment: keep the overview and say where the rest is.
    short = "\n".join(_overview(report) + ["The per-exercise details are too long for a comment: see the JSON "
                                           "report of the grading run.", ""] + _problems(report))
    limit = COMMENT_LIMIT
    while _size(short) > COMMENT_LIMIT:  # clip counts characters; a character is up to 4 bytes
        limit //= 2
        short = clip(short, limit)
    return short


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def as_json(report: Report) -> dict[str, Any]:
    def listed(items: Sequence[Ignored]) -> list[dict[str, str]]:
        return [{"path": visible(i.path), "change": i.change, "reason": visible(i.reason)} for i in items[:JSON_LIST_LIMIT]]

    return {
        "schema": SCHEMA,
        "status": report.status,
        "exit_code": report.exit_code,
        "failure": visible(report.failure),
        "base": report.base,
        "head": report.head,
        "merge_base": report.merge_base,
        "score": report.score,
        "max_score": report.max_score,
        "min_score_percent": report.min_score,
        "below_min_score": [visible(s.path) for s in report.below_min_score()],
        "notebooks": [
            {
                "path": visible(s.path),
                "assignment": s.assignment,
                "change": s.change,
                "outcome": s.outcome,
                "message": visible(s.message),
                "score": s.score if s.scored else None,
                "max_score": s.max_score,
                "result": as_data(s.result) if s.result is not None else None,
            }
            for s in report.submissions
        ],
        "ignored_notebooks": listed(report.ignored_notebooks),
        "other_changes": listed(report.other_changes),
        "other_changes_total": len(report.other_changes),
    }


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
