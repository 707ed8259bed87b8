"""The grader's fingerprint: a digest of everything the verdicts depend on.

Batch grading records it with every grade (a change regrades), and seeds are derived with it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: What the grader's verdicts depend on: a change to any of these regrades every submission.
GRADER_FILES = ("autograder/**/*.py", "reference/**/*.py", "assignments/*/*.ipynb")


def grader_fingerprint() -> str:
    """A digest of everything the verdicts depend on (see ``GRADER_FILES``)."""
    digest = hashlib.sha256()
    for pattern in GRADER_FILES:
        for path in sorted(REPO.glob(pattern)):
            if path.is_file():
                digest.update(path.relative_to(REPO).as_posix().encode() + b"\0")
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]
