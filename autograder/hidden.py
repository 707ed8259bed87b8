"""What official grading needs and the students' repository lacks: the hidden suites and the reference.

The course repository (private) holds both. The repository students get (``python -m autograder
publish``) holds neither: its pull-request workflow restores them from the course's private store
before it grades (``docs/ci.md``). Anywhere they are absent, official grading refuses with one line
instead of scoring every test 0.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: The folders, relative to the course root, that are never published in clear (``HIDDEN_SUITES_PATHS``).
PATHS = ("autograder/suites", "reference")

STUDENTS_COPY = ("this copy of the course has no hidden tests ({what} missing): it is the students' repository, "
                 "where notebooks are graded by the pull-request workflow; run `python -m autograder check "
                 "NOTEBOOK.ipynb` for the public checks")


def missing(root: Path = ROOT) -> list[str]:
    """The hidden material absent under ``root``: ``autograder/suites`` (no ``test_*.py``), ``reference``."""
    out = []
    if not any((root / "autograder" / "suites").glob("test_*.py")):
        out.append("autograder/suites")
    if not (root / "reference" / "__init__.py").is_file():
        out.append("reference")
    return out


def refusal(root: Path = ROOT) -> str | None:
    """One line saying why official grading cannot run here, or ``None`` when it can."""
    absent = missing(root)
    return STUDENTS_COPY.format(what=" and ".join(absent)) if absent else None
