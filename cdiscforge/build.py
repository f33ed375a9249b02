"""One build: raw exports -> SDTM -> ADaM -> validation -> files, published atomically.

Before anything runs, the output folder is checked (`cdiscforge.outputs`: a folder we own,
or an empty or new one; writable) and locked against a second build. Everything is then
written into a staging folder beside it. Only when every stage succeeded and validation
found no error-level finding are the new files swapped in, replacing exactly the files the
previous build's manifest lists: the user's own files in the folder stay, and a reader
never sees a half-written or unvalidated submission. When validation fails, its report and
the build log go to `<out>/failed/` and the previous package stays byte-identical; that
includes the define.xml rules, run on each stage's define.xml once it is written in staging
(a failure there publishes none of the written files either). Any
other failure, Ctrl-C or SIGTERM leaves `<out>` as it was and no staging folder behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from cdiscforge import outputs
from cdiscforge.buildlog import BuildLog
from cdiscforge.compact import compact
from cdiscforge.concurrent import Child, Job, Shared, give_back_memory, share_jobs, workers
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.errors import ValidationFailed
from cdiscforge.model import Dataset
from cdiscforge.progress import counts
from cdiscforge.spec import StudySpec, load_study

Progress = Callable[[str], None]
_LISTED = 50  # user files named one by one in the log; the rest counted


@dataclass
class BuildResult:
    out_dir: Path
    datasets: dict[str, Dataset]
    log: BuildLog
    validation: object | None = None
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # files in out_dir no build of ours wrote
    notes: list[str] = field(default_factory=list)  # e.g. a stale lock taken over


def run_build(
    spec_dir: Path,
    out_dir: Path,
    raw_dir: Path | None = None,
    *,
    progress: Progress | None = None,
    on_note: Progress | None = None,
    datasetjson: tuple[str, ...] = ("json",),
) -> BuildResult:
    """Build a study into `out_dir` (see the module docstring for what is published when).

    `datasetjson` names the Dataset-JSON encodings written beside the XPT ("json",
    "ndjson", "dsjc"; each dataset once per encoding, all in datasetjson/<stage>/).

    Raises OutputRefused (exit 2) before building when `out_dir` is not ours to write.
    `on_note` hears at once what the build log will also say about the folder (a stale
    lock taken over), so a build that fails later still told the user.
    """
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    root = outputs.check_target(out_dir, spec_dir=spec_dir, raw_dir=raw_dir)
    outputs.check_writable(outputs.inspect(root))
    published = [False]
    try:
        with outputs.OutputLock(root) as lock:
            state = outputs.inspect(root)  # again, now that no other build can change it
            lock.notes += outputs.clear_leftovers(root)
            for note in lock.notes:
                (on_note or say)(note)
            staging = outputs.staging_path(root)
            try:
                outputs.remove_tree(staging)  # a leftover of an earlier process with our pid
                staging.mkdir()
                return _build(
                    spec_dir,
                    state,
                    staging,
                    raw_dir,
                    say,
                    timings,
                    lock.notes,
                    published,
                    datasetjson,
                )
            finally:
                outputs.remove_tree(staging)
    except outputs.Interrupted as exc:  # also one deferred until a swap or clean-up ended
        exc.published = published[0]
        raise


def _timed(timings: dict[str, float], name: str, fn: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - start, 3)
    return result


def _build(
    spec_dir: Path,
    state: outputs.OutputState,
    staging: Path,
    raw_dir: Path | None,
    say: Progress,
    timings: dict[str, float],
    notes: list[str],
    published: list[bool],
    datasetjson: tuple[str, ...] = ("json",),
) -> BuildResult:
    out_dir = state.root
    say("specs")
    study = load_study(spec_dir)
    workbook = _p21_workbook(study)  # read before anything runs: its errors are input errors
    log = BuildLog()
    for note in notes:
        log.warn("output", "", note)
    if state.foreign:
        names = ", ".join(state.foreign[:_LISTED])
        more = f" and {len(state.foreign) - _LISTED} more" if len(state.foreign) > _LISTED else ""
        log.info(
            "output",
            "",
            f"kept {len(state.foreign)} file(s) in the output folder that cdiscforge did not "
            f"write, untouched: {names}{more}",
        )
    if raw_dir is None:
        say("simulate")
        from cdiscforge.simulate import simulate

        raw_dir = staging / "raw"
        sim = _timed(timings, "simulate", lambda: simulate(spec_dir, raw_dir))
        log.info("simulate", "", f"simulated raw exports: {dict(sim.rows)}")  # type: ignore[attr-defined]
    store = RawStore(study, raw_dir, log)
    count = counts(say)  # a live display (cdiscforge.progress) counts finished records
    say("sdtm raw exports")  # read and checked whole before the first dataset

    sdtm_sets = _timed(
        timings,
        "sdtm",
        lambda: build_stage(
            study,
            "sdtm",
            store,
            log,
            progress=lambda n: say(f"sdtm {n}"),
            on_built=lambda ds: count.done(len(ds)),
        ),
    )
    store = None  # the raw frames, mapped now (ADaM reads SDTM): not held through the rest
    with _Ahead(study, sdtm_sets, staging, datasetjson, workbook is None) as ahead:  # type: ignore[arg-type]
        beside = " (+ sdtm files beside)" if ahead.running else ""
        adam_sets = _timed(
            timings,
            "adam",
            lambda: build_stage(
                study,
                "adam",
                None,
                log,
                upstream=sdtm_sets,
                progress=lambda n: say(f"adam {n}{beside}"),
                on_built=lambda ds: count.done(len(ds)),
            ),
        )
        ahead.stop()  # it ends with the job it is doing, while this process goes on below
        datasets: dict[str, Dataset] = {**sdtm_sets, **adam_sets}  # type: ignore[dict-item]
        if workbook is not None:
            _apply_p21(study, workbook, datasets, log)
        inputs = _input_hashes(spec_dir, raw_dir, staging, out_dir, log)
        count.expect(
            sum(len(ds) for ds in datasets.values()), "validate", "write", "validate + write"
        )
        from cdiscforge.validation import validate_datasets, write_report
        from cdiscforge.validation.waivers import study_waivers

        waivers = study_waivers(study.folder)  # specs/<study>/waivers.yaml: explained findings
        from cdiscforge.validation.findings import ValidationOptions

        checks = ValidationOptions(  # the study's CT: its releases and sponsor codelists
            ct_version=study.terminology.version("sdtm"), terminology=study.terminology
        )

        def validate() -> tuple[object, float]:
            start = time.perf_counter()
            found = validate_datasets(list(datasets.values()), checks=checks, waivers=waivers)
            return found, round(time.perf_counter() - start, 3)

        # Validating and writing read the same datasets and change none: on two cores a
        # forked child validates while this process starts on the files, then both take the
        # writing jobs (each file, each cross-check) as they come free
        # (cdiscforge.concurrent.share_jobs). Nothing written goes out before the validation
        # is known: a failed validation removes the written files (the log lines of the
        # writing are only written once it passed), and is reported before any error of the
        # writing, as when the writing waited.
        concurrent = workers() > 1
        say("validate + write" if concurrent else "validate")  # the step's seconds include:
        _compact_all(datasets)  # before the fork: the child shares the compact frames
        plan = _Outputs(
            study, sdtm_sets, adam_sets, staging, datasetjson, waivers=waivers, hashes=True
        )
        done = ahead.results(plan.keys)  # SDTM's jobs run while ADaM was built
    written: Shared[Any] | None = None
    if concurrent:
        start = time.perf_counter()
        written = share_jobs(
            plan.jobs,
            first=validate,
            proceed=lambda checked: not checked[0].has_errors,  # type: ignore[attr-defined]
            done=done,
        )
        (result, timings["validate"]), write_start = written.first, start
    else:
        result, timings["validate"] = validate()

    def refuse(written: bool) -> ValidationFailed:
        """Move the report and log (not the datasets) to <out>/failed/; the error to raise."""
        if written:  # define.xml rules failed after write_outputs: publish none of its files
            for folder in _WRITTEN_FOLDERS:
                outputs.remove_tree(staging / folder)
        log.timings.update(timings)
        log.write(staging)
        outputs.write_manifest(staging, inputs=inputs)
        failed = out_dir / outputs.FAILED
        outputs.swap_in(
            staging,
            failed,
            state.failed,
            backup=out_dir.parent / f".{out_dir.name}.failed-backup-{os.getpid()}",
        )
        errors = [f for f in result.findings if f.severity == "error" and not f.waiver]  # type: ignore[attr-defined]
        first = errors[0]
        kept = (
            f"the previous output in {out_dir} is unchanged"
            if state.manifest is not None
            else "no datasets were published"
        )
        return ValidationFailed(
            f"validation found {len(errors)} error-level finding(s); {kept}. "
            f"First: {first.rule_id} {first.dataset} {','.join(first.variables)}: "
            f"{first.message}. "
            f"Report: {failed / 'validation' / 'report.html'}; log: {failed / 'build.log'}"
        )

    report = staging / "validation"
    if result.has_errors:  # type: ignore[attr-defined]
        write_report(result, report, generated=study.creation_datetime)  # type: ignore[arg-type]
        raise refuse(written=concurrent)  # written meanwhile: none of it goes out
    # Passed: the report is written once, below, with the define.xml rules' findings too.
    if written is None:  # one process: write once validation passed
        say("write")
        write_start = time.perf_counter()
        written = share_jobs(plan.jobs)
    files = plan.finish(written, log)  # the writing's error, if any, is raised here
    timings["write"] = round(time.perf_counter() - write_start, 3)
    say("validate define.xml")  # run with the writing (jobs of its own): their findings now
    start = time.perf_counter()  # counted as validation time (timings.json "validate")
    _check_defines(plan.define_findings(written), result, log)
    timings["validate"] = round(timings["validate"] + time.perf_counter() - start, 3)
    write_report(result, report, generated=study.creation_datetime)  # type: ignore[arg-type]
    if result.has_errors:  # type: ignore[attr-defined]
        raise refuse(written=True)
    log.timings.update(timings)
    log.write(staging)
    outputs.write_manifest(staging, inputs=inputs, known=plan.digests(written))
    outputs.swap_in(staging, out_dir, state.manifest)
    published[0] = True
    outputs.remove_owned(out_dir / outputs.FAILED, state.failed)  # superseded by this build
    return BuildResult(
        out_dir,
        datasets,
        log,
        result,
        files,
        timings,
        state.foreign,
        notes,  # type: ignore[arg-type]
    )


def _p21_workbook(study: StudySpec) -> Any:
    """The study's P21 specification workbook (study.yaml `p21_spec`), read; None if none."""
    if not study.config.p21_spec:
        return None
    from cdiscforge.p21 import read_p21_spec

    return read_p21_spec(study.folder / study.config.p21_spec)


