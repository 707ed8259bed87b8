"""The adversarial corpus: every attack in ``attacks/`` is graded in the real sandbox, in one batch,
and must come out as ``corpus.EXPECTED`` says.

What every attack is held to (besides its own expectation):

- the attacked exercise gains nothing: it passes no test that an honest wrong answer
  (``baseline_wrong_answer``) does not pass, or it is reported ``forbidden``;
- every other exercise of the notebook keeps full marks, and points come from the registry;
- nothing secret reaches any report (text, JSON, Markdown, Gradescope, JUnit) or the grader's own
  output: not the grader's environment (a random canary variable), not files planted outside the
  sandbox (another student's submission, a gradebook), not a line of the reference or of the
  hidden suites;
- grading finishes, and leaves no process of the slot's uid behind;
- a correct submission graded on the same slot before and after the attackers gets full marks.

Every attack is graded twice, by the two ways the course grades: ``cold`` (``grade_notebook``, as the
command line runs it: a fresh sandbox per submission) and ``batch`` (the class-batch grader: one warm
sandbox per slot, reused by every submission graded on that slot). Both run at once, one process
per sandbox slot (three slots per mode), queues balanced by the known cost of the attacks that
wait for a timeout.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import secrets
import socket
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from autograder.course import registry
from autograder.sandbox import bubblewrap as sandbox

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import corpus  # noqa: E402  (beside this file)

pytestmark = pytest.mark.slow

#: A hang detector, not a performance test: the engine's own bounds (a 60 s load timeout per
#: cell that hangs, two strikes of the call timeout per exercise) keep every notebook far below.
TIME_BOUND_S = 300
#: Reports stay small whatever the student prints or raises (characters).
REPORT_LIMIT = 200_000
#: Where today's grader deviates from the promises above, and why (a strict list: an entry whose
#: deviation is gone fails, so that it is removed).
KNOWN_DEVIATIONS = {
    "forbidden_evasion_in_process": (
        "forbidden-call detection is a policy check in the student's own process: a determined student hides "
        "the name from the static scan and the call from the recorders (SECURITY.md)"),
}
#: Attacks that expose a defect not fixed yet: graded and reported as expected failures until fixed.
OPEN_DEFECTS: dict[str, str] = {}
#: Seconds an attack is expected to take beyond an ordinary grading (to balance the queues).
COST = {"sleep_at_load": 80, "cpu_loop": 45, "ignore_signals_and_sleep": 45, "os_exit_in_function": 20,
        "kill_parent_and_everyone": 20, "oversized_reply": 20, "memory_bomb": 15, "fork_flood": 12,
        "walk_filesystem": 12, "output_flood": 12, "exit_at_top_level": 12, "malformed_reply_frames": 45,
        "zero_stride_reply": 10, "slot_state_left_behind": 8}


@dataclass
class Batch:
    mode: str
    graded: dict[str, corpus.Graded]
    correct: list[tuple[str, corpus.Graded]]  # ("before"/"after", graded) per slot
    canary: str
    planted: dict[str, str]
    secret_lines: dict[str, set[str]]
    folders: dict[str, Path]
    connections: list[str] = field(default_factory=list)
    hashes_before: dict[str, str] = field(default_factory=dict)


class _Listener:
    """A TCP server on the grader machine's loopback that records every connection."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.connections: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, address = self.sock.accept()
            except OSError:
                continue
            self.connections.append(repr(address))
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.sock.close()


def _hashes() -> dict[str, str]:
    """The files an attack would trojan: shared by every submission and by the grader."""
    import torch

    paths = [Path(torch.__file__), sandbox.WORKER_PACKAGE / "main.py", sandbox.WORKER_PACKAGE / "protocol.py"]
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


