"""Seconds of define.xml's cross-check on a build's outputs, and of its two parts.

    python benchmarks/crosscheck.py OUT [OUT ...]

OUT is a `cdiscforge build --out` folder (sdtm/, adam/, datasetjson/). Prints, per stage and
in total, the seconds of `crosscheck` as the build calls it, of reading the XPT codelist
columns (`_scan_xpt`) and of checking the Dataset-JSON files (`check_dataset_json`), each
timed on its own, best of `--repeat` runs (the machine may be shared). Reads only.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from cdiscforge.datasetjson import check_dataset_json
from cdiscforge.define.crosscheck import _checked_codelists, _read_define, _scan_xpt, crosscheck
from cdiscforge.xpt import DEFAULT_CHUNK_ROWS, read_xpt_variables


def _best(repeat: int, work) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="+", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for out in args.out:
        totals = [0.0, 0.0, 0.0]
        for stage in ("sdtm", "adam"):
            folder, json_dir = out / stage, out / "datasetjson" / stage
            define = folder / "define.xml"
            if not define.is_file():
                continue
            groups, codelists = _read_define(define)

            def scan(groups=groups, codelists=codelists, folder=folder) -> None:  # type: ignore[no-untyped-def]
                for g in groups:
                    path = folder / g.href
                    xpt_vars = {v.name: v for v in read_xpt_variables(path)}
                    _scan_xpt(path, _checked_codelists(g, xpt_vars, codelists), DEFAULT_CHUNK_ROWS)

            def check(json_dir=json_dir) -> None:  # type: ignore[no-untyped-def]
                for path in sorted(json_dir.glob("*.json")):
                    check_dataset_json(path)

            def whole(define=define, folder=folder, json_dir=json_dir) -> None:  # type: ignore[no-untyped-def]
                problems = crosscheck(define, folder, json_dir)
                assert not problems, problems[:3]

            seconds = [_best(args.repeat, f) for f in (whole, scan, check)]
            totals = [a + b for a, b in zip(totals, seconds, strict=True)]
            print(f"{out} {stage}: crosscheck {seconds[0]:.2f} s, _scan_xpt {seconds[1]:.2f} s, "
                  f"check_dataset_json {seconds[2]:.2f} s")  # fmt: skip
        print(f"{out} total: crosscheck {totals[0]:.2f} s, _scan_xpt {totals[1]:.2f} s, "
              f"check_dataset_json {totals[2]:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
