"""What the static scan reports: one ``Finding`` per offending line, naming a forbidden routine of
the registry or one of the kinds below, none of which the scan can verify as allowed."""

from __future__ import annotations

from dataclasses import dataclass

TAMPERING = "recorder tampering"
DYNAMIC_CODE = "dynamic code execution"
DYNAMIC_ATTRIBUTE = "dynamic attribute access on torch (cannot be verified)"
DYNAMIC_IMPORT = "dynamic import (cannot be verified)"
TOO_COMPLEX = "code too complex to verify in the time allowed"

EVIDENCE_CHARS = 80


@dataclass(frozen=True)
class Finding:
    call: str  # Forbidden.name, or one of TAMPERING / DYNAMIC_* / TOO_COMPLEX above
    cell: int  # index in the scanned cells (-1 for TOO_COMPLEX, which is about all of them)
    line: int  # 1-based line inside that cell
    evidence: str  # the offending source text, at most EVIDENCE_CHARS characters
