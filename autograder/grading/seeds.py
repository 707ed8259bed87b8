"""Reproducible grades: the seed of a submission's hidden inputs, and the grader's fingerprint.

The seed is an HMAC of the graded content of the notebook (every cell the worker runs, in order,
and the assignment) keyed by a course secret, so that:

- grading the same notebook again draws the same inputs, and so gives the same results and
  messages (a grade can be reproduced, and disputed);
- a student cannot compute the inputs in advance: the secret never leaves the grader (it is read by
  this process only, never bound into the sandbox, git-ignored).

The secret is ``AUTOGRADER_SECRET`` when set (CI: a repository secret of the trusted workflow),
else the file ``.autograder-secret`` at the course root, created on first use. ``--seed`` overrides
the derived seed everywhere (``grade``, ``grade-batch``, ``ci``, nbgrader's ``GradeWithEngine.seed``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Sequence

REPO = Path(__file__).resolve().parents[2]
SECRET_FILE = REPO / ".autograder-secret"
SECRET_ENV = "AUTOGRADER_SECRET"
SEED_BITS = 62


def course_secret() -> bytes:
    """The course secret (created, readable by its owner only, on first use)."""
    value = os.environ.get(SECRET_ENV, "").strip()
    if value:
        return value.encode()
    try:
        text = SECRET_FILE.read_text(encoding="ascii").strip()
        if text:
            return text.encode()
    except (OSError, UnicodeDecodeError):
        pass
    fresh = secrets.token_hex(32)
    try:  # O_EXCL: two gradings starting at once agree on one secret
        fd = os.open(SECRET_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(fresh + "\n")
        return fresh.encode()
    except FileExistsError:
        return SECRET_FILE.read_text(encoding="ascii").strip().encode()


def derive_seed(assignment: str, sources: Sequence[str]) -> int:
    """The seed of a submission's hidden inputs, from its graded content and the course secret."""
    message = hashlib.sha256()
    message.update(b"autograder-seed-v1\0" + assignment.encode() + b"\0")
    for source in sources:
        encoded = source.encode("utf-8", "surrogatepass")
        message.update(len(encoded).to_bytes(8, "big") + encoded)
    mac = hmac.new(course_secret(), message.digest(), hashlib.sha256).digest()
    return int.from_bytes(mac[:8], "big") >> (64 - SEED_BITS)


@functools.lru_cache(maxsize=None)
def fingerprint() -> str:
    """The grader's fingerprint: a digest of everything verdicts depend on (engine, suites,
    reference, registry), the same one ``grade-batch`` records, plus the torch version."""
    from autograder.course.fingerprint import grader_fingerprint  # the one digest batch records

    import torch

    return f"{grader_fingerprint()[:12]} (torch {torch.__version__})"
