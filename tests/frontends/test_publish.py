"""``python -m autograder publish``: the students' repository holds no answer, has one commit, runs the
public checks, refuses to grade, and its workflow grades a pull request from the encrypted bundle.

Answers are searched for line by line: every line of a solution region, a hidden-test region, the
reference, the hidden suites, the tests' known implementations and the sample submissions, that is
not also in the released notebooks (whose stubs and docstrings students are meant to see).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from autograder import hidden
from autograder.frontends import publish
from autograder.course import registry

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv"
KEY_VARIABLE = "AUTOGRADER_TEST_BUNDLE_KEY"
BEGIN_END = (("BEGIN SOLUTION", "END SOLUTION"), ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS"))
MIN_LINE = 12  # shorter lines (`return X`, `else:`) say nothing about an answer


@pytest.fixture(scope="module")
def students(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    key = secrets.token_urlsafe(40)
    folder = tmp_path_factory.mktemp("published") / "students"
    os.environ[KEY_VARIABLE] = key
    try:
        done = publish.publish(folder, bundle=True, key_variable=KEY_VARIABLE)
    finally:
        del os.environ[KEY_VARIABLE]
    return {"folder": folder, "key": key, "done": done}


def _git(folder: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(folder), *args], capture_output=True, text=True, check=True).stdout.strip()


def _cells(path: Path) -> list[str]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in nb["cells"]]


def _regions(source: str) -> list[str]:
    lines, inside = [], False
    for line in source.split("\n"):
        if any(begin in line for begin, _ in BEGIN_END):
            inside = True
        elif any(end in line for _, end in BEGIN_END):
            inside = False
        elif inside:
            lines.append(line)
    return lines


def _meaningful(line: str) -> str | None:
    text = line.strip()
    if len(text) < MIN_LINE or text.startswith(("#", "import ", "from ", '"""', "'''", "@")):
        return None
    return text


def _sources() -> list[tuple[str, list[str]]]:
    sources: list[tuple[str, list[str]]] = []
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        sources.append((str(path.relative_to(ROOT)), [line for cell in _cells(path) for line in _regions(cell)]))
    for folder in ("reference", "autograder/suites", "tests/fixtures/implementations"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            sources.append((str(path.relative_to(ROOT)), path.read_text(encoding="utf-8").split("\n")))
    for path in sorted((ROOT / "examples" / "submissions").rglob("*.ipynb")):
        sources.append((str(path.relative_to(ROOT)), [line for cell in _cells(path) for line in cell.split("\n")]))
    return sources


def _public() -> set[str]:
    return {line.strip() for path in (ROOT / "assignments").glob("*/*.ipynb") for cell in _cells(path)
            for line in cell.split("\n")}


def secret_lines() -> dict[str, str]:
    """line -> where it comes from, for every answer line that students must not see."""
    public = _public()
    out: dict[str, str] = {}
    for where, lines in _sources():
        for line in lines:
            text = _meaningful(line)
            if text is not None and text not in public:
                out.setdefault(text, where)
    return out


def _pairs(lines: list[str]) -> set[tuple[str, str]]:
    kept = [t for t in (_meaningful(line) for line in lines) if t is not None]
    return set(zip(kept, kept[1:]))


def secret_pairs() -> dict[tuple[str, str], str]:
    """Two consecutive answer lines -> where they come from. The grader's own code shares single
    idioms with the suites and the reference (``for p in model.parameters():``); two lines in a row
    are code copied."""
    public = _public()
    out: dict[tuple[str, str], str] = {}
    for where, lines in _sources():
        for pair in _pairs(lines):
            if not (pair[0] in public and pair[1] in public):
                out.setdefault(pair, where)
    return out


def _published_texts(folder: Path) -> dict[str, str]:
    """Every file of the published tree as text (notebooks: their cells and outputs), the bundle aside."""
    out = {}
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder).as_posix()
        if relative.startswith(".git/") or relative == publish.BUNDLE or not path.is_file():
            continue
        if path.suffix == ".ipynb":
            nb = json.loads(path.read_text(encoding="utf-8"))
            out[relative] = "\n".join(
                ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]) + "\n" + json.dumps(c.get("outputs", []))
                for c in nb["cells"])
        else:
            out[relative] = path.read_bytes().decode("utf-8", "replace")
    return out


