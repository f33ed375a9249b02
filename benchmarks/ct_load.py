"""Size and load time of the bundled CT packages (cdiscforge/data/ct/<date>/*.tsv.gz).

A script that measures, not a test. Each measurement runs in a fresh child process (the
packages are cached per process), median of --repeat runs:

1. import cdiscforge.ct;
2. first SDTM codelist (SEX): reads and parses the SDTM package;
3. first ADaM codelist (DTYPE) after that: the SDTM package, then the ADaM one (lookup order);
4. every codelist of every package built as a Codelist (what `cdiscforge validate` of a large
   folder might touch at most).

    python benchmarks/ct_load.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

STEPS = {
    "import cdiscforge.ct": "pass",
    "first SDTM codelist (SEX)": "ct.codelist('SEX')",
    "first ADaM codelist (DTYPE)": "ct.codelist('DTYPE')",
    "all codelists of all packages": (
        "[ct.codelist(c) for p in ct.PACKAGES for c in ct.package(p).slices]"
    ),
}


def _time(stmt: str) -> float:
    code = (
        "import time\nt = time.perf_counter()\nfrom cdiscforge import ct\n"
        "t1 = time.perf_counter()\n"
        f"{stmt}\n"
        "t2 = time.perf_counter(); print(t2 - (t if " + repr(stmt == "pass") + " else t1))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    for path in sorted((REPO / "cdiscforge/data/ct").glob("*/*.tsv.gz")):
        print(f"{path.relative_to(REPO)}: {path.stat().st_size:,} bytes")
    for label, stmt in STEPS.items():
        runs = [_time(stmt) for _ in range(args.repeat)]
        print(f"{label}: median {statistics.median(runs) * 1000:.1f} ms over {len(runs)} runs")


if __name__ == "__main__":
    main()
