"""Peak memory and time of the build's write stage and of its final output cross-check.

A script that measures, not a test. Two fresh child processes, so each ru_maxrss is its own:

1. build: raw exports -> SDTM -> ADaM (validation skipped: it is not what is measured), then
   `write_outputs` (XPT, define.xml, Dataset-JSON, tables, and the cross-check inside it).
   Reports peak RSS before and after the write stage and the write stage's seconds.
2. check: `crosscheck` alone on the files the build wrote, per stage, as `write_outputs`
   calls it. Reports its seconds and peak RSS (and the RSS after imports, for reference).

    /work/venv/bin/cdiscforge simulate --subjects 1000 --seed 7 --out /tmp/raw1000
    /work/venv/bin/python benchmarks/output_checks.py --raw /tmp/raw1000
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


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def run_build(raw: Path, out: Path) -> dict[str, object]:
    from cdiscforge.build import write_outputs
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.engine import RawStore, build_stage
    from cdiscforge.spec import load_study

    study = load_study(STUDY)
    log = BuildLog()
    start = time.perf_counter()
    sdtm = build_stage(study, "sdtm", RawStore(study, raw, log), log)
    adam = build_stage(study, "adam", None, log, upstream=sdtm)
    build_seconds = time.perf_counter() - start
    before = _peak_mb()
    start = time.perf_counter()
    write_outputs(study, sdtm, adam, out, log)  # type: ignore[arg-type]
    return {
        "records": sum(len(d) for d in {**sdtm, **adam}.values()),
        "build_seconds": round(build_seconds, 1),
        "peak_before_write_mb": before,
        "write_seconds": round(time.perf_counter() - start, 1),
        "peak_after_write_mb": _peak_mb(),
    }


def run_check(out: Path) -> dict[str, object]:
    import cdiscforge.datasetjson  # noqa: F401  (imports counted in the baseline, not the check)
    from cdiscforge.define import crosscheck

    baseline = _peak_mb()
    start = time.perf_counter()
    problems = []
    for stage in ("sdtm", "adam"):
        folder = out / stage
        problems += crosscheck(folder / "define.xml", folder, out / "datasetjson" / stage)
    return {
        "problems": len(problems),
        "check_seconds": round(time.perf_counter() - start, 1),
        "rss_after_imports_mb": baseline,
        "check_peak_mb": _peak_mb(),
        "json_mb": round(sum(p.stat().st_size for p in out.rglob("*.json")) / 1e6, 1),
        "xpt_mb": round(sum(p.stat().st_size for p in out.rglob("*.xpt")) / 1e6, 1),
    }


def _child(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, *args], check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="raw exports (cdiscforge simulate)")
    parser.add_argument("--out", type=Path, help="keep the written files here (default: temp)")
    parser.add_argument("--check-only", action="store_true", help="re-check files in --out")
    parser.add_argument("--role", choices=("build", "check"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "build":
        print(json.dumps(run_build(args.raw, args.out)))
        return
    if args.role == "check":
        print(json.dumps(run_check(args.out)))
        return

    out = args.out or Path(tempfile.mkdtemp(prefix="output_checks_"))
    try:
        if not args.check_only:
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir(parents=True)
            build = _child("--role", "build", "--raw", str(args.raw), "--out", str(out))
            print("build:", json.dumps(build), flush=True)
        check = _child("--role", "check", "--raw", str(args.raw), "--out", str(out))
        print("check:", json.dumps(check), flush=True)
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