def _apply_p21(
    study: StudySpec, workbook: Any, datasets: dict[str, Dataset], log: BuildLog
) -> None:
    """Settle the workbook's metadata with the YAML's on the built datasets (cdiscforge.p21
    documents the precedence); each difference and each note is one line of the log."""
    from cdiscforge.p21 import apply_p21, describe

    precedence = study.config.p21_precedence
    for note in workbook.notes:
        log.info("p21", "", note)
    found, fixed = apply_p21(workbook, datasets.values(), precedence)
    for d, line in zip(found, describe(found, precedence), strict=True):
        log.warn("p21", d.dataset, line)
    if fixed:
        log.info("p21", "", f"lengths the YAML leaves to the data, fixed by the workbook: "
                 f"{', '.join(fixed)}")  # fmt: skip
    log.info("p21", "", f"{study.config.p21_spec}: {len(workbook.datasets)} datasets read, "
             f"{len(found)} difference(s) with the YAML")  # fmt: skip


def _compact_all(datasets: dict[str, Dataset]) -> None:
    """Hold the built datasets compact (categoricals for repeated text, cdiscforge.compact)
    while they are validated and written: nothing changes them any more, the checks and the
    writers work per distinct value of a categorical, and a forked child shares them. A
    large dataset is built so already (engine.build_dataset): this compacts what is left
    (columns the build leaves as text: a variable with a SUPP-- item, one over 200 bytes)."""
    for ds in datasets.values():
        compact(ds)


