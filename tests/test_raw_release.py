"""The SDTM stage lets go of each raw export once no dataset still to be built reads it
(engine.build_stage / RawStore.release): memory at 10,000 subjects, where the lab export is
held through the MK build otherwise. What it must not do: drop a form a later dataset
reads (it would be read twice) or change what is built."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_order, build_stage
from cdiscforge.spec import load_study

STUDY2 = Path(__file__).resolve().parent.parent / "specs" / "cfdemo02"


def _stage(spec: Path, raw: Path) -> tuple[RawStore, list[str], dict]:
    study = load_study(spec)
    log = BuildLog()
    store = RawStore(study, raw, log)
    held: list[str] = []

    def seen(name: str) -> None:  # which forms are still held when each dataset starts
        held.append(f"{name}: {','.join(sorted(store._forms))}")

    built = build_stage(study, "sdtm", store, log, progress=seen)
    return store, held, built


def test_every_form_is_released_by_the_end_and_none_is_read_twice(
    seed_spec: Path, default_raw: Path
) -> None:
    store, held, _ = _stage(seed_spec, default_raw)
    assert store.reread == []
    assert store._forms == {}
    assert store.released  # the forms were read, then released
    study = load_study(seed_spec)
    order = build_order(study, "sdtm")
    # the lab export is gone before MK (read by LB only), the joint counts are held for it
    mk = next(h for h in held if h.startswith("MK:"))
    assert "joints" in mk.split(": ")[1].split(",") and "lab" not in mk.split(": ")[1].split(",")
    assert order.index("LB") < order.index("MK")


def test_a_second_study_reads_each_form_once(tmp_path: Path) -> None:
    store, _, built = _stage(STUDY2, STUDY2 / "raw")
    assert store.reread == [] and store._forms == {}
    assert len(built["VS"]) == 136


def test_a_form_asked_for_after_its_release_is_read_again_not_lost(
    seed_spec: Path, default_raw: Path
) -> None:
    study = load_study(seed_spec)
    log = BuildLog()
    store = RawStore(study, default_raw, log)
    store.check_all()
    first = store.form("lab").frame.copy()
    events = len(log.events)
    store.release(["lab"])
    again = store.form("lab").frame
    pd.testing.assert_frame_equal(first, again)
    assert store.reread == ["lab"] and len(log.events) == events  # logged once only