# ----------------------------------------------------------------------------------- the tree
def test_no_answer_line_anywhere_in_the_published_tree(students: dict[str, Any]) -> None:
    """Every line of an answer, anywhere but in the grader's own code, where two lines in a row count."""
    lines_, pairs_ = secret_lines(), secret_pairs()
    assert len(lines_) > 500 and len(pairs_) > 500, "the search must cover the solutions, reference and suites"
    found = []
    for relative, text in _published_texts(students["folder"]).items():
        if relative.startswith("autograder/") and relative.endswith(".py"):
            pairs = _pairs(text.split("\n"))
            found += [f"{relative}: {pair!r} (from {where})" for pair, where in pairs_.items() if pair in pairs]
        else:
            lines = {line.strip() for line in text.split("\n")}
            found += [f"{relative}: {line!r} (from {where})" for line, where in lines_.items() if line in lines]
    assert not found, "\n".join(found[:20])


def test_every_graded_function_is_a_stub(students: dict[str, Any]) -> None:
    folder = students["folder"]
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*")
             if p.is_file() and ".git" not in p.relative_to(folder).parts}
    assert publish.implemented(files) == []
    published = [f for f in files if f.endswith(".ipynb")]
    assert sorted(published) == sorted(publish.notebooks()), "every notebook the registry declares, nothing else"
    # The detector finds every implemented function of the solutions (so it can fail).
    solutions = {p.relative_to(ROOT).as_posix(): p.read_bytes() for p in (ROOT / "solutions").glob("*/*.ipynb")}
    found = " ".join(publish.implemented(solutions))
    assert all(f"{e.name} (line" in found for e in registry.EXERCISES
               if (ROOT / "solutions" / e.notebook_path).is_file())


def test_only_what_students_need(students: dict[str, Any]) -> None:
    folder = students["folder"]
    top = sorted(p.name for p in folder.iterdir())
    assert top == sorted([".git", ".github", ".gitignore", "Makefile", "README.md", "assignments", "autograder",
                          "docs", "requirements.txt"])
    assert not (folder / "autograder" / "suites").exists()
    assert hidden.missing(folder) == ["autograder/suites", "reference"]
    assert (folder / publish.WORKFLOW).read_bytes() == (ROOT / publish.WORKFLOW).read_bytes()
    readme = (folder / "README.md").read_text(encoding="utf-8")
    first = publish.notebooks()[0]
    assert f".venv/bin/jupyter lab {first}" in readme and "make venv" in readme
    assert "pull request" in readme and "not your fault" in readme and "What it does not tell you" in readme


def test_one_fresh_commit_and_the_key_nowhere(students: dict[str, Any]) -> None:
    folder = students["folder"]
    assert _git(folder, "rev-list", "--all", "--count") == "1"
    assert _git(folder, "branch", "--format=%(refname:short)") == "main"
    assert _git(folder, "status", "--porcelain") == ""
    assert students["done"].commit == _git(folder, "rev-parse", "HEAD")
    key = students["key"].encode()
    for path in folder.rglob("*"):
        if path.is_file():
            assert key not in path.read_bytes(), path


