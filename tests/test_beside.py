"""A stage's most expensive dataset built in a forked child beside the others
(engine._Beside): the files, the log and the errors must be those of one process.

The bundled study is small, so the tests lower `BESIDE_MIN_ROWS` to 0 to make the build
fork (the child is a fork of this process: the patched module is its too)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_concurrent import _forks

from cdiscforge import concurrent, engine
from cdiscforge.build import run_build
from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.errors import CdiscforgeError, ErrorCollector, InputError, Recorder, report
from cdiscforge.spec import load_study

STUDY2 = Path(__file__).resolve().parent.parent / "specs" / "cfdemo02"


@pytest.fixture
def fork_always(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Every raw-export stage forks; the monkeypatch, to set the workers per build."""
    monkeypatch.setattr(engine, "BESIDE_MIN_ROWS", 0)
    monkeypatch.setenv("CDISCFORGE_WORKERS", "2")
    if concurrent.workers() < 2:
        pytest.skip("one core: the build never forks")
    return monkeypatch


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "timings.json"
    }


def _build(spec: Path, raw: Path, out: Path, workers: str, mp: pytest.MonkeyPatch) -> list[str]:
    said: list[str] = []
    mp.setenv("CDISCFORGE_WORKERS", workers)
    run_build(spec, out, raw, progress=said.append)
    return said


