"""The command line: arguments reach the engine, reports reach stdout or a file, and the exit
status contract holds (0 graded, 2 unusable input or no sandbox, 1 grader bug), each failure as
one line on stderr without a traceback.

Most tests stand a fake engine in for ``autograder.grading.engine``; the subprocess tests at the end use
the real one.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from autograder.frontends import cli
from autograder.errors import AutogradeError, SandboxUnavailable, UnusableInput
from autograder.report import render
from autograder.report.results import ExerciseResult, NotebookResult
from autograder.report.results import TestResult as Outcome  # aliased: pytest would collect a Test* name

ROOT = Path(__file__).resolve().parents[2]


def _result(notebook: str = "rl.ipynb", official: bool = True, score: float = 0.0) -> NotebookResult:
    return NotebookResult(
        notebook=notebook,
        assignment="07_rl",
        official=official,
        exercises=[
            ExerciseResult(
                "q_learning_update",
                score,
                10,
                "passed" if score == 10 else "failed",
                [Outcome("test_update", score == 10, score, 10, "" if score == 10 else "Q[0, 1] is 0.0, expected 1.4")],
            )
        ],
    )


class FakeEngine(types.ModuleType):
    """Stands in for ``autograder.grading.engine``; records its calls, does what ``behaviour`` says."""

    def __init__(self) -> None:
        super().__init__("autograder.grading.engine")
        self.calls: list[tuple[str, Any, dict[str, Any]]] = []
        self.behaviour: Callable[[str, Any, dict[str, Any]], NotebookResult] = lambda kind, path, kw: _result(
            Path(path).name, official=kw.get("sandbox", False)
        )

    def grade_notebook(self, path: Any, **kwargs: Any) -> NotebookResult:
        self.calls.append(("grade", path, kwargs))
        return self.behaviour("grade", path, kwargs)

    def check_notebook(self, path: Any, **kwargs: Any) -> NotebookResult:
        self.calls.append(("check", path, kwargs))
        return self.behaviour("check", path, kwargs)


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> FakeEngine:
    fake = FakeEngine()
    monkeypatch.setitem(sys.modules, "autograder.grading.engine", fake)
    monkeypatch.delenv("AUTOGRADER_DEBUG", raising=False)
    return fake


def _raise(error: BaseException) -> Callable[..., NotebookResult]:
    def behaviour(*_: Any) -> NotebookResult:
        raise error

    return behaviour


def _one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# ---------------------------------------------------------------- grade and check


def test_grade_passes_the_options_to_the_engine(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grade", "sub/rl.ipynb"]) == 0
    assert engine.calls == [("grade", Path("sub/rl.ipynb"), {"device": "cpu", "sandbox": True, "assignment": None, "seed": None})]
    args = ["grade", "rl.ipynb", "--device", "meta", "--no-sandbox", "--assignment", "07_rl", "--seed", "7"]
    assert cli.main(args) == 0
    assert engine.calls[-1][2] == {"device": "meta", "sandbox": False, "assignment": "07_rl", "seed": 7}


def test_grade_exits_0_whatever_the_score_and_prints_the_report(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grade", "rl.ipynb", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == _result(official=True).to_json()  # stdout is exactly one JSON object
    assert err == ""


@pytest.mark.parametrize("fmt", ["text", "json", "markdown", "gradescope", "junit"])
def test_grade_renders_every_format(engine: FakeEngine, capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    assert cli.main(["grade", "rl.ipynb", "--format", fmt]) == 0
    assert capsys.readouterr().out == render(_result(official=True), fmt)


def test_unofficial_runs_say_so(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["grade", "rl.ipynb", "--no-sandbox"]) == 0
    assert "UNOFFICIAL" in capsys.readouterr().out
    assert cli.main(["check", "rl.ipynb", "--format", "markdown"]) == 0
    assert engine.calls[-1] == ("check", Path("rl.ipynb"), {"assignment": None})
    assert cli.main(["check", "rl.ipynb", "--assignment", "07_rl"]) == 0
    assert engine.calls[-1] == ("check", Path("rl.ipynb"), {"assignment": "07_rl"})
    assert "UNOFFICIAL" in capsys.readouterr().out


def test_stray_prints_of_the_engine_do_not_corrupt_stdout(engine: FakeEngine, capsys: pytest.CaptureFixture[str]) -> None:
    def noisy(kind: str, path: Any, kw: dict[str, Any]) -> NotebookResult:
        print("progress: grading...")
        return _result()

    engine.behaviour = noisy
    assert cli.main(["grade", "rl.ipynb", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    json.loads(out)
    assert "progress" in err


def test_output_writes_the_report_to_a_file(engine: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    target = tmp_path / "report.xml"
    assert cli.main(["grade", "rl.ipynb", "--format", "junit", "--output", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert str(target) in _one_line(err)
    assert target.read_text(encoding="utf-8") == render(_result(official=True), "junit")


def test_output_into_a_missing_directory_is_refused_before_grading(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert cli.main(["grade", "rl.ipynb", "--output", str(tmp_path / "nope" / "r.json")]) == 2
    assert "cannot write the report" in _one_line(capsys.readouterr().err)
    assert cli.main(["grade", "rl.ipynb", "--output", str(tmp_path)]) == 2
    assert "is a directory" in _one_line(capsys.readouterr().err)
    assert engine.calls == []


# ---------------------------------------------------------------- the exit status contract


@pytest.mark.parametrize("command", [["grade", "x.ipynb"], ["check", "x.ipynb"]])
def test_unusable_input_exits_2_with_one_line(engine: FakeEngine, capsys: pytest.CaptureFixture[str], command: list[str]) -> None:
    engine.behaviour = _raise(UnusableInput("x.ipynb is not JSON:\nExpecting value: line 1 column 1"))
    assert cli.main(command) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_line(err) == "error: x.ipynb is not JSON: Expecting value: line 1 column 1"


def test_missing_sandbox_exits_2_with_a_hint_and_grade_never_falls_back(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.behaviour = _raise(SandboxUnavailable("no sandbox: bwrap not found"))
    assert cli.main(["grade", "rl.ipynb"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == "error: no sandbox: bwrap not found (use --no-sandbox for an unofficial run that does not count)"
    assert len(engine.calls) == 1


def test_a_grader_bug_exits_1_with_one_line_saying_not_the_students_fault(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    engine.behaviour = _raise(KeyError("softmax\nsecond line"))
    assert cli.main(["grade", "rl.ipynb", "--format", "json"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert _one_line(err) == "internal grader error (not the student's fault): KeyError: 'softmax\\nsecond line'"


def test_a_grader_bug_shows_the_traceback_only_when_debugging(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.behaviour = _raise(RuntimeError("boom"))
    monkeypatch.setenv("AUTOGRADER_DEBUG", "1")
    assert cli.main(["grade", "rl.ipynb"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err
    assert err.splitlines()[-1] == "internal grader error (not the student's fault): RuntimeError: boom"


def test_errors_share_a_base_class() -> None:
    assert issubclass(UnusableInput, AutogradeError) and issubclass(SandboxUnavailable, AutogradeError)
    assert UnusableInput("m").message == "m"


# ---------------------------------------------------------------- demo


def _submissions(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "submissions"
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("{}")
    return folder


def test_demo_grades_every_submission_in_order_with_a_summary(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = _submissions(tmp_path, ["b/rl.ipynb", "a.ipynb", ".ipynb_checkpoints/a-checkpoint.ipynb"])
    assert cli.main(["demo", "--submissions", str(folder)]) == 0
    assert [(kind, path, kw["sandbox"]) for kind, path, kw in engine.calls] == [
        ("grade", folder / "a.ipynb", True),
        ("grade", folder / "b" / "rl.ipynb", True),
    ]
    out = capsys.readouterr().out
    assert out.index("a.ipynb") < out.index("rl.ipynb") < out.index("Summary")
    assert "UNOFFICIAL" not in out


def test_demo_without_a_sandbox_falls_back_and_says_unofficial(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = _submissions(tmp_path, ["a.ipynb", "b.ipynb"])

    def no_sandbox(kind: str, path: Any, kw: dict[str, Any]) -> NotebookResult:
        if kw["sandbox"]:
            raise SandboxUnavailable("no sandbox: bwrap not found")
        return _result(Path(path).name, official=False)

    engine.behaviour = no_sandbox
    assert cli.main(["demo", "--submissions", str(folder)]) == 0
    assert [kw["sandbox"] for _, _, kw in engine.calls] == [True, False, False]
    out, err = capsys.readouterr()
    assert out.startswith("UNOFFICIAL DEMO")
    assert out.count("[UNOFFICIAL]") == 2 and "Summary" in out
    assert _one_line(err) == "no sandbox: bwrap not found; the demo goes on WITHOUT the sandbox"


def test_demo_reports_an_unusable_submission_and_goes_on(
    engine: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    folder = _submissions(tmp_path, ["a.ipynb", "broken.ipynb"])

    def broken(kind: str, path: Any, kw: dict[str, Any]) -> NotebookResult:
        if Path(path).name == "broken.ipynb":
            raise UnusableInput("broken.ipynb is not JSON")
        return _result(Path(path).name)

    engine.behaviour = broken
    assert cli.main(["demo", "--submissions", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "broken.ipynb: unusable input: broken.ipynb is not JSON" in out and "Summary" in out


def test_demo_without_submissions_exits_2(engine: FakeEngine, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["demo", "--submissions", str(tmp_path)]) == 2
    assert "no notebooks" in _one_line(capsys.readouterr().err)


# ---------------------------------------------------------------- as a process


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "AUTOGRADER_DEBUG": "0", **(env or {})},
    )


def test_module_help_runs_without_the_engine() -> None:
    done = _run("-m", "autograder", "--help")
    assert done.returncode == 0 and "grade" in done.stdout and "demo" in done.stdout


def test_a_grader_bug_in_a_real_process_is_one_line() -> None:
    script = (
        "import sys, types\n"
        "fake = types.ModuleType('autograder.grading.engine')\n"
        "def grade_notebook(path, **kw): raise ZeroDivisionError('division by zero')\n"
        "fake.grade_notebook = grade_notebook\n"
        "sys.modules['autograder.grading.engine'] = fake\n"
        "from autograder.frontends.cli import main\n"
        "raise SystemExit(main(['grade', 'rl.ipynb']))\n"
    )
    done = _run("-c", script)
    assert done.returncode == 1 and done.stdout == ""
    assert _one_line(done.stderr) == "internal grader error (not the student's fault): ZeroDivisionError: division by zero"


needs_engine = pytest.mark.skipif(
    importlib.util.find_spec("autograder.grading.engine") is None, reason="autograder/grading/engine.py not written yet"
)


def _not_a_notebook(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "text.ipynb").write_text("this is not JSON {", encoding="utf-8")
    (tmp_path / "list.ipynb").write_text("[1, 2, 3]", encoding="utf-8")
    (tmp_path / "object.ipynb").write_text('{"hello": "world"}', encoding="utf-8")
    (tmp_path / "folder.ipynb").mkdir()
    return {
        "missing": tmp_path / "missing.ipynb",
        "not JSON": tmp_path / "text.ipynb",
        "JSON list": tmp_path / "list.ipynb",
        "JSON, not a notebook": tmp_path / "object.ipynb",
        "a directory": tmp_path / "folder.ipynb",
    }


@needs_engine
@pytest.mark.slow
@pytest.mark.parametrize(
    "case, command",
    [  # every kind of unusable input once, and each command once (a process costs a torch import)
        ("missing", ["grade"]),
        ("not JSON", ["grade"]),
        ("JSON, not a notebook", ["grade"]),
        ("a directory", ["grade", "--no-sandbox"]),
        ("JSON list", ["check"]),
    ],
)
def test_unusable_input_exits_2_in_a_real_process(tmp_path: Path, case: str, command: list[str]) -> None:
    path = _not_a_notebook(tmp_path)[case]
    done = _run("-m", "autograder", command[0], str(path), *command[1:])
    assert done.returncode == 2, done.stderr
    line = _one_line(done.stderr)
    assert line.startswith("error: ") and "sandbox" not in line  # the input is checked before the sandbox
    assert done.stdout == ""