def _plant(folder: Path, canary: str) -> dict[str, str]:
    """Secrets outside the sandbox: another student's submission and a gradebook."""
    planted = {}
    other = folder / "course" / "submitted" / "alice" / "01_linear_models" / corpus.PLANTED_NAMES[1]
    gradebook = folder / "course" / corpus.PLANTED_NAMES[0]
    for path in (other, gradebook):
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = f"planted-secret-{secrets.token_hex(8)}-{canary[:6]}"
        path.write_text(secret)
        planted[str(path)] = secret
    return planted


def _queues(names: list[str], slots: tuple[int, ...]) -> list[list[str]]:
    """Longest-processing-time-first assignment of the attacks to the slots."""
    queues: list[list[str]] = [[] for _ in slots]
    loads = [0.0] * len(slots)
    for name in sorted(names, key=lambda n: -COST.get(n, 0)):
        index = loads.index(min(loads))
        queues[index].append(name)
        loads[index] += 8 + COST.get(name, 0)
    return queues


MODES = ("cold", "batch")


def _modes() -> list[str]:
    """``cold``: ``grade_notebook`` as the command line runs it, a fresh sandbox per submission;
    ``batch``: the class-batch grader, one warm sandbox per slot reused by every submission on it.
    ``AUTOGRADER_CORPUS_MODES=cold`` (comma-separated) runs fewer, while working on one of them."""
    wanted = [m for m in os.environ.get("AUTOGRADER_CORPUS_MODES", ",".join(MODES)).split(",") if m in MODES]
    try:
        import autograder.frontends.batch.grader  # noqa: F401
    except ImportError:
        return [m for m in wanted if m == "cold"]
    return wanted


def _attacks() -> list[str]:
    """Every attack; ``AUTOGRADER_CORPUS_ATTACKS=a,b`` (comma-separated) grades only those, and the
    baseline every attack is measured against, while working on them (the others are skipped)."""
    wanted = os.environ.get("AUTOGRADER_CORPUS_ATTACKS")
    chosen = None if not wanted else {*wanted.split(","), "baseline_wrong_answer"}
    return [n for n in corpus.attack_names() if chosen is None or n in chosen]


@pytest.fixture(scope="module")
def batches(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Batch]:
    """Every attack graded in every mode, all modes at once (one process per slot and mode)."""
    reason = sandbox.unavailable_reason()
    if reason:
        pytest.skip(f"the sandbox cannot start here ({reason}); see SECURITY.md")
    folder = tmp_path_factory.mktemp("adversarial")
    canary = secrets.token_hex(16)
    planted = _plant(folder, canary)
    listener = _Listener()
    hashes_before = _hashes()
    names = _attacks()
    modes = _modes()
    folders: dict[str, Path] = {}
    jobs: dict[str, corpus.Job] = {}
    for name in names:
        expect = corpus.EXPECTED[name]
        nb = corpus.build(name, expect, {"__LISTENER_PORT__": str(listener.port)})
        path = corpus.write_notebook(nb, folder / "attacks" / name, expect.assignment)
        folders[name] = path.parent
        jobs[name] = corpus.Job(name, str(path))
    correct = corpus.correct_notebook("01_linear_models")
    reservation = corpus.SlotReservation(corpus.SLOTS_PER_MODE * len(modes))
    queues = []  # (mode, slot, jobs)
    for number, mode in enumerate(modes):
        slots = reservation.slots[number * corpus.SLOTS_PER_MODE:(number + 1) * corpus.SLOTS_PER_MODE]
        for slot, queue in zip(slots, _queues(names, slots)):
            before = corpus.write_notebook(correct, folder / f"correct-{slot}-before", "01_linear_models")
            after = corpus.write_notebook(correct, folder / f"correct-{slot}-after", "01_linear_models")
            queues.append((mode, slot, [corpus.Job("correct:before", str(before)), *[jobs[n] for n in queue],
                                        corpus.Job("correct:after", str(after))]))
    try:
        context = multiprocessing.get_context("spawn")  # never fork a process that has threads
        with ProcessPoolExecutor(max_workers=len(queues), mp_context=context) as pool:
            futures = [(mode, pool.submit(corpus.grade_queue, slot, queue, canary, mode)) for mode, slot, queue in queues]
            results = [(mode, future.result(timeout=3600)) for mode, future in futures]
    finally:
        listener.close()
        reservation.release()
    lines = corpus.secret_lines()
    out = {mode: Batch(mode, {}, [], canary, planted, lines, folders, listener.connections, hashes_before)
           for mode in modes}
    for mode, queue_results in results:
        for item in queue_results:
            if item.name.startswith("correct:"):
                out[mode].correct.append((item.name.split(":")[1], item))
            else:
                out[mode].graded[item.name] = item
    return out


