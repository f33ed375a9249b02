"""Time and peak memory of the raw-export simulator at growing N.

Each N runs in a fresh child process so its peak resident memory (ru_maxrss) is its own.
Prints, per N: files, total rows, joint rows, seconds, peak RSS and bytes written.

    /work/venv/bin/python benchmarks/simulate_scale.py              # N = 15, 1000, 10000
    /work/venv/bin/python benchmarks/simulate_scale.py --sizes 15 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = Path(__file__).resolve().parent.parent / "specs" / "nct03691909"


def run_one(subjects: int, out: Path, seed: int | None) -> dict[str, object]:
    from cdiscforge.simulate import simulate

    start = time.perf_counter()
    result = simulate(STUDY, out, subjects=subjects, seed=seed)
    seconds = time.perf_counter() - start
    return {
        "subjects": subjects,
        "files": len(result.files),
        "rows": sum(result.rows.values()),
        "joint_rows": result.rows["joints"],
        "lab_rows": result.rows["lab"],
        "seconds": round(seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "bytes": sum(p.stat().st_size for p in result.files.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[15, 1000, 10000])
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.out, args.seed)))
        return

    header = f"{'N':>6} {'files':>5} {'rows':>11} {'joint rows':>11} {'lab rows':>10} "
    print(header + f"{'seconds':>8} {'peak RSS MB':>11} {'MB written':>10}")
    for n in args.sizes:
        out = Path(tempfile.mkdtemp(prefix=f"simscale{n}_"))
        try:
            cmd = [sys.executable, __file__, "--one", str(n), "--out", str(out)]
            if args.seed is not None:
                cmd += ["--seed", str(args.seed)]
            line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            r = json.loads(line.strip().splitlines()[-1])
        finally:
            shutil.rmtree(out, ignore_errors=True)
        print(
            f"{r['subjects']:>6} {r['files']:>5} {r['rows']:>11,} {r['joint_rows']:>11,} "
            f"{r['lab_rows']:>10,} {r['seconds']:>8} {r['peak_rss_mb']:>11} "
            f"{r['bytes'] / 1e6:>10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
