"""The command line: ``python -m autograder grade | check | demo``.

Thin on purpose: parse the arguments, call the engine, render, write. Exit statuses:

- 0 — grading completed, whatever the score;
- 2 — the input cannot be graded (``UnusableInput``), or official grading needs a sandbox this
  machine cannot start (``SandboxUnavailable``): one line on stderr;
- 1 — anything else is a grader bug: one line on stderr saying it is not the student's fault, and
  the traceback only when ``AUTOGRADER_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import shutil
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TextIO

from autograder import hidden
from autograder.frontends import publish
from autograder.course import registry
from autograder.frontends import batch, ci
from autograder.errors import (EXIT_INTERNAL, EXIT_OK, EXIT_UNUSABLE, INTERNAL_FOR_STAFF, GraderError,
                               SandboxUnavailable, UnusableInput)
from autograder.report import FORMATS, render, text
from autograder.report.common import clip, one_line
from autograder.report.results import NotebookResult

SUBMISSIONS = Path(__file__).resolve().parents[2] / "examples" / "submissions"
SANDBOX_HINT = "use --no-sandbox for an unofficial run that does not count"
DEMO_BANNER = "UNOFFICIAL DEMO: no sandbox here, so the submissions are graded without it; these scores do not count."


def _engine() -> ModuleType:
    # Imported when a command runs (it imports torch), and looked up in sys.modules so that tests
    # can stand in a fake engine.
    return importlib.import_module("autograder.grading.engine")


def _emit(report: str, stream: TextIO) -> None:
    report = report if report.endswith("\n") else report + "\n"
    try:
        stream.write(report)
    except UnicodeEncodeError:  # a terminal that cannot show some character: escape it instead
        encoding = stream.encoding or "ascii"
        stream.write(report.encode(encoding, "backslashreplace").decode(encoding))
    stream.flush()


def _say(message: str) -> None:
    """One line on stderr."""
    _emit(clip(one_line(message), 1000), sys.stderr)


def _terminal_text(results: NotebookResult | list[NotebookResult]) -> str:
    """The text report, in color and at the terminal's width when stdout is a terminal."""
    if sys.stdout.isatty():
        return text.render(results, color=True, width=shutil.get_terminal_size().columns)
    return text.render(results)


def _publish(result: NotebookResult, fmt: str, output: Path | None) -> None:
    if output is not None:
        output.write_text(render(result, fmt), encoding="utf-8")
        _say(f"wrote the {fmt} report to {output}")
    elif fmt == "text":
        _emit(_terminal_text(result), sys.stdout)
    else:
        _emit(render(result, fmt), sys.stdout)


def _check_output(output: Path | None) -> None:
    # Fail before grading, not after: a typo in --output should not cost a grading run.
    if output is not None and output.is_dir():
        raise UnusableInput(f"cannot write the report to {output}: it is a directory")
    if output is not None and not output.parent.is_dir():
        raise UnusableInput(f"cannot write the report to {output}: {output.parent} is not a directory")


def _quietly(call: Callable[..., NotebookResult], *args: object, **kwargs: object) -> NotebookResult:
    """Call the engine with stray prints sent to stderr: they must not corrupt a JSON report."""
    with contextlib.redirect_stdout(sys.stderr):
        return call(*args, **kwargs)