def test_bundle_needs_a_key_from_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != publish.KEY_ENV}
    done = subprocess.run([sys.executable, "-m", "autograder", "publish", str(tmp_path / "out"), "--bundle"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert publish.KEY_ENV in done.stderr and not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    done = subprocess.run([sys.executable, "-m", "autograder", "publish", str(tmp_path / "full")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "not an empty folder" in done.stderr


def test_implemented_in_source_tells_stubs_from_answers() -> None:
    stub = 'def softmax(X):\n    """Doc."""\n    # YOUR CODE HERE\n    raise NotImplementedError()\n'
    assert publish.implemented_in_source(stub, any_signature=True) == []
    answer = "def softmax(X):\n    E = X.exp()\n    return E / E.sum(-1, keepdim=True)\n"
    assert publish.implemented_in_source(answer, any_signature=True) == ["softmax (line 1)"]
    harness = "def clip_grad(fn, args):\n    return fn(**args)\n"  # a calling-convention harness of the grader
    assert publish.implemented_in_source(harness, any_signature=False) == []


# ------------------------------------------------------------------------ running in the tree
def _in_students(folder: Path, *command: str, env: dict[str, str] | None = None,
                 timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=folder, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def working_copy(students: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of the published repository, as a student has it, with this machine's .venv."""
    clone = tmp_path_factory.mktemp("student") / "clone"
    subprocess.run(["git", "clone", "--quiet", str(students["folder"]), str(clone)], check=True)
    (clone / ".venv").symlink_to(VENV)
    return clone


def _solved(clone: Path, assignment: str) -> Path:
    """The published notebook of ``assignment`` with the course's solutions pasted in (as a student would)."""
    exercises = registry.assignments()[assignment]
    path = clone / "assignments" / assignment / exercises[0].notebook
    solution = json.loads((ROOT / "solutions" / exercises[0].notebook_path).read_text(encoding="utf-8"))
    answers = {c["metadata"]["nbgrader"]["grade_id"]: c["source"] for c in solution["cells"]
               if c["metadata"].get("nbgrader", {}).get("grade_id") in {e.name for e in exercises}}
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        grade_id = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if grade_id in answers:
            text = "".join(answers[grade_id]) if isinstance(answers[grade_id], list) else answers[grade_id]
            cell["source"] = "\n".join(line for line in text.split("\n") if "SOLUTION" not in line)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")
    return path


@pytest.mark.slow
def test_check_works_and_grade_refuses_in_the_students_repository(working_copy: Path) -> None:
    notebook = _solved(working_copy, "04_rnn").relative_to(working_copy).as_posix()
    done = _in_students(working_copy, "make", "--no-print-directory", "check", f"NB={notebook}")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "passed" in done.stdout and "pip install" not in done.stdout + done.stderr
    graded = _in_students(working_copy, ".venv/bin/python", "-m", "autograder", "grade", notebook)
    assert graded.returncode == 2 and graded.stdout == ""
    assert graded.stderr.count("\n") == 1 and "students' repository" in graded.stderr, graded.stderr


def _step(workflow: dict[str, Any], name: str) -> str:
    for job in workflow["jobs"].values():
        for step in job.get("steps", []):
            if step.get("name", "").startswith(name):
                return step["run"]
    raise AssertionError(f"no step {name!r} in the workflow")


@pytest.mark.slow
def test_the_workflow_restores_the_bundle_and_grades_a_pull_request(students: dict[str, Any], working_copy: Path,
                                                                   tmp_path: Path) -> None:
    """The commands of grade-pr.yml's steps, run as the workflow runs them, on a local pull request."""
    clone = working_copy
    trusted = _git(clone, "rev-parse", "HEAD")
    _git(clone, "switch", "--quiet", "-c", "pr")
    _solved(clone, "04_rnn")
    _git(clone, "-c", "user.name=Student", "-c", "user.email=s@example.invalid", "commit", "--quiet", "-am", "rnn")
    head = _git(clone, "rev-parse", "HEAD")
    _git(clone, "switch", "--quiet", "--detach", trusted)  # the workflow checks out the trusted commit only
    workflow = yaml.load((clone / publish.WORKFLOW).read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    runner = tmp_path / "runner"
    (runner / "gnupg").mkdir(parents=True, mode=0o700)
    env = {"RUNNER_TEMP": str(runner), "GNUPGHOME": str(runner / "gnupg"), "SUITES_REPO": "", "SUITES_REF": "",
           "SUITES_PATHS": "", "SUITES_BUNDLE": "", "SUITES_TOKEN": "", "SUITES_KEY": students["key"],
           "SERVER_URL": "https://github.invalid"}
    try:
        restore = _in_students(clone, "bash", "-e", "-c", _step(workflow, "Install the hidden suites"), env=env)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(runner / "gnupg"), "--kill", "all"], capture_output=True)
    assert restore.returncode == 0, restore.stdout + restore.stderr
    assert "encrypted bundle" in restore.stdout and hidden.missing(clone) == []
    summary, output = runner / "summary.md", runner / "output.txt"
    env = {"RUNNER_TEMP": str(runner), "TRUSTED_SHA": trusted, "PR_HEAD_SHA": head,
           "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)}
    graded = _in_students(clone, "bash", "-c", _step(workflow, "Grade the pull request"), env=env)
    assert graded.returncode == 0, graded.stdout[-2000:] + graded.stderr[-3000:]
    report = json.loads((runner / "grade-report" / "report.json").read_text(encoding="utf-8"))
    [notebook] = report["notebooks"]
    assert notebook["path"] == "assignments/04_rnn/rnn.ipynb" and notebook["outcome"] == "graded"
    assert notebook["score"] == notebook["max_score"] == sum(e.points for e in registry.assignments()["04_rnn"])
    assert summary.read_text(encoding="utf-8").startswith("<!-- autograder-ci -->")
    assert output.read_text(encoding="utf-8").startswith("report=")