@pytest.mark.parametrize("study", ["seed", "study2"])
def test_two_processes_write_the_files_one_process_writes(
    study: str, fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    monkeypatch = fork_always
    spec, raw = (seed_spec, default_raw) if study == "seed" else (STUDY2, STUDY2 / "raw")
    both = _build(spec, raw, tmp_path / "two", "2", monkeypatch)
    one = _build(spec, raw, tmp_path / "one", "1", monkeypatch)
    # it forked in the stage that reads raw exports (only there: engine._beside_plan), and
    # wrote SDTM's files while ADaM was built (build._Ahead), when there is one
    stages = {"sdtm", "adam"} if study == "seed" else {"sdtm"}
    assert {m.split()[0] for m in both if m.endswith(" beside)")} == stages
    assert all(m.endswith("(+ sdtm files beside)") for m in both if m.startswith("adam "))
    assert not any(m.endswith(" beside)") for m in one)
    two_files, one_files = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert two_files.keys() == one_files.keys()
    assert [f for f in two_files if two_files[f] != one_files[f]] == []


def _planted(default_raw: Path, tmp_path: Path, faults: dict[str, list[tuple]]) -> Path:
    raw = tmp_path / "raw"
    shutil.copytree(default_raw, raw)
    for form, cells in faults.items():
        frame = pd.read_csv(raw / f"{form}.csv", dtype=str, keep_default_na=False)
        for row, column, value in cells:
            frame.loc[row - 1, column] = value
        frame.to_csv(raw / f"{form}.csv", index=False)
    return raw


def _stage_run(
    seed_spec: Path, raw: Path, workers: str, mp: pytest.MonkeyPatch
) -> tuple[str, list[tuple], list[tuple], list[str]]:
    """The stage's error, its log (events, reconciliation rows) and progress messages."""
    mp.setenv("CDISCFORGE_WORKERS", workers)
    study = load_study(seed_spec)
    log = BuildLog()
    said: list[str] = []
    with pytest.raises(CdiscforgeError) as caught:
        build_stage(study, "sdtm", RawStore(study, raw, log), log, progress=said.append)
    events = [(e.level, e.stage, e.dataset, e.message) for e in log.events]
    rows = [(r.source, r.dataset, r.read, r.written, dict(r.rejected)) for r in log.reconciliation]
    return str(caught.value), events, rows, said


def _stage_error(seed_spec: Path, raw: Path, workers: str, mp: pytest.MonkeyPatch) -> str:
    error, _, _, said = _stage_run(seed_spec, raw, workers, mp)
    assert any(m.endswith(" beside)") for m in said) == (workers == "2")
    return error


# Mapping errors (the raw check passes them): AE is built after the fork (before SV, which the
# child needs, in the order), LB too and before MK in the order, PR after it; the child finds
# those of MK.
FAULTS = {
    "adverse_events": [(3, "AESEV", "HUGE")],
    "lab": [(58, "UNIT", "furlongs")],
    "joints": [(5, "JOINT", "Nose"), (7, "ASSESSMENT", "Itchy")],
    "liposuction": [(2, "PRLOC", "Belly button")],
}


def test_errors_of_both_processes_are_reported_together_as_one_process_reports_them(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    raw = _planted(default_raw, tmp_path, FAULTS)
    both = _stage_error(seed_spec, raw, "2", fork_always)
    assert both == _stage_error(seed_spec, raw, "1", fork_always)
    assert both.startswith("5 input errors in 4 file(s)")
    for form, cells in FAULTS.items():
        for row, column, _ in cells:
            assert f"{form}.csv, row {row}, column {column}," in both


def test_an_exception_in_the_child_ends_the_stage_where_one_process_ends_it(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """The errors of the datasets before the child's in the order are reported with its
    exception; those of the datasets after it are not (one process never built them)."""
    raw = _planted(default_raw, tmp_path, FAULTS)
    study = load_study(seed_spec)
    store = RawStore(study, raw, BuildLog())
    store.check_all()
    child = engine._beside_plan(study, engine.build_order(study, "sdtm"), store, {})
    assert child is not None
    real = engine.build_dataset

    def broken(spec, *args, **kw):  # type: ignore[no-untyped-def]
        if spec.name == child:
            raise CdiscforgeError(f"{child} cannot be built")
        return real(spec, *args, **kw)

    fork_always.setattr(engine, "build_dataset", broken)
    both = _stage_error(seed_spec, raw, "2", fork_always)
    assert both == _stage_error(seed_spec, raw, "1", fork_always)
    assert f"(the build stopped after these: {child} cannot be built)" in both
    assert "adverse_events.csv" in both and "lab.csv" in both
    assert "liposuction.csv" not in both and "joints.csv" not in both


def test_the_child_s_dependencies_built_first_log_and_report_as_one_process(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """MK needs DM, SE and SV: they are built first and the child forked then; AE, CM and
    DS, before SV in the order, are built after it. Each planted cell is reported by two
    datasets (the collector keeps the first report of a cell: the order shows), and the
    log lines and reconciliation rows come in the order of one process."""
    raw = _planted(default_raw, tmp_path, FAULTS)
    study = load_study(seed_spec)
    order = engine.build_order(study, "sdtm")
    store = RawStore(study, raw, BuildLog())
    store.check_all()
    child = engine._beside_plan(study, order, store, {})
    first = engine._needs(study, order)[child]
    late = [n for n in order if n not in first and n != child]  # built after the fork
    before = [n for n in late if order.index(n) < max(order.index(f) for f in first)]
    assert child == "MK" and before  # the study has datasets to move after the fork
    real = engine.build_dataset
    shared = {  # planted cell -> the datasets reporting it
        1: [before[0], max(first, key=order.index)],  # after the fork, before a first one
        2: [late[-1], child],  # the child's and one after it
        3: [min(first, key=order.index), before[-1]],
    }

    def planted(spec, *args, **kw):  # type: ignore[no-untyped-def]
        for row, names in shared.items():
            if spec.name in names:
                report(InputError("planted.csv", f"from {spec.name}", row=row, column="X"))
        return real(spec, *args, **kw)

    fork_always.setattr(engine, "build_dataset", planted)
    both = _stage_run(seed_spec, raw, "2", fork_always)
    one = _stage_run(seed_spec, raw, "1", fork_always)
    assert both[:3] == one[:3]
    for row, names in shared.items():  # the one earlier in the order
        assert f"row {row}, column X: from {min(names, key=order.index)}" in both[0]
        assert f"row {row}, column X: from {max(names, key=order.index)}" not in both[0]
    said = [m.split()[0] for m in both[3]]
    assert said[: len(first)] == [n for n in order if n in first]
    assert all(m.endswith(f"(+ {child} beside)") for m in both[3] if m.split()[0] in late)


def test_an_exception_in_a_dataset_the_child_needs_ends_the_stage_as_one_process_ends_it(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """SV (built before the fork) fails: no child; AE, before SV in the order, is built and
    its error reported with SV's exception; nothing after SV is built."""
    raw = _planted(default_raw, tmp_path, FAULTS)
    real = engine.build_dataset
    built: list[str] = []

    def broken(spec, *args, **kw):  # type: ignore[no-untyped-def]
        built.append(spec.name)
        if spec.name == "SV":
            raise CdiscforgeError("SV cannot be built")
        return real(spec, *args, **kw)

    fork_always.setattr(engine, "build_dataset", broken)
    both = _stage_run(seed_spec, raw, "2", fork_always)
    assert not any(m.endswith(" beside)") for m in both[3])
    built_two, built[:] = built[:], []
    one = _stage_run(seed_spec, raw, "1", fork_always)
    assert both[:3] == one[:3]
    assert sorted(built_two) == sorted(built)  # the same datasets, SV first of DM, SE, SV
    assert built_two.index("SV") < built_two.index("AE")
    assert "(the build stopped after these: SV cannot be built)" in both[0]
    assert "adverse_events.csv" in both[0]
    assert "lab.csv" not in both[0] and "joints.csv" not in both[0]


def test_a_recorder_replayed_leaves_the_collector_as_direct_reports_would() -> None:
    """The collector's per-file cap, dedupe and `secondary` rule depend on the order."""
    rows = np.array([1, 2, 3])
    calls = [
        ("add_rows", ("f", rows, "A", np.array(["x", "y", "z"], dtype=object), "bad"), {}),
        ("add", (InputError("f", "again", row=2, column="A"),), {}),
        ("add", (InputError("f", "derived", row=1, column="B"),), {"secondary": True}),
        ("add", (InputError("g", "other", row=9),), {}),
    ]
    direct = ErrorCollector(limit_per_file=2)
    recorder = Recorder()
    for method, args, kwargs in calls:
        getattr(direct, method)(*args, **kwargs)
        getattr(recorder, method)(*args, **kwargs)
    replayed = ErrorCollector(limit_per_file=2)
    recorder.replay(replayed)
    assert str(replayed.combined()) == str(direct.combined())
    assert replayed.more == direct.more == {"f": 1}


def test_the_child_lets_go_of_the_raw_exports_it_does_not_read(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """So that each raw export is freed after its last reader in both processes; and no
    form is read twice in either."""
    study = load_study(seed_spec)
    real = engine.build_dataset

    def watched(spec, study_, store, *args, **kw):  # type: ignore[no-untyped-def]
        held = ",".join(sorted(store._forms)) + "|" + ",".join(store.reread)
        (tmp_path / spec.name).write_text(held)  # from either process
        return real(spec, study_, store, *args, **kw)

    fork_always.setattr(engine, "build_dataset", watched)
    log = BuildLog()
    store = RawStore(study, default_raw, log)
    store.check_all()
    child = engine._beside_plan(study, engine.build_order(study, "sdtm"), store, {})
    assert child is not None
    reads = engine._forms_read(study, study.datasets[child])
    store = RawStore(study, default_raw, log)
    build_stage(study, "sdtm", store, log)
    assert store._forms == {} and store.reread == []
    assert (tmp_path / child).read_text() == ",".join(sorted(reads)) + "|"
    order = engine.build_order(study, "sdtm")
    for name in order:
        held = (tmp_path / name).read_text().split("|")
        assert held[1] == ""  # nothing read twice
        if order.index(name) > order.index(child):  # forked by then: the child holds them
            only_child = reads - engine._forms_read(study, study.datasets[name])
            assert not only_child & set(held[0].split(","))


# ------------------------------------ SDTM's files written while ADaM is built (build._Ahead)


def _traced(mp: pytest.MonkeyPatch, trace: Path, fail: tuple[str, ...] | None = None) -> None:
    """Every writing job appends '<pid> <key>' to `trace` (from any process); the job `fail`
    raises, wherever it runs; the ahead child's jobs are also listed in `trace`.ahead."""
    from cdiscforge import build

    real_run, real_child = build._Outputs.run, build._Ahead._in_child

    def run(self, key):  # type: ignore[no-untyped-def]
        with trace.open("a") as fh:
            fh.write(f"{os.getpid()} {'/'.join(key)}\n")
        if key == fail:
            raise CdiscforgeError(f"cannot write {'/'.join(key)}")
        return real_run(self, key)

    def in_child(self):  # type: ignore[no-untyped-def]
        done = real_child(self)
        trace.with_suffix(".ahead").write_text("\n".join("/".join(k) for k in done))
        return done

    mp.setattr(build._Outputs, "run", run)
    mp.setattr(build._Ahead, "_in_child", in_child)


def _runs(trace: Path) -> list[str]:
    return [line.split()[1] for line in trace.read_text().splitlines()]


def test_sdtm_files_written_ahead_are_written_once_and_as_one_process_writes_them(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    trace = tmp_path / "jobs.txt"
    _traced(fork_always, trace)
    _build(seed_spec, default_raw, tmp_path / "two", "2", fork_always)
    ahead = trace.with_suffix(".ahead").read_text().split()
    assert ahead and all(key.split("/")[1] == "sdtm" for key in ahead)
    runs = _runs(trace)
    assert sorted(runs) == sorted(set(runs))  # every job once: none again after the child
    assert set(ahead) <= set(runs)
    trace.unlink()
    _build(seed_spec, default_raw, tmp_path / "one", "1", fork_always)
    assert sorted(_runs(trace)) == sorted(runs)  # the same jobs
    two_files, one_files = _files(tmp_path / "two"), _files(tmp_path / "one")
    assert two_files.keys() == one_files.keys()
    assert [f for f in two_files if two_files[f] != one_files[f]] == []


def _build_error(spec: Path, raw: Path, out: Path, workers: str, mp: pytest.MonkeyPatch) -> str:
    with pytest.raises(CdiscforgeError) as caught:
        _build(spec, raw, out, workers, mp)
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]
    return str(caught.value)


def test_a_writing_job_failing_ahead_fails_the_build_as_in_one_process(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """The failing job runs again with the others (the child leaves it), so the error and
    the output folder are those of one process."""
    trace = tmp_path / "jobs.txt"
    _traced(fork_always, trace)
    _build(seed_spec, default_raw, tmp_path / "probe", "2", fork_always)
    ahead = trace.with_suffix(".ahead").read_text().split()
    fail = tuple(ahead[1].split("/"))  # the second job the child does
    _traced(fork_always, trace, fail)
    trace.unlink()
    both = _build_error(seed_spec, default_raw, tmp_path / "two", "2", fork_always)
    assert trace.with_suffix(".ahead").read_text().split() == ahead[:1]  # stopped there
    assert _runs(trace).count("/".join(fail)) == 2  # in the child, then again
    one = _build_error(seed_spec, default_raw, tmp_path / "one", "1", fork_always)
    assert both == one == f"cannot write {'/'.join(fail)}"
    assert not (tmp_path / "two").exists() and not (tmp_path / "one").exists()


def test_an_adam_dataset_failing_while_files_are_written_ahead_fails_as_in_one_process(
    fork_always: pytest.MonkeyPatch, seed_spec: Path, default_raw: Path, tmp_path: Path
) -> None:
    """ADaM's errors (an error ADSL reports, then ADLB's exception) come as in one process;
    the child writing SDTM's files is killed and reaped, nothing is published."""
    real = engine.build_dataset

    def broken(spec, *args, **kw):  # type: ignore[no-untyped-def]
        if spec.name == "ADSL":
            report(InputError("adsl.csv", "planted", row=3, column="AGE", value="x"))
            time.sleep(0.5)  # the child writes meanwhile
        if spec.name == "ADLB":
            raise CdiscforgeError("ADLB cannot be built")
        return real(spec, *args, **kw)

    fork_always.setattr(engine, "build_dataset", broken)
    forked = _forks(fork_always)
    said: list[str] = []
    with pytest.raises(CdiscforgeError) as caught:
        run_build(seed_spec, tmp_path / "two", default_raw, progress=said.append)
    assert "adam ADLB (+ sdtm files beside)" in said
    assert len(forked) == 2  # the SDTM stage's child and the one writing SDTM's files
    for pid in forked:
        with pytest.raises(ChildProcessError):  # ended or killed, and reaped: not a zombie
            os.waitpid(pid, os.WNOHANG)
    both = str(caught.value)
    one = _build_error(seed_spec, default_raw, tmp_path / "one", "1", fork_always)
    assert both == one
    assert "adsl.csv, row 3, column AGE" in both and "ADLB cannot be built" in both
    assert not (tmp_path / "two").exists() and not (tmp_path / "one").exists()
