"""Cold grading of one notebook from the command line, against the floor of starting Python with
torch imported, in the same run.

    .venv/bin/python bench/bench_grade.py [--repeat 5] [NOTEBOOK]

Prints the median wall time of each and their ratio. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "solutions" / "01_linear_models" / "linear_models.ipynb"


def _median_seconds(command: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    floor = _median_seconds([python, "-c", "import torch"], args.repeat)
    grade = _median_seconds([python, "-m", "autograder", "grade", str(args.notebook), "--format", "json"], args.repeat)
    check = _median_seconds([python, "-m", "autograder", "check", str(args.notebook), "--format", "json"], args.repeat)
    print(f"notebook: {args.notebook.relative_to(ROOT) if args.notebook.is_relative_to(ROOT) else args.notebook}")
    print(f"python -c 'import torch'        {floor:6.2f} s  (floor: one interpreter with torch)")
    print(f"autograder grade (cold, sandbox) {grade:6.2f} s  ({grade / floor:.1f}x the floor)")
    print(f"autograder check (cold)          {check:6.2f} s  ({check / floor:.1f}x the floor)")


if __name__ == "__main__":
    main()