@pytest.fixture(params=MODES)
def batch(request: pytest.FixtureRequest, batches: dict[str, Batch]) -> Batch:
    if request.param not in batches:
        pytest.skip(f"the {request.param} grader is not run here (AUTOGRADER_CORPUS_MODES, or autograder.frontends.batch "
                    "is not importable)")
    return batches[request.param]


# ----------------------------------------------------------------------------------------- checks
def _exercises(graded: corpus.Graded) -> dict[str, dict]:
    assert graded.result is not None, f"grading did not complete: {graded.exception}"
    return {e["name"]: e for e in graded.result["exercises"]}


def _everything_said(graded: corpus.Graded) -> str:
    return "\n".join([*graded.reports.values(), json.dumps(graded.result), graded.log, graded.exception])


def _passed_tests(exercise: dict) -> set[str]:
    return {t["name"] for t in exercise["tests"] if t["passed"]}


def _check_secrets(batch: Batch, graded: corpus.Graded) -> None:
    said = _everything_said(graded)
    assert batch.canary not in said, "the grader's environment (canary variable) leaked into a report"
    for path, secret in batch.planted.items():
        assert secret not in said, f"the content of {path} leaked into a report"
    for label, lines in batch.secret_lines.items():
        leaked = [line for line in lines if line in said]
        assert not leaked, f"{label} source leaked into a report: {leaked[:3]}"


def _check_common(batch: Batch, graded: corpus.Graded) -> None:
    assert graded.seconds < TIME_BOUND_S, f"grading took {graded.seconds:.0f} s"
    assert not graded.leftover, f"processes left behind on slot {graded.slot}: {graded.leftover}"
    _check_secrets(batch, graded)
    exercises = _exercises(graded)
    result = graded.result
    expected = registry.assignments()[result["assignment"]]
    assert [e.name for e in expected] == list(exercises), "every exercise is reported, in registry order"
    for exercise in expected:
        reported = exercises[exercise.name]
        assert reported["max_score"] == exercise.points, "points come from the registry"
        assert [t["name"] for t in reported["tests"]] == list(exercise.tests)
        assert [t["max_points"] for t in reported["tests"]] == list(exercise.tests.values())
    assert result["max_score"] == sum(e.points for e in expected)
    assert result["official"] is True
    for fmt, report in graded.reports.items():
        assert len(report) < REPORT_LIMIT, f"the {fmt} report has {len(report)} characters"


def test_every_attack_has_an_expectation():
    names = corpus.attack_names()
    assert len(names) >= 30
    assert sorted(corpus.EXPECTED) == names
    for name in names:
        attack = corpus.load_attack(name)
        assert attack.description, f"{name}: say what the attack tries in its header"
        assert attack.cells, f"{name}: no cells"


def test_leak_detector_sees_leaks():
    """The secret checks are not vacuous: the marker lines exist, and each kind of leak is caught."""
    lines = corpus.secret_lines()
    assert len(lines["reference"]) >= 5 and len(lines["hidden suite"]) >= 30
    fake = Batch("cold", {}, [], "canary-0123", {"/planted": "planted-4567"}, lines, {})
    leaks = {"canary": "canary-0123", "planted": "planted-4567",
             "reference": sorted(lines["reference"])[0], "hidden suite": sorted(lines["hidden suite"])[0]}
    for label, leak in leaks.items():
        graded = corpus.Graded("probe", 0, result={}, reports={"text": f"feedback ... {leak} ..."})
        with pytest.raises(AssertionError):
            _check_secrets(fake, graded)
    _check_secrets(fake, corpus.Graded("probe", 0, result={}, reports={"text": "nothing secret"}))