def _grade(args: argparse.Namespace) -> int:
    refusal = hidden.refusal()
    if refusal:  # the students' repository: no hidden tests, so no score at all rather than zeros
        raise UnusableInput(refusal)
    _check_output(args.output)
    result = _quietly(
        _engine().grade_notebook,
        args.notebook,
        device=args.device,
        sandbox=not args.no_sandbox,
        assignment=args.assignment,
        seed=args.seed,
    )
    _publish(result, args.format, args.output)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    _check_output(args.output)
    _publish(_quietly(_engine().check_notebook, args.notebook, assignment=args.assignment), args.format, args.output)
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    notebooks = sorted(p for p in args.submissions.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    if not notebooks:
        raise UnusableInput(f"no notebooks in {args.submissions}")
    grade = _engine().grade_notebook
    sandbox = True
    results: list[NotebookResult] = []
    unusable: list[str] = []
    for path in notebooks:
        try:
            try:
                result = _quietly(grade, path, device=args.device, sandbox=sandbox)
            except SandboxUnavailable as error:
                if not sandbox:
                    raise
                # The demo only (never `grade`): show what grading does where no sandbox can run.
                _say(f"{error}; the demo goes on WITHOUT the sandbox")
                _emit(text.banner(DEMO_BANNER, color=sys.stdout.isatty()), sys.stdout)
                sandbox = False
                result = _quietly(grade, path, device=args.device, sandbox=False)
        except UnusableInput as error:
            unusable.append(f"{path.relative_to(args.submissions)}: unusable input: {error}")
            continue
        result.notebook = str(path.relative_to(args.submissions))  # the student folder tells them apart
        results.append(result)
        _emit(_terminal_text(result), sys.stdout)
    if results:
        _emit("", sys.stdout)
        _emit(text.to_string(text.summary_table(results), color=sys.stdout.isatty()), sys.stdout)
    for line in unusable:
        _emit(one_line(line), sys.stdout)
    return EXIT_OK


def _add_submission_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("notebook", type=Path, metavar="NOTEBOOK.ipynb", help="the submitted notebook")
    parser.add_argument("--format", choices=FORMATS, default="text", help="report format (default: text)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the report to FILE instead of stdout")
    parser.add_argument("--assignment", choices=sorted(registry.assignments()), help="assignment id (default: from the notebook)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description="Grade notebook submissions of the course.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    grade = commands.add_parser("grade", help="grade a submission with the hidden tests (official in the sandbox)")
    _add_submission_options(grade)
    grade.add_argument("--device", choices=("cpu", "cuda", "meta"), default="cpu", help="device the tests run on")
    grade.add_argument("--no-sandbox", action="store_true", help="run without the sandbox: the result is UNOFFICIAL")
    grade.add_argument("--seed", type=int, help="seed of the grader's random inputs (default: derived from the course secret and "
                       "the notebook's graded content: the same notebook always gets the same inputs)")
    grade.set_defaults(run=_grade)

    check = commands.add_parser("check", help="run the public checks only (never counts)")
    _add_submission_options(check)
    check.set_defaults(run=_check)

    demo = commands.add_parser("demo", help="grade every example submission and summarise")
    demo.add_argument("--submissions", type=Path, default=SUBMISSIONS, metavar="DIR", help=argparse.SUPPRESS)
    demo.add_argument("--device", choices=("cpu", "cuda", "meta"), default="cpu", help="device the tests run on")
    demo.set_defaults(run=_demo)

    ci.add_parser(commands)  # grading a pull request: autograder/frontends/ci.py
    batch.add_parser(commands)  # grading a class: autograder/frontends/batch/
    publish.add_parser(commands)  # the students' repository: autograder/frontends/publish.py
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except UnusableInput as error:
        _say(f"error: {error}")
        return EXIT_UNUSABLE
    except SandboxUnavailable as error:
        _say(f"error: {error} ({SANDBOX_HINT})")
        return EXIT_UNUSABLE
    except GraderError as error:  # never a score: not the student's fault, and said so
        _say(error.line())
        return EXIT_INTERNAL
    except OSError as error:
        if getattr(args, "output", None) is not None and error.filename == str(args.output):
            _say(f"error: cannot write the report to {args.output}: {error.strerror}")
            return EXIT_UNUSABLE
        return _internal_error(error)
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
    except Exception as error:  # noqa: BLE001 - every other failure is the grader's, reported as such
        return _internal_error(error)


def _internal_error(error: Exception) -> int:
    if os.environ.get("AUTOGRADER_DEBUG") == "1":
        traceback.print_exc(file=sys.stderr)
    detail = one_line(error)
    _say(f"{INTERNAL_FOR_STAFF}: {type(error).__name__}" + (f": {detail}" if detail else ""))
    return EXIT_INTERNAL
