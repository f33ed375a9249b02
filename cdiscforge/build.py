"""One build: raw exports -> SDTM -> ADaM -> validation -> files, published atomically.

Everything is written into a staging folder beside the output folder. Only when every
stage succeeded and validation found no error-level finding is the staging folder renamed
into place (the previous output is removed only then), so a reader of `<out>` never sees a
half-written or unvalidated submission. When validation fails, `<out>` receives the
validation report and the build log, and no datasets: nothing that could be mistaken for
final. Any other failure leaves `<out>` as it was.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cdiscforge import ct
from cdiscforge.buildlog import BuildLog
from cdiscforge.engine import RawStore, build_stage
from cdiscforge.errors import ValidationFailed
from cdiscforge.model import Dataset
from cdiscforge.spec import StudySpec, load_study

Progress = Callable[[str], None]


@dataclass
class BuildResult:
    out_dir: Path
    datasets: dict[str, Dataset]
    log: BuildLog
    validation: object | None = None
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def run_build(
    spec_dir: Path,
    out_dir: Path,
    raw_dir: Path | None = None,
    *,
    progress: Progress | None = None,
) -> BuildResult:
    """Build a study into `out_dir` (see the module docstring for what is published when)."""
    say = progress or (lambda _msg: None)
    timings: dict[str, float] = {}
    out_dir = out_dir.resolve()
    staging = out_dir.parent / f".{out_dir.name}.staging-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        return _build(spec_dir, out_dir, staging, raw_dir, say, timings)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _timed(timings: dict[str, float], name: str, fn: Callable[[], object]) -> object:
    start = time.perf_counter()
    result = fn()
    timings[name] = round(time.perf_counter() - start, 3)
    return result


def _build(
    spec_dir: Path,
    out_dir: Path,
    staging: Path,
    raw_dir: Path | None,
    say: Progress,
    timings: dict[str, float],
) -> BuildResult:
    say("specs")
    study = load_study(spec_dir)
    log = BuildLog()
    if raw_dir is None:
        say("simulate")
        from cdiscforge.simulate import simulate

        raw_dir = staging / "raw"
        sim = _timed(timings, "simulate", lambda: simulate(spec_dir, raw_dir))
        log.info("simulate", "", f"simulated raw exports: {dict(sim.rows)}")  # type: ignore[attr-defined]
    store = RawStore(study, raw_dir, log)

    sdtm_sets = _timed(
        timings,
        "sdtm",
        lambda: build_stage(study, "sdtm", store, log, progress=lambda n: say(f"sdtm {n}")),
    )
    adam_sets = _timed(
        timings,
        "adam",
        lambda: build_stage(
            study, "adam", None, log, upstream=sdtm_sets, progress=lambda n: say(f"adam {n}")
        ),
    )
    datasets: dict[str, Dataset] = {**sdtm_sets, **adam_sets}  # type: ignore[dict-item]

    say("validate")
    from validation import validate_datasets, write_report
    from validation.waivers import study_waivers

    waivers = study_waivers(study.folder)  # specs/<study>/waivers.yaml: explained findings
    result = _timed(
        timings, "validate", lambda: validate_datasets(list(datasets.values()), waivers=waivers)
    )
    write_report(result, staging / "validation", generated=study.creation_datetime)  # type: ignore[arg-type]
    if result.has_errors:  # type: ignore[attr-defined]
        log.timings.update(timings)
        log.write(staging)
        _publish_report_only(staging, out_dir)
        errors = [f for f in result.findings if f.severity == "error"]  # type: ignore[attr-defined]
        first = errors[0]
        raise ValidationFailed(
            f"validation found {len(errors)} error-level finding(s); nothing was published. "
            f"First: {first.rule_id} {first.dataset} {','.join(first.variables)}: "
            f"{first.message}. "
            f"Report: {out_dir / 'validation' / 'report.html'}"
        )

    say("write")
    files = _timed(
        timings, "write", lambda: write_outputs(study, sdtm_sets, adam_sets, staging, log)
    )
    log.timings.update(timings)
    log.write(staging)
    _publish(staging, out_dir)
    return BuildResult(out_dir, datasets, log, result, files, timings)  # type: ignore[arg-type]


def write_outputs(
    study: StudySpec,
    sdtm_sets: dict[str, Dataset],
    adam_sets: dict[str, Dataset],
    root: Path,
    log: BuildLog,
) -> list[Path]:
    """XPT, define.xml, Dataset-JSON and tables for both stages, cross-checked."""
    from cdiscforge.datasetjson import write_dataset_json
    from cdiscforge.define import crosscheck, write_define
    from cdiscforge.errors import CdiscforgeError
    from cdiscforge.xpt import write_xpt

    created = datetime.fromisoformat(study.creation_datetime)
    info = study.info(sdtm_ct=ct.sdtm_ct_version(), adam_ct=ct.sdtm_ct_version())
    files: list[Path] = []
    for stage, sets, standard in (("sdtm", sdtm_sets, "SDTM"), ("adam", adam_sets, "ADaM")):
        if not sets:
            continue
        folder = root / stage
        folder.mkdir(parents=True, exist_ok=True)
        json_dir = root / "datasetjson" / stage
        json_dir.mkdir(parents=True, exist_ok=True)
        ordered = sorted(sets.values(), key=lambda d: d.name)
        for ds in ordered:
            path = write_xpt(ds, folder / f"{ds.name.lower()}.xpt", created=created)
            files.append(path)
            log.outputs[f"{stage}/{path.name}"] = {
                "records": len(ds),
                "variables": len(ds.variables),
            }
        define = write_define(
            ordered,
            folder / "define.xml",
            study=info,
            standard=standard,  # type: ignore[arg-type]
            created=study.creation_datetime,
        )
        files.append(define)
        for ds in ordered:
            path = write_dataset_json(
                ds,
                json_dir / f"{ds.name.lower()}.json",
                study=info,
                created=study.creation_datetime,
                define_path=f"../../{stage}/define.xml",
            )
            files.append(path)
        problems = crosscheck(define, folder, json_dir)
        if problems:
            raise CdiscforgeError(
                f"{stage} define.xml cross-check failed: " + "; ".join(problems[:5])
            )
        log.info(
            "write",
            stage.upper(),
            f"define.xml valid and cross-checked against {len(ordered)} XPT and Dataset-JSON files",
        )
    if adam_sets:
        from adam.tables import write_efficacy_tables

        files += write_efficacy_tables(adam_sets, study, root / "tables")
    return files


def _publish(staging: Path, out_dir: Path) -> None:
    """Swap the staging folder into place: the old output is removed only after success."""
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    if out_dir.exists():
        out_dir.rename(old)
    staging.rename(out_dir)
    if old.exists():
        shutil.rmtree(old)


def _publish_report_only(staging: Path, out_dir: Path) -> None:
    """A failed validation: publish the report and log, never the datasets."""
    for stage in ("sdtm", "adam", "datasetjson", "tables"):
        shutil.rmtree(staging / stage, ignore_errors=True)
    _publish(staging, out_dir)
