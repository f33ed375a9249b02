"""Time to write a 10,000-subject LB as Dataset-JSON in each encoding (.json, .ndjson, .dsjc).

A script that measures, not a test. The LB frame is SYNTHETIC in its size, real in its shape:
the simulator makes every form of a chunk of subjects together and SDTM LB needs the whole
SDTM stage (DM, EX, DS ... first), i.e. a 10,000-subject build, which this shared machine
must not run. So the bundled study's LB is built once at its default 15 subjects (real
variables, metadata, types and values) and its subjects are replicated, with new USUBJIDs,
up to `--subjects` (10,000): the records per subject, the columns and their value mix are the
real LB's. One process, the frame built once; then, per encoding, one write timed
(`write_dataset_json`, the build's writer), with the file size; the XPT write of the same
frame is timed for reference; then each file is read back once (`read_dataset_json`) and
compared with the frame.

    python benchmarks/datasetjson_encodings.py              # 10,000 subjects (memory heavy)
    python benchmarks/datasetjson_encodings.py --subjects 1000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

STUDY = Path(__file__).resolve().parent.parent / "specs" / "nct03691909"


def _peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def bundled_lb(tmp: Path) -> tuple[Any, Any]:
    """The bundled study's SDTM LB at its default 15 subjects (simulated, then mapped)."""
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.engine import RawStore, build_stage
    from cdiscforge.simulate import simulate
    from cdiscforge.spec import load_study

    simulate(STUDY, tmp / "raw")
    study = load_study(STUDY)
    log = BuildLog()
    sdtm = build_stage(study, "sdtm", RawStore(study, tmp / "raw", log), log)
    return study, sdtm["LB"]


def replicate(lb: Any, subjects: int) -> Any:
    """`lb` with its subjects copied (new USUBJIDs) until there are `subjects` of them."""
    from cdiscforge.model import Dataset

    frame = lb.frame
    codes, uniques = pd.factorize(frame["USUBJID"], sort=True)
    per = len(uniques)
    copies = -(-subjects // per)
    # Record i of copy k belongs to subject k * per + codes[i]; keep the first `subjects`.
    subject = (np.arange(copies)[:, None] * per + codes[None, :]).ravel()
    rows = np.tile(np.arange(len(frame)), copies)
    keep = subject < subjects
    subject, rows = subject[keep], rows[keep]
    order = np.argsort(subject, kind="stable")  # subject-ordered, as the build sorts LB
    subject, rows = subject[order], rows[order]
    big = frame.iloc[rows].reset_index(drop=True)
    studyid = str(frame["STUDYID"].iloc[0])
    ids = pd.Series([f"{studyid}-{i:05d}" for i in range(subjects)], dtype="str")
    big["USUBJID"] = ids.to_numpy()[subject]
    big["USUBJID"] = big["USUBJID"].astype("str")
    return Dataset(
        lb.name, lb.label, big, lb.variables, klass=lb.klass, structure=lb.structure,
        keys=lb.keys, standard=lb.standard, domain=lb.domain,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--no-read", action="store_true", help="skip the read-back")
    args = parser.parse_args()

    from cdiscforge import ct
    from cdiscforge.datasetjson import read_dataset_json, write_dataset_json
    from cdiscforge.xpt import write_xpt

    with tempfile.TemporaryDirectory(prefix="dsj-bench-") as tmp_name:
        tmp = Path(tmp_name)
        start = time.perf_counter()
        study, lb15 = bundled_lb(tmp)
        lb = replicate(lb15, args.subjects)
        del lb15
        info = study.info(sdtm_ct=ct.sdtm_ct_version(), adam_ct=ct.sdtm_ct_version())
        print(
            f"LB frame: {len(lb):,} records, {len(lb.variables)} variables, "
            f"{args.subjects:,} subjects (15 bundled subjects replicated); built in "
            f"{time.perf_counter() - start:.1f}s; peak RSS {_peak_mb():,.0f} MB",
            flush=True,
        )
        results = []
        start = time.perf_counter()
        xpt = write_xpt(lb, tmp / "lb.xpt", created=datetime.fromisoformat(study.creation_datetime))
        results.append(("xpt (reference)", time.perf_counter() - start, xpt.stat().st_size, None))
        xpt.unlink()
        runs = [("json", "lb.json", 9), ("ndjson", "lb.ndjson", 9), ("dsjc", "lb.dsjc", 9)]
        runs.append(("dsjc level 1", "lb1.dsjc", 1))
        for label, name, level in runs:
            start = time.perf_counter()
            path = write_dataset_json(
                lb, tmp / name, study=info, created=study.creation_datetime, dsjc_level=level
            )
            seconds = time.perf_counter() - start
            read = None
            if not args.no_read:
                start = time.perf_counter()
                back = read_dataset_json(path)
                read = time.perf_counter() - start
                assert len(back) == len(lb)
                for var in lb.variables:
                    if not var.is_char and var.format is None:
                        np.testing.assert_array_equal(
                            back.frame[var.name].to_numpy(dtype="float64", na_value=np.nan),
                            lb.frame[var.name].to_numpy(dtype="float64", na_value=np.nan),
                        )
                del back
            results.append((label, seconds, path.stat().st_size, read))
            print(f"  {label}: written in {seconds:.1f}s", flush=True)
            path.unlink()
    print()
    print(f"{'encoding':<16} {'write s':>8} {'file MB':>9} {'records/s':>11} {'read s':>7}")
    for label, seconds, size, read in results:
        mb = size / 1e6
        shown = f"{read:7.1f}" if read is not None else "      -"
        print(f"{label:<16} {seconds:8.1f} {mb:9.1f} {len(lb) / seconds:11,.0f} {shown}")
    print(f"peak RSS {_peak_mb():,.0f} MB; python {sys.version.split()[0]}")
    print(json.dumps({"records": len(lb), "subjects": args.subjects}))


if __name__ == "__main__":
    main()
