"""CPU seconds of each writer and of the metadata derived from the data, on a real build's
compacted datasets.

A script that measures, not a test. It builds SDTM and ADaM from a raw folder once (not
timed), compacts them as the build does before writing (`cdiscforge.compact`), then times,
in CPU seconds (user + sys of this process: the machine is shared, wall time is noise),
the best of `--repeat` runs of: `define_data_type` of every variable, `write_dataset_json`
and `write_xpt` of every dataset, `write_define` + `write_p21_spec` per stage, the
CF-MD-0007 lengths, and the read-back checks (`check_dataset_json`, `scan_xpt_distinct` of
every character variable). Run it with main's and a branch's interpreter and compare; the
files of the last run are left in `--out` to compare byte for byte.

    python benchmarks/writers.py --raw /work/scale/raw1000 --out /tmp/writers-bench
"""

from __future__ import annotations

import argparse
import copy
import shutil
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

STUDY = Path(__file__).resolve().parent.parent / "specs" / "nct03691909"


def _datasets(raw: Path) -> tuple[object, dict[str, object]]:
    from cdiscforge.buildlog import BuildLog
    from cdiscforge.compact import compact
    from cdiscforge.engine import RawStore, build_stage
    from cdiscforge.spec import load_study

    study = load_study(STUDY)
    log = BuildLog()
    sdtm = build_stage(study, "sdtm", RawStore(study, raw, log), log)
    adam = build_stage(study, "adam", None, log, upstream=sdtm)
    sets = {**sdtm, **adam}
    for ds in sets.values():
        compact(ds)
    return study, sets


def _cpu(fn: Callable[[], object]) -> float:
    start = time.process_time()
    fn()
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--raw", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from cdiscforge.datasetjson import check_dataset_json, write_dataset_json
    from cdiscforge.define import write_define
    from cdiscforge.define.datatypes import define_data_type
    from cdiscforge.p21 import write_p21_spec
    from cdiscforge.validation.rules_sdtm import _lengths
    from cdiscforge.xpt import scan_xpt_distinct, write_xpt

    study, built = _datasets(args.raw)
    info = study.info()  # type: ignore[attr-defined]
    stamp = study.creation_datetime  # type: ignore[attr-defined]
    created = datetime.fromisoformat(stamp)
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        sets = copy.deepcopy(built)  # the XPT writer records fitted lengths on the variables
        order = sorted(sets.values(), key=lambda d: d.name)
        out = args.out
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        stages = {
            "SDTM": [d for d in order if not d.name.startswith("AD")],
            "ADaM": [d for d in order if d.name.startswith("AD")],
        }

        def data_types(order: list = order) -> None:
            for ds in order:
                for var in ds.variables:
                    define_data_type(var, ds.frame[var.name])

        def lengths(order: list = order) -> None:
            for ds in order:
                _lengths(ds, ds.frame)

        def json_files(order: list = order, out: Path = out) -> None:
            for ds in order:
                write_dataset_json(
                    ds, out / f"{ds.name.lower()}.json", study=info, created=stamp,
                    define_path="define.xml",
                )  # fmt: skip

        def xpt_files(order: list = order, out: Path = out) -> None:
            for ds in order:
                write_xpt(ds, out / f"{ds.name.lower()}.xpt", created=created)

        def define_p21(stages: dict = stages, out: Path = out) -> None:
            for standard, group in stages.items():
                folder = out / standard.lower()
                folder.mkdir(exist_ok=True)
                write_define(group, folder / "define.xml", study=info, standard=standard,
                             created=stamp)  # fmt: skip
                write_p21_spec(group, folder / "spec.xlsx", study=info, standard=standard)

        def check_json(order: list = order, out: Path = out) -> None:
            for ds in order:
                check_dataset_json(out / f"{ds.name.lower()}.json")

        def scan_xpt(order: list = order, out: Path = out) -> None:
            for ds in order:
                names = [v.name for v in ds.variables if v.is_char]
                scan_xpt_distinct(out / f"{ds.name.lower()}.xpt", names)

        for name, fn in (
            ("define_data_type", data_types),
            ("CF-MD-0007 lengths", lengths),
            ("write_dataset_json", json_files),
            ("write_xpt", xpt_files),
            ("write_define + write_p21_spec", define_p21),
            ("check_dataset_json", check_json),
            ("scan_xpt_distinct", scan_xpt),
        ):
            seconds = _cpu(fn)
            best[name] = min(best.get(name, seconds), seconds)
    for name, seconds in best.items():
        print(f"{name:32s} {seconds:7.2f} s CPU (best of {args.repeat})")


if __name__ == "__main__":
    main()
