"""Entry points of the validation stage: validate Datasets in memory or XPT files on disk.

`validate_datasets` is what `cdiscforge build` calls before it publishes anything;
`validate_directory` is `cdiscforge validate DIR` on XPT files anyone wrote.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from cdiscforge.errors import InputError
from cdiscforge.model import Dataset
from validation.findings import Check, ValidationOptions, ValidationResult
from validation.gx_runner import run_suites
from validation.rules import Study, run_rules
from validation.rules_define import define_findings
from validation.suites import build_suite
from validation.waivers import Waiver, apply_waivers

ADAM_STANDARD = "ADaMIG 1.3"


def validate_datasets(
    datasets: Sequence[Dataset],
    *,
    checks: ValidationOptions | None = None,
    waivers: Sequence[Waiver] = (),
) -> ValidationResult:
    """Validate the datasets of one study: generated GX suites, then cross-dataset rules.

    Nothing is raised for bad data: every problem becomes a finding; the caller decides what an
    error-level finding means (the build stops and publishes nothing).
    """
    options = checks or ValidationOptions()
    names = [d.name for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"datasets given twice: {dupes}")
    result = ValidationResult(datasets={d.name: len(d) for d in datasets})

    start = time.perf_counter()
    plans = [build_suite(d, options) for d in sorted(datasets, key=lambda d: d.name)]
    result.timings["generate_suites"] = time.perf_counter() - start

    start = time.perf_counter()
    gx_findings, gx_checks = run_suites(plans, max_examples=options.max_examples)
    result.timings["great_expectations"] = time.perf_counter() - start

    start = time.perf_counter()
    frames = {p.dataset: p.frame for p in plans}
    study = Study({d.name: d for d in datasets}, frames, options.max_examples)
    rule_findings, rule_checks = run_rules(study)
    result.timings["cross_dataset_rules"] = time.perf_counter() - start

    for check in gx_checks + rule_checks:
        if check.rule_id in options.skip_rules and check.status != "not applicable":
            check = replace(check, status="not applicable", reason="skipped by the options")
        result.checked.append(check)
    result.findings = [
        f for f in gx_findings + rule_findings if f.rule_id not in options.skip_rules
    ]
    result.sort()
    apply_waivers(result, waivers)  # waivers hook (validation/waivers.py)
    result.timings["total"] = sum(result.timings.values())
    return result


def read_directory(path: Path) -> list[Dataset]:
    """Every *.xpt in `path` as a Dataset; ADaM is told by the AD prefix of the dataset name."""
    from cdiscforge.xpt import read_xpt

    path = Path(path)
    files = sorted(path.glob("*.xpt")) + sorted(path.glob("*.XPT"))
    if not files:
        raise InputError(path, "no *.xpt files to validate in this folder")
    out = []
    for file in dict.fromkeys(files):
        ds = read_xpt(file)
        if ds.name.upper().startswith("AD"):
            ds.standard = ADAM_STANDARD
        out.append(ds)
    return out


def validate_directory(
    path: Path, *, checks: ValidationOptions | None = None, waivers: Sequence[Waiver] = ()
) -> ValidationResult:
    """Re-validate written XPT files (ours or anyone's, e.g. the CDISC pilot).

    A define.xml in the folder is checked against the data too (validation/rules_define.py).
    """
    start = time.perf_counter()
    datasets = read_directory(path)
    read_time = time.perf_counter() - start
    result = validate_datasets(datasets, checks=checks)
    define_findings(result, Path(path) / "define.xml", datasets)  # define.xml hook
    apply_waivers(result, waivers)  # waivers hook (after define rules, so they can be waived)
    result.timings["read_xpt"] = read_time
    result.timings["total"] += read_time
    return result


__all__ = [
    "Check",
    "ValidationOptions",
    "ValidationResult",
    "read_directory",
    "validate_datasets",
    "validate_directory",
]