# Folders write_outputs fills in the staging folder (a failed build publishes none of them).
_WRITTEN_FOLDERS = ("sdtm", "adam", "datasetjson", "tables")


def _check_defines(
    found: list[tuple[str, list[Any], list[Any]]], result: Any, log: BuildLog
) -> None:
    """Add the define.xml rules' findings on each stage's written define.xml against that
    stage's datasets (validation/rules_define.py, waivers applied; run as jobs of the writing,
    `_Outputs`) to `result`, so error-level ones stop publishing like any validation error,
    as `add_define_checks` adds them; every unwaived finding is also a line of the build log.
    """
    for stage, findings, checks in found:
        result.findings.extend(findings)  # add_define_checks' merge: the sort is stable, so
        result.checked.extend(checks)  # the order is the one it gives
        result.sort()
        open_ = [f for f in findings if not f.waiver]
        for f in open_:
            log.warn("validate", f.dataset, f"define.xml {f.rule_id} ({f.severity}): {f.message}")
        log.info(
            "validate",
            stage.upper(),
            f"define.xml rules: {len(findings)} finding(s), {len(findings) - len(open_)} waived",
        )


def _input_hashes(
    spec_dir: Path, raw_dir: Path, staging: Path, out_dir: Path, log: BuildLog
) -> dict[str, Any]:
    """sha256 of every spec file and every raw file the build read (relative names only).

    Hidden files and anything inside the output folder or staging (should they sit in the
    spec folder) are left out, so the hashes describe the specs alone.
    """
    spec_root = spec_dir.resolve()
    skip = (out_dir, staging.resolve())
    spec_files = [
        p
        for p in sorted(spec_root.rglob("*"))
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(spec_root).parts)
        and not any(p.is_relative_to(s) for s in skip)
    ]
    raw_root = raw_dir.resolve()
    read = [Path(meta["file"]).resolve() for meta in log.inputs.values()]
    return {
        "spec": outputs.tree_hashes(spec_root, spec_files),
        "raw": outputs.tree_hashes(raw_root, read),
        "raw_simulated": raw_root.is_relative_to(staging.resolve()),
    }