@pytest.mark.parametrize("name", corpus.attack_names())
def test_attack(batch: Batch, name: str):
    if name in OPEN_DEFECTS:
        pytest.xfail(OPEN_DEFECTS[name])
    if name not in batch.graded:
        pytest.skip(f"{name} is not graded here (AUTOGRADER_CORPUS_ATTACKS)")
    expect = corpus.EXPECTED[name]
    graded = batch.graded[name]
    _check_common(batch, graded)
    exercises = _exercises(graded)
    target = exercises[expect.target]
    said = _everything_said(graded)
    for evidence in expect.evidence:
        assert evidence in said, f"expected {evidence!r} in the report (did the attack run?)"
    for leak in expect.absent:
        assert leak not in said, f"{leak!r} reached a report or the grader's output (a channel out)"
    if expect.notebook_error:
        assert graded.result["errors"], "the notebook-level problem must be reported"
    for path in expect.host_paths_absent:
        where = Path(path) if path.startswith("/") else batch.folders[name] / path
        assert not where.exists(), f"the attack wrote {where} outside the sandbox"
    deviations = []
    for other, reported in exercises.items():
        if other != expect.target and (reported["status"], reported["score"]) != ("passed", reported["max_score"]):
            deviations.append(f"{other} lost points to an attack on {expect.target}: {reported['status']}, "
                              f"{reported['score']} / {reported['max_score']}: {reported['message'][:200]}")
    if expect.outcome == "forbidden":
        if (target["status"], target["score"]) != ("forbidden", 0):
            deviations.append(f"{expect.target} is {target['status']} with {target['score']} points, not forbidden")
    elif expect.outcome == "fails":
        failing = {t["name"] for t in target["tests"] if not t["passed"]}
        assert set(expect.failing) <= failing, target
        assert target["score"] < target["max_score"]
    elif name == "baseline_wrong_answer":
        assert target["status"] != "passed", target
        if target["score"] > 0:
            deviations.append(f"an honest wrong answer earns {target['score']} points: "
                              f"{sorted(_passed_tests(target))}")
    else:
        assert target["status"] != "passed", target
        if target["status"] == "forbidden":
            assert target["score"] == 0
        else:
            baselines = _exercises(batch.graded["baseline_wrong_answer"])
            if expect.target not in baselines:  # no honest wrong answer of that exercise: nothing at all
                assert target["score"] == 0, target
            else:
                baseline = baselines[expect.target]
                gained = _passed_tests(target) - _passed_tests(baseline)
                assert not gained, f"the attack passed {sorted(gained)}, which a wrong answer does not"
                assert target["score"] <= baseline["score"]
    if name in KNOWN_DEVIATIONS:
        if deviations:
            pytest.xfail(f"{KNOWN_DEVIATIONS[name]} ({'; '.join(deviations)})")
        pytest.fail(f"{name} no longer deviates: remove it from KNOWN_DEVIATIONS")
    assert not deviations, "; ".join(deviations)


def test_correct_submissions_before_and_after_the_attackers(batch: Batch):
    assert len(batch.correct) == 2 * corpus.SLOTS_PER_MODE
    assert {when for when, _ in batch.correct} == {"before", "after"}
    for when, graded in batch.correct:
        _check_common(batch, graded)
        for name, exercise in _exercises(graded).items():
            assert (exercise["status"], exercise["score"]) == ("passed", exercise["max_score"]), \
                f"a correct submission graded {when} the attackers on slot {graded.slot} lost points on {name}"
        assert not graded.result["errors"]


def test_no_connection_reached_the_grader_machine(batch: Batch):
    assert batch.connections == []


def test_shared_python_environment_unchanged(batch: Batch):
    assert _hashes() == batch.hashes_before
