"""Only what was submitted is read: regular files, no symbolic link at any level; identity from
nbgrader's layout; names that cannot become spreadsheet formulas. Fast: no sandbox."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import safeio
from autograder.frontends.batch import discover
from autograder.report import class_outputs as outputs
from autograder.report.records import BatchRecord
from autograder.errors import UnusableInput

REPO = Path(__file__).resolve().parents[2]
NB = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def _put(path: Path, text: str = NB) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_read_submitted_refuses_links_fifos_and_linked_folders(tmp_path: Path) -> None:
    secret = _put(tmp_path / "solutions" / "nb.ipynb", '{"secret": 1}')
    course = tmp_path / "submitted"
    good = _put(course / "ann" / "a" / "nb.ipynb")
    assert safeio.read_submitted(good, below=course, limit=1 << 20) == NB.encode()
    link = course / "bob" / "a" / "nb.ipynb"
    link.parent.mkdir(parents=True)
    link.symlink_to(secret)
    with pytest.raises(UnusableInput, match="symbolic link"):
        safeio.read_submitted(link, below=course, limit=1 << 20)
    (course / "eve").symlink_to(secret.parent.parent)  # a linked folder on the way
    (secret.parent.parent / "a").mkdir()
    _put(secret.parent.parent / "a" / "nb.ipynb", '{"secret": 2}')
    with pytest.raises(UnusableInput, match="symbolic link"):
        safeio.read_submitted(course / "eve" / "a" / "nb.ipynb", below=course, limit=1 << 20)
    fifo = course / "ann" / "a" / "fifo.ipynb"
    os.mkfifo(fifo)
    with pytest.raises(UnusableInput, match="not a regular file"):
        safeio.read_submitted(fifo, below=course, limit=1 << 20)
    big = _put(course / "ann" / "a" / "big.ipynb", "x" * 2000)
    with pytest.raises(UnusableInput, match="limit"):
        safeio.read_submitted(big, below=course, limit=1000)


@pytest.mark.slow
def test_grade_refuses_a_linked_notebook_with_one_line(tmp_path: Path) -> None:
    target = REPO / "solutions" / "01_linear_models" / "linear_models.ipynb"
    link = tmp_path / "linear_models.ipynb"
    link.symlink_to(target)
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", str(link), "--no-sandbox"], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "symbolic link" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert done.stdout == ""


def test_discover_takes_identity_from_the_layout_and_skips_links(tmp_path: Path) -> None:
    course = tmp_path / "course"
    sub = course / "submitted"
    _put(sub / "alice" / "01_linear_models" / "linear_models.ipynb")
    # alice plants a notebook that looks like bob's inside her own folder: not bob's, not a submission
    _put(sub / "alice" / "01_linear_models" / "submitted" / "bob" / "01_linear_models" / "linear_models.ipynb")
    _put(sub / "bob" / "01_linear_models" / "linear_models.ipynb")
    solution = REPO / "solutions" / "02_mlp" / "mlp.ipynb"
    (sub / "carl" / "02_mlp").mkdir(parents=True)
    (sub / "carl" / "02_mlp" / "mlp.ipynb").symlink_to(solution)
    (sub / "dora").symlink_to(sub / "bob")  # a whole folder linked to another student's
    skipped: list[str] = []
    found = discover.discover([course], skipped)
    assert [(s.key, s.student, s.assignment) for s in found] == [
        ("alice/01_linear_models/linear_models.ipynb", "alice", "01_linear_models"),
        ("bob/01_linear_models/linear_models.ipynb", "bob", "01_linear_models"),
    ]
    assert found[1].path == sub / "bob" / "01_linear_models" / "linear_models.ipynb"
    assert any("carl" in s for s in skipped) and any("dora" in s for s in skipped)
    # plain folders: links are not followed either
    plain = tmp_path / "plain"
    _put(plain / "mine.ipynb")
    (plain / "theirs.ipynb").symlink_to(solution)
    (plain / "deep").symlink_to(REPO / "solutions")
    assert [s.key for s in discover.discover([plain], skipped)] == ["mine.ipynb"]


def test_csv_cells_cannot_become_formulas(tmp_path: Path) -> None:
    assert safeio.cell("=HYPERLINK(\"http://x\")") == "'=HYPERLINK(\"http://x\")"
    assert safeio.cell("+1+1") == "'+1+1" and safeio.cell("@SUM(A1)") == "'@SUM(A1)" and safeio.cell("-2+3") == "'-2+3"
    assert safeio.cell("ann\x00\x1b[31m") == "ann  [31m" and safeio.cell(3.5) == 3.5 and safeio.cell("ann") == "ann"
    record = BatchRecord.from_json({"key": "=cmd|'/C calc'!A0/01_linear_models/nb.ipynb", "student": "=cmd|'/C calc'!A0",
                                    "assignment": "01_linear_models", "notebook": "@nb.ipynb", "status": "unusable",
                                    "message": "+bad", "result": None})
    for path in outputs.write_tables(tmp_path, [record]):
        for row in csv.reader(path.open()):
            for value in row:
                assert not value.startswith(("=", "+", "-", "@")), (path.name, value)


# ------------------------------------------------------------------- input limits before parsing
def _notebook(cells: list[str], extra: int = 0) -> dict:
    code = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
             "source": s} for i, s in enumerate(cells)]
    code += [{"cell_type": "markdown", "id": f"m{i}", "metadata": {}, "source": "x"} for i in range(extra)]
    return {"cells": code, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def test_input_limits_and_parse_bombs_are_the_students_problems(tmp_path: Path) -> None:
    import time

    from autograder import limits
    from autograder.submission import notebook as nbio

    path = _put(tmp_path / "many.ipynb", json.dumps(_notebook([], extra=limits.MAX_CELLS + 1)))
    with pytest.raises(UnusableInput, match="cells, more than"):
        nbio.load(path)
    bombs = ["x = " + "(" * 250 + "1" + ")" * 250,  # the parser's own nesting limit
             "x = " + "-" * 5000 + "1",  # unary chain: too deep for the AST
             "x = " + "+".join(["a"] * 20_000),  # left-deep binary chain
             "x = 1\n" * (limits.MAX_CELL_BYTES // 6 + 10),  # too big to parse
             "%time 1\n" + "x = " + "+".join(["a"] * 60_000),  # IPython syntax in a big cell: no transformer
             "def softmax(X):\n    return X.exp() / X.exp().sum(-1, keepdim=True)\n"]
    started = time.monotonic()
    nb = nbio.load(_put(tmp_path / "bombs.ipynb", json.dumps(_notebook(bombs))))
    extracted = nbio.extract(nb, None)
    assert time.monotonic() - started < 20
    assert [c.label for c in extracted.cells] == ['cell [ ] "def softmax(X):"']
    assert len(extracted.problems) == 5 and all(len(p.splitlines()) == 1 for p in extracted.problems)
    assert "not run" in " ".join(extracted.problems)


@pytest.mark.parametrize("json_bomb, reason", [
    ('{"cells": [], "x": ' + "[" * 100_000 + "]" * 100_000 + "}", "not JSON"),
    ('{"cells": [], "x": 1' + "0" * 100_000 + "}", "a number too long"),
    (b'{"cells": []}\xff'.decode("latin-1"), "not JSON"),
], ids=["nested past the parser's recursion", "an integer of 100 001 digits", "not UTF-8"])
def test_json_bombs_are_unusable_input_not_grader_errors(json_bomb: str, reason: str) -> None:
    from autograder.submission import notebook as nbio

    with pytest.raises(UnusableInput, match=reason):
        nbio.load(nbio.Submitted("linear_models.ipynb", json_bomb.encode("latin-1")))


def test_static_scan_is_bounded(tmp_path: Path) -> None:
    import time

    from autograder.course import registry
    from autograder.submission.scan import TOO_COMPLEX, scan

    rebinds = "\n".join(f"if c{i}:\n    f{i} = f\n    f = f{i}" for i in range(4000))
    code = f"import torch\nf = torch.exp\n{rebinds}\ndef softmax(X):\n    return f(X) / f(X).sum(-1, keepdim=True)\n"
    started = time.thread_time()
    found = scan([code], "softmax", registry.BY_NAME["softmax"].forbidden, deadline=time.thread_time() + 1.0)
    assert time.thread_time() - started < 5
    assert [f.call for f in found] == [TOO_COMPLEX]
    deep = "def softmax(X):\n    return " + "+".join(["torch.softmax(X, -1)"] * 90) + "\n"
    assert [f.call for f in scan(["import torch\n" + deep], "softmax", registry.BY_NAME["softmax"].forbidden)]


def test_the_whole_seed_reaches_the_generator() -> None:
    import torch

    from autograder.grading import rng

    a, b = rng.generator(5, b"t"), rng.generator(5 + (1 << 40), b"t")  # manual_seed: the same stream
    assert not torch.equal(torch.rand(8, generator=a), torch.rand(8, generator=b))
    assert torch.equal(torch.rand(8, generator=rng.generator(5, b"t")), torch.rand(8, generator=rng.generator(5, b"t")))
    assert not torch.equal(torch.rand(8, generator=rng.generator(5, b"t")), torch.rand(8, generator=rng.generator(5, b"u")))
    state = rng.generator(1 << 61, b"").get_state()[24:24 + 8 * 624].view(torch.int64)
    assert (state >> 32).eq(0).all() and state.unique().numel() > 600  # 624 independent 32-bit words