def write_outputs(
    study: StudySpec,
    sdtm_sets: dict[str, Dataset],
    adam_sets: dict[str, Dataset],
    root: Path,
    log: BuildLog,
    *,
    datasetjson: tuple[str, ...] = ("json",),
) -> list[Path]:
    """XPT, define.xml, Dataset-JSON (in each encoding of `datasetjson`) and tables for both
    stages, cross-checked (the jobs `_Outputs` lists, on both cores when there are two)."""
    plan = _Outputs(study, sdtm_sets, adam_sets, root, datasetjson)
    return plan.finish(share_jobs(plan.jobs), log)


# Writing jobs of at least this share of the largest one's cost (the XPT and the Dataset-JSON
# file of the largest dataset: MK, 2 GB of working memory each at 10,000 subjects) run one
# after the other, so that their memory never adds up; the smaller first, while the child
# validates, so that the process that wrote it goes on with the next and nobody waits.
_HEAVY = 0.5
# What one unit of each job costs (seconds per 10,000 subjects' share of records x variables,
# from the 10k profile: Dataset-JSON 31 s, XPT 19 s, define.xml 7.4 s, spec.xlsx 5.4 s, the
# cross-check 6 s reading XPT and 8 s Dataset-JSON, the define.xml rules 3.5 s, the
# manifest's sha256 of the XPT and Dataset-JSON files 1.4 s each): only the order of the
# jobs depends on it.
_COST = {
    **{"json": 1.6, "xpt": 1.0, "define": 0.39, "spec": 0.28},
    **{"check": 0.32, "check_json": 0.42, "rules": 0.18, "hash": 0.07},
}


