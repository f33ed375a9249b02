"""Per-job timeline of a build's validate + write stage: which process ran what, when.

A script that measures, not a test. It runs one build (`cdiscforge.build.run_build`) with
the writing's jobs (`build._Outputs.run`), the validation (`validate_datasets`) and the
steps around them (compacting, the report, the manifest, the swap) wrapped to append one
line each to a file as they end (O_APPEND, so the forked child's lines interleave whole):
process, job, start and end (wall seconds from "validate + write"), CPU seconds of that
process meanwhile. Nothing the build writes changes. Then it prints the timeline, "P" the
build's process and "C" the child that validates and shares the jobs, to find the
critical chain (a process idle while the other runs the MK chain, the longest job last).

    python benchmarks/write_timeline.py --raw /work/scale/raw1000 --out /tmp/timeline-1k
    CDISCFORGE_WORKERS=1 python benchmarks/write_timeline.py --raw ... --out ...

At 10,000 subjects run it as any 10k build (`flock /tmp/10k.lock ...`), and delete --out.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

STUDY = Path(__file__).resolve().parent.parent / "specs" / "nct03691909"


def _wrapped(fd: int, t0: float, name_of: Callable[[tuple], str], fn: Callable) -> Callable:
    def run(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        try:
            return fn(*args, **kwargs)
        finally:
            line = [os.getpid(), name_of(args), start - t0, time.perf_counter() - t0]
            line.append(time.process_time() - cpu)
            os.write(fd, (json.dumps(line) + "\n").encode())

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--spec", type=Path, default=STUDY)
    args = parser.parse_args()

    import cdiscforge.validation as validation
    from cdiscforge import build, outputs

    trace = Path(tempfile.mkstemp(prefix="timeline-", suffix=".jsonl")[1])
    fd = os.open(trace, os.O_WRONLY | os.O_APPEND)
    t0 = time.perf_counter()

    def wrap(owner: Any, attr: str, name_of: Callable[[tuple], str]) -> None:
        setattr(owner, attr, _wrapped(fd, t0, name_of, getattr(owner, attr)))

    wrap(build._Outputs, "run", lambda a: "/".join(a[1]))
    wrap(validation, "validate_datasets", lambda a: "VALIDATE")
    wrap(validation, "write_report", lambda a: "write_report")
    for name in ("_compact_all", "_check_defines"):
        wrap(build, name, lambda a, name=name: name.lstrip("_"))
    wrap(build._Outputs, "finish", lambda a: "finish")
    for name in ("write_manifest", "swap_in"):
        wrap(outputs, name, lambda a, name=name: name)
    marks: list[tuple[float, str]] = []
    build.run_build(
        args.spec, args.out, args.raw, progress=lambda m: marks.append((time.perf_counter(), m))
    )
    end = time.perf_counter() - t0
    os.close(fd)
    rows = [json.loads(line) for line in trace.read_text().splitlines()]
    trace.unlink()
    start = next((t - t0 for t, m in marks if m.startswith("validate")), 0.0)
    parent = os.getpid()
    print(f"{'who':<4}{'start':>8}{'end':>8}{'wall':>7}{'cpu':>7}  job")
    for pid, name, s, e, cpu in sorted(rows, key=lambda r: r[2]):
        if s >= start - 0.01:
            who = "P" if pid == parent else "C"
            print(f"{who:<4}{s - start:8.2f}{e - start:8.2f}{e - s:7.2f}{cpu:7.2f}  {name}")
    print(f"{'':<4}{end - start:8.2f}  build done (validate + write from {start:.2f} s)")


if __name__ == "__main__":
    main()
