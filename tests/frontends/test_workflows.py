"""The GitHub Actions workflows: clean under actionlint and zizmor (offline), and in the secure
pattern that docs/ci.md describes, checked on the parsed YAML.

actionlint runs ShellCheck on every ``run:`` script when ``shellcheck`` is on PATH (Debian package
``shellcheck``); the scripts are kept clean under it either way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from autograder.report import pull_request

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
GRADE_PR = ROOT / ".github" / "workflows" / "grade-pr.yml"
FULL_SHA = re.compile(r"^[^@\s]+@[0-9a-f]{40}$")


def _tool(name: str) -> str:
    """A tool pinned in requirements.txt, from this interpreter's environment first."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: it is pinned in requirements.txt (run `make venv`)")
    return found


def _load(path: Path) -> dict[str, Any]:
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # keys stay strings ("on")
    assert isinstance(data, dict), path
    return data


def _steps(workflow: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    for job_id, job in workflow["jobs"].items():
        for step in job.get("steps", []):
            yield job_id, job, step


def test_there_are_workflows() -> None:
    assert GRADE_PR in WORKFLOWS


def test_actionlint_is_clean() -> None:
    done = subprocess.run([_tool("actionlint"), "-no-color", *map(str, WORKFLOWS)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("persona", ["regular", "auditor"])
def test_zizmor_is_clean_offline(persona: str) -> None:
    # --offline: no network here; --no-config: no configuration file can switch an audit off (the
    # one deliberate exception is an inline, explained `zizmor: ignore` in grade-pr.yml).
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    done = subprocess.run(
        [_tool("zizmor"), "--offline", "--no-config", "--no-progress", "--color=never", f"--persona={persona}",
         "--format=plain", *map(str, WORKFLOWS)],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout, done.stdout


def test_the_only_ignored_zizmor_finding_is_the_trigger_itself() -> None:
    ignores = [line.strip() for path in WORKFLOWS for line in path.read_text(encoding="utf-8").splitlines()
               if "zizmor: ignore" in line]
    assert ignores == [next(line.strip() for line in GRADE_PR.read_text().splitlines() if "pull_request_target:" in line)]
    assert "ignore[dangerous-triggers]" in ignores[0]


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_least_privilege_and_no_unpinned_actions(path: Path) -> None:
    workflow = _load(path)
    assert workflow.get("permissions") == {}, "the workflow grants nothing by default; each job asks for its own"
    allowed = {"contents": "read", "pull-requests": "write"}
    for job_id, job in workflow["jobs"].items():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{job_id} must declare its permissions"
        for scope, level in permissions.items():
            assert allowed.get(scope) == level, f"{job_id}: {scope}: {level} is more than it needs"
    for _, _, step in _steps(workflow):
        if "uses" in step:
            assert FULL_SHA.match(step["uses"]), f"{step['uses']} is not pinned to a full commit id"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_expression_is_expanded_inside_a_script(path: Path) -> None:
    # Values reach scripts through env: only, so no text from an event can become shell code.
    for job_id, _, step in _steps(_load(path)):
        assert "${{" not in step.get("run", ""), f"{job_id}: {step.get('name')}: expression inside run:"


def test_grade_pr_runs_from_the_base_branch_and_reads_the_pr_as_data() -> None:
    workflow = _load(GRADE_PR)
    assert set(workflow["on"]) == {"pull_request_target"}
    assert workflow["on"]["pull_request_target"]["branches"] == ["main"]
    grade, comment = workflow["jobs"]["grade"], workflow["jobs"]["comment"]
    assert grade["permissions"] == {"contents": "read"}
    assert comment["permissions"] == {"pull-requests": "write"}
    assert comment["needs"] == "grade"

    steps = {step["name"]: step for step in grade["steps"]}
    fetch = next(s for name, s in steps.items() if name.startswith("Fetch"))
    assert fetch["env"]["TRUSTED_SHA"] == "${{ github.sha }}"
    checkouts = [line for line in fetch["run"].splitlines() if " checkout " in line]
    assert len(checkouts) == 1 and checkouts[0].rstrip().endswith('"$TRUSTED_SHA"'), "only the trusted commit is checked out"
    assert "persist" not in fetch["run"] and "git config" not in fetch["run"], "no credential is written to disk"

    grading = next(s for s in grade["steps"] if "python -m autograder ci" in s.get("run", ""))
    assert '--base "$TRUSTED_SHA" --head "$PR_HEAD_SHA"' in grading["run"]
    assert set(grading["env"]) == {"TRUSTED_SHA", "PR_HEAD_SHA", "AUTOGRADER_SECRET"}, "grading gets no token"
    # the seeds' course secret, so that a regrade in CI gets the same hidden inputs (and nothing else)
    assert grading["env"]["AUTOGRADER_SECRET"] == "${{ secrets.AUTOGRADER_SECRET }}"


def test_secrets_reach_only_the_steps_that_need_them() -> None:
    for path in WORKFLOWS:
        for job_id, job, step in _steps(_load(path)):
            env = step.get("env", {})
            secrets = [k for k, v in env.items() if "secrets." in v]
            tokens = [k for k, v in env.items() if "github.token" in v]
            assert "secrets." not in str(job.get("env", {})), f"{path.name}:{job_id}: job-wide secrets"
            if secrets == ["AUTOGRADER_SECRET"] and "python -m autograder ci" in step.get("run", ""):
                continue  # the grader's seed secret (never passed to the sandbox)
            if secrets:
                assert step["name"].startswith("Install the hidden suites"), (path.name, step["name"])
            if tokens:
                assert step["name"].startswith(("Fetch", "Create or update the score comment")), (path.name, step["name"])


def test_the_comment_is_found_by_the_reports_marker() -> None:
    comment = _load(GRADE_PR)["jobs"]["comment"]
    [script] = [step["run"] for step in comment["steps"]]
    assert f"marker='{pull_request.COMMENT_MARKER}'" in script
    assert "github-actions[bot]" in script, "only our own comment is ever updated"
    assert "git " not in script and "make " not in script and "python" not in script, "the comment job runs no code"
    assert "--method PATCH" in script and "--method POST" in script