class _Outputs:
    """The files of a build as jobs for `cdiscforge.concurrent.share_jobs`, and what is made
    of their results (`finish`): each XPT, each Dataset-JSON file (per encoding), each stage's
    define.xml and spec.xlsx, the efficacy tables, then each dataset's cross-check with
    define.xml (and, with `hashes`, the manifest's sha256 of each XPT and Dataset-JSON file,
    `digests`: ~6 GB at 10,000 subjects, hashed as jobs on whichever core is free rather
    than after them). The writing jobs come first, the largest first, then the cross-checks
    and hashes, the largest first: whichever core is free takes the next, and a cross-check
    or hash waits for the files it reads. The jobs log nothing (either process may run
    them); `finish` logs, in the order one process writing the files one by one always
    logged."""

    def __init__(
        self,
        study: StudySpec,
        sdtm_sets: dict[str, Dataset],
        adam_sets: dict[str, Dataset],
        root: Path,
        datasetjson: tuple[str, ...],
        *,
        waivers: Any = None,
        hashes: bool = False,
    ) -> None:
        self.study, self.root, self.encodings = study, root, datasetjson
        self.waivers = waivers  # None: no define.xml rules (write_outputs alone)
        self.all_sets = {**sdtm_sets, **adam_sets}
        self.created = datetime.fromisoformat(study.creation_datetime)
        self.info = study.info()  # CT releases: the study's ct_version (ct.Terminology)
        self.stages = [
            (stage, sorted(sets.values(), key=lambda d: d.name), standard)
            for stage, sets, standard in _stages(sdtm_sets, adam_sets)
        ]
        self._fitted: dict[str, list[Dataset]] = {}  # per process: see _with_lengths
        self._checks: dict[str, Any] = {}  # per process: each stage's define.xml, read once
        writes: dict[tuple[str, ...], float] = {}  # job key -> cost
        checks: dict[tuple[str, ...], float] = {}
        for stage, ordered, _ in self.stages:
            cells = {ds.name: len(ds) * max(1, len(ds.variables)) for ds in ordered}
            for name, n in cells.items():
                writes["xpt", stage, name] = _COST["xpt"] * n
                for encoding in datasetjson:
                    writes["json", stage, name, encoding] = _COST["json"] * n
                each = _COST["check"] + _COST["check_json"] * len(datasetjson)
                checks["check", stage, name] = each * n
                for what in ("xpt", *datasetjson) if hashes else ():
                    checks["hash", stage, name, what] = _COST["hash"] * n
            for kind in ("define", "spec"):
                writes[kind, stage] = _COST[kind] * sum(cells.values())
            if waivers is not None:
                checks["rules", stage] = _COST["rules"] * sum(cells.values())
            checks["rest", stage] = 0.0
        largest = max(writes.values(), default=0.0)
        heavy = sorted((k for k in writes if writes[k] >= _HEAVY * largest), key=writes.get)

        def reads(key: tuple[str, ...]) -> list[tuple[str, ...]]:
            """The jobs whose files job `key` reads."""
            kind, stage = key[0], key[1] if len(key) > 1 else ""
            if key in heavy[1:]:
                return [heavy[heavy.index(key) - 1]]
            if kind == "check":  # the dataset's files and the stage's define.xml
                found = [("xpt", stage, key[2]), ("define", stage)]
                return found + [("json", stage, key[2], encoding) for encoding in datasetjson]
            if kind == "rules":
                return [("define", stage)]
            if kind == "hash":  # the file hashed: its XPT or Dataset-JSON
                what = key[3]
                return [("xpt", stage, key[2]) if what == "xpt" else ("json", stage, key[2], what)]
            if kind == "rest":  # every file of the stage (it lists the folders)
                return [k for k in writes if k[0] in ("xpt", "json", "define") and k[1] == stage]
            return []

        order = [  # sorted() is stable: equal costs keep the order above
            # the tables first: their time hardly grows with the study (imports, a plot)
            *([("tables",)] if adam_sets else []),
            *heavy,  # one after the other, the smaller first (see _HEAVY)
            *sorted((k for k in writes if k not in heavy), key=lambda k: -writes[k]),
        ]
        # The cross-check of a heavy dataset comes right after the last job it reads, not
        # after every write: MK's is the longest job of all at 10,000 subjects (4.3 s,
        # reading its XPT and Dataset-JSON back), and last in the queue it ended the stage
        # on one core while the other was idle. (Its hashes stay behind: taken before the
        # Dataset-JSON file is written, they would hold that file back.)
        heavy_sets = {k[1:3] for k in heavy if k[0] in ("xpt", "json")}
        by_cost = sorted(checks, key=lambda k: -checks[k])
        early = [k for k in by_cost if k[0] == "check" and k[1:3] in heavy_sets]
        late = [k for k in by_cost if k not in early]
        at = {key: max(order.index(k) for k in reads(key)) for key in early}
        self.keys = [
            *(
                item
                for n, key in enumerate(order)
                for item in (key, *(e for e in early if at[e] == n))
            ),
            *late,
        ]
        self.heavy = heavy
        number = {key: n for n, key in enumerate(self.keys)}
        self.jobs: list[Job] = []
        for key in self.keys:
            after = tuple(sorted(number[k] for k in reads(key)))
            self.jobs.append(Job(partial(self.run, key), after))

    def run(self, key: tuple[str, ...]) -> Any:
        """Do the job `key` (in either process); what `finish` needs of it."""
        from cdiscforge.datasetjson import write_dataset_json
        from cdiscforge.define import write_define
        from cdiscforge.p21 import write_p21_spec
        from cdiscforge.xpt import write_xpt

        kind, stage = key[0], key[1] if len(key) > 1 else ""
        if kind == "xpt":
            ds = self._dataset(key[2])
            path = self._file(stage, ds.name, "xpt")
            path.parent.mkdir(parents=True, exist_ok=True)
            return write_xpt(ds, path, created=self.created)
        if kind == "json":
            ds = self._dataset(key[2])
            path = self._file(stage, ds.name, key[3])
            path.parent.mkdir(parents=True, exist_ok=True)
            return write_dataset_json(
                ds,
                path,
                study=self.info,
                created=self.study.creation_datetime,
                define_path=f"../../{stage}/define.xml",
            )
        if kind in ("define", "spec"):
            (self.root / stage).mkdir(parents=True, exist_ok=True)
            standard = next(std for s, _, std in self.stages if s == stage)
            if kind == "define":
                return write_define(
                    self._with_lengths(stage),
                    self.root / stage / "define.xml",
                    study=self.info,
                    standard=standard,  # type: ignore[arg-type]
                    created=self.study.creation_datetime,
                )
            # The same metadata as a Pinnacle 21 specification workbook, for reviewers' QC.
            return write_p21_spec(
                self._with_lengths(stage),
                self.root / stage / "spec.xlsx",
                study=self.info,
                standard=standard,  # type: ignore[arg-type]
            )
        if kind == "tables":
            from cdiscforge.adam.tables import write_efficacy_tables

            # the study's tables spec decides (no efficacy block: no table); SDTM too, for the
            # footnotes that count imputations there (not-evaluable joints in MK)
            tables_log = BuildLog()  # its lines go into the build log in `finish`
            files = write_efficacy_tables(
                self.all_sets, self.study, self.root / "tables", tables_log
            )
            return files, tables_log.events
        if kind == "hash":  # the manifest's (size, sha256), relative to the root
            path = self._file(stage, key[2], key[3])
            digest = outputs.sha256_file(path)
            return path.relative_to(self.root).as_posix(), path.stat().st_size, digest
        if kind == "rules":
            from cdiscforge.validation.findings import ValidationResult
            from cdiscforge.validation.rules_define import add_define_checks

            part = ValidationResult()
            define = self.root / stage / "define.xml"
            found = add_define_checks(part, define, self._with_lengths(stage), self.waivers)
            return found, part.checked
        check = self._check(stage)
        if kind == "check":  # the ItemGroupDefs describing this dataset's XPT, by position
            href = f"{key[2].lower()}.xpt"
            return {
                i: check.group(group)
                for i, group in enumerate(check.groups)
                if group.href.lower() == href
            }
        names = {f"{ds.name.lower()}.xpt" for ds in self._ordered(stage)}
        others = {  # ItemGroupDefs no dataset's cross-check took (a define.xml gone wrong)
            i: check.group(group)
            for i, group in enumerate(check.groups)
            if group.href.lower() not in names
        }
        return check.undescribed_xpts(), others, len(check.groups), check.undescribed_jsons()

    def _dataset(self, name: str) -> Dataset:
        return self.all_sets[name]

    def _file(self, stage: str, name: str, what: str) -> Path:
        """Where dataset `name`'s XPT (`what` "xpt") or Dataset-JSON (an encoding) goes."""
        from cdiscforge.datasetjson import SUFFIXES

        if what == "xpt":
            return self.root / stage / f"{name.lower()}.xpt"
        return self.root / "datasetjson" / stage / f"{name.lower()}{SUFFIXES[what]}"

    def _ordered(self, stage: str) -> list[Dataset]:
        return next(ordered for s, ordered, _ in self.stages if s == stage)

    def _with_lengths(self, stage: str) -> list[Dataset]:
        """The stage's datasets with every length set, as the XPT writer fits and records
        them (`Dataset.fit_lengths`), for define.xml and spec.xlsx, which say what the XPT
        files hold. The XPT files may be written by the other process, whose fitted lengths
        stay there: the lengths are fitted here on copies of the variables, leaving the
        datasets as they were for the XPT writer (which checks lengths a spec fixed)."""
        if stage not in self._fitted:
            fitted = []
            for ds in self._ordered(stage):
                copy = replace(ds, variables=[replace(v) for v in ds.variables])
                copy.fit_lengths()
                fitted.append(copy)
            self._fitted[stage] = fitted
        return self._fitted[stage]

    def _check(self, stage: str) -> Any:
        """The stage's define.xml, read once per process, to cross-check its files with."""
        from cdiscforge.define.crosscheck import CrossCheck

        if stage not in self._checks:
            self._checks[stage] = CrossCheck(
                self.root / stage / "define.xml",
                self.root / stage,
                self.root / "datasetjson" / stage,
                encodings=self.encodings,
            )
        return self._checks[stage]

    def finish(self, shared: Shared[Any], log: BuildLog) -> list[Path]:
        """The written files (by stage: XPT, define.xml, spec.xlsx, Dataset-JSON; then the
        tables), once the jobs are done; their log lines. Raises the writing's error, or a
        stage's cross-check problems (the first five)."""
        from cdiscforge.define.crosscheck import missing_documents
        from cdiscforge.errors import CdiscforgeError

        if shared.error is not None:
            raise shared.error
        done = dict(zip(self.keys, (shared.results[n] for n in range(len(self.keys))), strict=True))
        for ds in self.all_sets.values():  # as if this process wrote every XPT (the define
            ds.fit_lengths()  # rules read them); the lengths it wrote are already set
        files: list[Path] = []
        for stage, ordered, _ in self.stages:
            for ds in ordered:
                path = done["xpt", stage, ds.name]
                files.append(path)
                log.outputs[f"{stage}/{path.name}"] = {
                    "records": len(ds),
                    "variables": len(ds.variables),
                }
            files += [done["define", stage], done["spec", stage]]
            files += [done["json", stage, ds.name, e] for ds in ordered for e in self.encodings]
        for stage, ordered, _ in self.stages:
            head, by_group, n_groups, tail = done["rest", stage]
            for ds in ordered:
                by_group.update(done["check", stage, ds.name])
            problems = head + [p for i in range(n_groups) for p in by_group[i]] + tail
            if problems:
                raise CdiscforgeError(
                    f"{stage} define.xml cross-check failed: " + "; ".join(problems[:5])
                )
            log.info(
                "write",
                stage.upper(),
                f"define.xml valid and cross-checked against {len(ordered)} XPT and "
                "Dataset-JSON files",
            )
            define = self.root / stage / "define.xml"
            for missing in missing_documents(define):
                log.warn("write", stage.upper(), f"{missing}: the sponsor supplies this document")
        if ("tables",) in done:
            tables, events = done["tables",]
            files += tables
            log.events += events
        return files

    def digests(self, shared: Shared[Any]) -> dict[str, tuple[int, str]]:
        """(size, sha256) of the files the hash jobs hashed, by path relative to the root, for
        `outputs.write_manifest` (jobs done, `finish` passed; nothing writes them again)."""
        found = (shared.results[n] for n, key in enumerate(self.keys) if key[0] == "hash")
        return {rel: (size, digest) for rel, size, digest in found}

    def define_findings(self, shared: Shared[Any]) -> list[tuple[str, list[Any], list[Any]]]:
        """The define.xml rules' findings and checks by stage (jobs done, `finish` passed)."""
        numbers = {key: n for n, key in enumerate(self.keys)}
        return [
            (stage, *shared.results[numbers["rules", stage]])
            for stage, _, _ in self.stages
            if ("rules", stage) in numbers
        ]


