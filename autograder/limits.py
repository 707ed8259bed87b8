"""Every bound the grader puts on one submission, in one place (documented in SECURITY.md).

Input limits are checked on the notebook's JSON before anything expensive (nbformat's validation,
IPython's transformer, ``ast.parse``, the static scan) runs. Budgets bound the work the grader does
for one submission across loading, restarts and calls, in every front end.
"""

from __future__ import annotations

# ------------------------------------------------------------------------------ input, before parsing
MAX_NOTEBOOK_BYTES = 64 << 20  # the file
MAX_CELLS = 2000  # cells of any type; more: the notebook is unusable
MAX_CELL_BYTES = 256 << 10  # one code cell's source; a larger cell is not run (reported)
MAX_CODE_BYTES = 2 << 20  # all code cells together; the rest is not run (reported)
MAX_CODE_CELLS = 500  # code cells the worker executes; the rest is not run (reported)
MAX_IPYTHON_CELL_BYTES = 16 << 10  # larger cells are never given to IPython's transformer (plain Python only)
MAX_IPYTHON_CELLS = 32  # cells with IPython syntax transformed per notebook; later ones: plain Python only
MAX_NESTING = 100  # brackets/indentation depth accepted by the pre-parse check (parse bombs)

# ------------------------------------------------------------------------------ the static scan
SCAN_SECONDS = 10.0  # CPU seconds of static scanning per submission; past it: "too complex to verify"

# ------------------------------------------------------------------------------ replies (worker -> grader)
MAX_REPLY_HEADER_BYTES = 4 << 20  # one reply's JSON header
MAX_REPLY_BYTES = 64 << 20  # one reply's tensor payload, checked before it is read
MAX_SUBMISSION_REPLY_BYTES = 512 << 20  # all replies of one submission together

# ------------------------------------------------------------------------------ time
CELL_SECONDS = 60.0  # wall clock for one cell at load
SUBMISSION_SECONDS = 600.0  # wall clock for one submission: load, restarts and every call
SUBMISSION_CPU_SECONDS = 600.0  # CPU seconds of the submission's sandboxed processes, all together
CI_SECONDS = 2400.0  # one pull request's notebooks together (the job's own timeout is 60 min)
