"""Seconds of three fixed or linear costs of a build: loading the specs, reading and checking
the raw exports, and the ADaM stage (issue 15).

A script that measures, not a test. In one process: `load_study` (--repeat times, the CT
caches cleared between runs, so each run reads the bundled CT packages again), then
`RawStore.check_all` on the raw folder (once: it is the first half of the SDTM stage), then
the SDTM stage (not timed: ADaM reads it), then the ADaM stage (--repeat times). Wall and CPU
seconds are printed: on a shared machine the CPU seconds are the steadier figure.

    python benchmarks/raw_spec_adam.py --raw /path/to/raw1k [--spec specs/nct03691909]
"""

from __future__ import annotations

import argparse
import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cdiscforge import ct
from cdiscforge import spec as spec_module
from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.errors import collecting


def _timed(label: str, fn: Callable[[], Any]) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    print(
        f"{label:<28} wall {time.perf_counter() - wall:7.3f} s   "
        f"cpu {time.process_time() - cpu:7.3f} s",
        flush=True,
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="folder of raw exports")
    parser.add_argument("--spec", type=Path, default=Path("specs/nct03691909"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for stage in spec_module.STAGES:  # imported by load_study anyway; not part of its time
        importlib.import_module(f"cdiscforge.{stage}")
    study = None
    for _ in range(args.repeat):
        ct.package.cache_clear()
        ct._cdisc_codelist.cache_clear()
        study = _timed("load_study", lambda: spec_module.load_study(args.spec))
    assert study is not None
    log = BuildLog()
    store = RawStore(study, args.raw, log)
    with collecting():
        _timed("RawStore.check_all", store.check_all)
        sdtm = build_stage(study, "sdtm", store, log)
    del store
    for _ in range(args.repeat):
        with collecting():
            _timed(
                "adam stage",
                lambda: build_stage(study, "adam", None, BuildLog(), upstream=sdtm),
            )


if __name__ == "__main__":
    main()