class _Ahead:
    """SDTM's writing jobs (`_Outputs`: XPT, Dataset-JSON, define.xml, spec.xlsx, their
    cross-checks and hashes) run in a forked child while this process builds ADaM, which
    is one core's work (each ADaM dataset reads the one before it; the first reads MK, the
    last SDTM dataset done): at 10,000 subjects ~5 s with the other core idle otherwise.
    Once ADaM is built (`stop`), the child ends with the job it is doing; `results` gives
    what it did, by job number, to `share_jobs(done=...)`, which does the rest.

    Nothing of the build depends on it: the jobs log nothing, the files go into the staging
    folder as the jobs of `share_jobs` write them (removed when validation fails), and a
    job that fails in the child is left to be run again there, so that its error comes
    where it always came. Off with one process, for a stage under `BESIDE_MIN_ROWS`
    records (the fork would cost more than it saves), and with a P21 workbook, which may
    change SDTM's metadata after ADaM (`_apply_p21`). An exception or Ctrl-C while it runs
    kills and reaps the child (cdiscforge.concurrent.Child)."""

    def __init__(
        self,
        study: StudySpec,
        sdtm_sets: dict[str, Dataset],
        staging: Path,
        datasetjson: tuple[str, ...],
        allowed: bool,
    ) -> None:
        from cdiscforge import engine

        records = sum(len(ds) for ds in sdtm_sets.values())
        self.running = allowed and workers() > 1 and records >= engine.BESIDE_MIN_ROWS
        self.sets = sdtm_sets
        self._child: Child[dict[tuple[str, ...], Any]] | None = None
        self._stop = (-1, -1)
        self.keys: list[tuple[str, ...]] = []
        if not self.running:
            return
        # The same jobs as the build's plan has for SDTM, in its order, but those needing the
        # waivers (read after ADaM: their errors come after ADaM's) or every file of the
        # stage, and the long ones after the first: the heavy writing after the first and a
        # heavy dataset's cross-check (10,000 subjects: MK's Dataset-JSON 4.8 s, its
        # cross-check 4.8 s), with what reads their files. The child ends with the job it
        # is doing when ADaM is built, and one of those started just before kept this
        # process waiting (measured: 2.15 s, one core idle); the build's plan runs them on
        # both cores. The cross-checks and hashes come after every file (the plan may queue
        # a heavy dataset's cross-check among the writes).
        self.plan = plan = _Outputs(study, sdtm_sets, {}, staging, datasetjson, hashes=True)
        heavy_sets = {k[1:3] for k in plan.heavy}
        kept: set[tuple[str, ...]] = set()
        for key, job in zip(plan.keys, plan.jobs, strict=True):
            long = key in plan.heavy[1:] or (key[0] == "check" and key[1:3] in heavy_sets)
            reads = {plan.keys[n] for n in job.after}
            if key[0] not in ("rules", "rest") and not long and reads <= kept:
                kept.add(key)
        keys = [k for k in plan.keys if k in kept]
        writes = [k for k in keys if k[0] not in ("check", "hash")]
        self.keys = [*writes, *(k for k in keys if k[0] in ("check", "hash"))]

    def __enter__(self) -> _Ahead:
        if self.running:
            self._stop = os.pipe()
            try:
                self._child = Child(self._in_child)
            except BaseException:
                self.__exit__()
                raise
        return self

    def _in_child(self) -> dict[tuple[str, ...], Any]:
        """The jobs in their order until told to stop (or one fails: see the docstring)."""
        import select

        os.close(self._stop[1])
        _compact_all(self.sets)  # as the build's plan has them (in this process only)
        done: dict[tuple[str, ...], Any] = {}
        for key in self.keys:
            if select.select([self._stop[0]], [], [], 0)[0]:  # a byte, or the parent gone
                break
            try:
                done[key] = self.plan.run(key)
            except Exception:
                break
            give_back_memory()  # the job's working memory, while the parent's ADaM grows
        return done

    def stop(self) -> None:
        """Tell the child to start no other job."""
        if self._stop[1] >= 0:
            os.write(self._stop[1], b"x")

    def results(self, keys: list[tuple[str, ...]]) -> dict[int, Any]:
        """Wait for the child; what it did, by number in `keys` (the build's plan)."""
        if self._child is None:
            return {}
        self.stop()
        got = self._child.result()
        self._child = None
        number = {key: n for n, key in enumerate(keys)}
        return {number[key]: value for key, value in got.items()}

    def __exit__(self, *_exc: object) -> None:
        if self._child is not None:
            self._child.kill()
            self._child = None
        for fd in self._stop:
            if fd >= 0:
                os.close(fd)
        self._stop = (-1, -1)


def _stages(
    sdtm_sets: dict[str, Dataset], adam_sets: dict[str, Dataset]
) -> list[tuple[str, dict[str, Dataset], str]]:
    """The stages that have datasets: (folder name, datasets, standard)."""
    both = (("sdtm", sdtm_sets, "SDTM"), ("adam", adam_sets, "ADaM"))
    return [(stage, sets, standard) for stage, sets, standard in both if sets]
