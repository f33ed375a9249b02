"""Entry points of the validation stage: validate Datasets in memory or files on disk.

`validate_datasets` is what `cdiscforge build` calls before it publishes anything;
`validate_directory` is `cdiscforge validate PATH` on files anyone wrote: a folder of XPT, a
build output root (sdtm/ and adam/ together) or a folder of Dataset-JSON files.

Two engines run the generated suites: `native` (the default: vectorised pandas, the same
results GX gives) and `great_expectations` (`gx`), which runs the very same suites through GX.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from cdiscforge.errors import CdiscforgeError, InputError
from cdiscforge.model import Dataset
from cdiscforge.validation.findings import Check, Engine, ValidationOptions, ValidationResult
from cdiscforge.validation.operations import shared_codes
from cdiscforge.validation.rules import Study, run_rules
from cdiscforge.validation.rules_define import define_findings
from cdiscforge.validation.suites import build_suite, suite_json
from cdiscforge.validation.waivers import Waiver, apply_waivers

ADAM_STANDARD = "ADaMIG 1.3"
ENGINE_ALIASES: dict[str, Engine] = {
    "native": "native",
    "gx": "great_expectations",
    "great_expectations": "great_expectations",
}
# Standards whose metadata ships with cdiscforge (cdiscforge/data/standards, data/ct).
BUNDLED_SDTMIG = ("3.4",)
BUNDLED_ADAMIG = ("1.3",)


def _engine(name: str) -> Engine:
    try:
        return ENGINE_ALIASES[name]
    except KeyError:
        raise CdiscforgeError(f"unknown validation engine {name!r}: choose native or gx") from None


def validate_datasets(
    datasets: Sequence[Dataset],
    *,
    checks: ValidationOptions | None = None,
    waivers: Sequence[Waiver] = (),
    engine: str = "native",
) -> ValidationResult:
    """Validate the datasets of one study: generated suites, then cross-dataset rules.

    Nothing is raised for bad data: every problem becomes a finding; the caller decides what an
    error-level finding means (the build stops and publishes nothing).
    """
    options = checks or ValidationOptions()
    which = _engine(engine)
    names = [d.name for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"datasets given twice: {dupes}")
    result = ValidationResult(datasets={d.name: len(d) for d in datasets})

    with shared_codes():  # each column factorized once for the suites and the rules
        start = time.perf_counter()
        plans = [build_suite(d, options) for d in sorted(datasets, key=lambda d: d.name)]
        result.suites = {p.dataset: suite_json(p) for p in plans}
        result.timings["generate_suites"] = time.perf_counter() - start

        start = time.perf_counter()
        if which == "native":
            from cdiscforge.validation.native import run_suites
        else:
            from cdiscforge.validation.gx_runner import run_suites
        suite_findings, suite_checks = run_suites(plans, max_examples=options.max_examples)
        result.timings[which] = time.perf_counter() - start

        start = time.perf_counter()
        frames = {p.dataset: p.frame for p in plans}
        study = Study({d.name: d for d in datasets}, frames, options.max_examples)
        rule_findings, rule_checks = run_rules(study)
        result.timings["cross_dataset_rules"] = time.perf_counter() - start

    for check in suite_checks + rule_checks:
        if check.rule_id in options.skip_rules and check.status != "not applicable":
            check = replace(check, status="not applicable", reason="skipped by the options")
        result.checked.append(check)
    result.findings = [
        f for f in suite_findings + rule_findings if f.rule_id not in options.skip_rules
    ]
    result.sort()
    result.run = _run_info(datasets, options, which, result.checked, plans)
    apply_waivers(result, waivers)  # waivers hook (validation/waivers.py)
    result.timings["total"] = sum(result.timings.values())
    return result


def _run_info(datasets, options, engine, checked: list[Check], plans) -> dict:
    """The report header: tool, standards, CT, engine and rules (no wall-clock time here)."""
    from cdiscforge import __version__, ct

    adam = any(d.standard.upper().startswith("ADAM") for d in datasets)
    sdtm = any(not d.standard.upper().startswith("ADAM") for d in datasets)
    standards = ([f"SDTMIG {options.ig}"] if sdtm else []) + (
        [f"ADaMIG {options.adamig}"] if adam else []
    )
    ran = sorted({c.rule_id for c in checked if c.status != "not applicable"})
    return {
        "tool": "cdiscforge",
        "tool_version": __version__,
        "standards": standards,
        "ct": f"CDISC/NCI {options.ct_version or ct.sdtm_ct_version()}",
        "engine": engine,
        "expectations": sum(len(p.expectations) for p in plans),
        "rules_run": ran,
        "notes": [],
    }


# --------------------------------------------------------------------------------------------
# Reading what `cdiscforge validate PATH` is given
# --------------------------------------------------------------------------------------------


@dataclass
class Input:
    """What was found at a path: the datasets, their format and any define.xml beside them."""

    datasets: list[Dataset]
    kind: str  # "xpt", "build", "dataset-json"
    defines: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def _xpt_files(folder: Path) -> list[Path]:
    return list(dict.fromkeys(sorted(folder.glob("*.xpt")) + sorted(folder.glob("*.XPT"))))


def _read_xpts(files: list[Path]) -> list[Dataset]:
    from cdiscforge.xpt import read_xpt_fast

    out = []
    for file in files:
        ds = read_xpt_fast(file)
        if ds.name.upper().startswith("AD"):
            ds.standard = ADAM_STANDARD
        out.append(ds)
    return out


def _is_dataset_json(path: Path) -> bool:
    """A Dataset-JSON file names its version in the first members (cheap sniff, no parse).
    A .dsjc file is taken on its name: its zlib stream is judged when it is read."""
    if path.suffix.lower() == ".dsjc":
        return True
    with path.open("r", encoding="utf-8", errors="replace") as fh:
        return '"datasetJSONVersion"' in fh.read(4096)


def _dataset_json_files(folder: Path) -> tuple[list[Path], list[str]]:
    """The Dataset-JSON files of a folder, any encoding (.json, .ndjson, .dsjc), one per
    dataset: where a dataset is there in several encodings, the first of json, ndjson, dsjc
    is read and the others named in the report's notes (they hold the same content)."""
    from cdiscforge.datasetjson import ENCODINGS, SUFFIXES

    chosen: dict[str, Path] = {}
    notes = []
    if not folder.is_dir():
        return [], []
    for encoding in ENCODINGS:
        suffix = SUFFIXES[encoding]
        for file in sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix):
            stem = file.stem.lower()
            if stem in chosen:
                notes.append(f"{file.name}: not read, {chosen[stem].name} holds the same dataset")
            else:
                chosen[stem] = file
    return sorted(chosen.values()), notes


def _read_jsons(files: list[Path]) -> tuple[list[Dataset], list[str]]:
    from cdiscforge.datasetjson import read_dataset_json

    datasets, skipped, problems = [], [], []
    for file in files:
        if not _is_dataset_json(file):
            skipped.append(f"{file.name}: not Dataset-JSON")
            continue
        try:
            datasets.append(read_dataset_json(file))
        except CdiscforgeError as exc:
            problems.append(str(exc))
    if problems:  # every unreadable file in one message
        raise CdiscforgeError("; ".join(problems))
    return datasets, skipped


def read_input(path: Path) -> Input:
    """The datasets at `path`: XPT files, a build root (sdtm/, adam/), or Dataset-JSON files.

    XPT is preferred where a build root holds both (the submission format); a build root
    without XPT falls back to its datasetjson/sdtm and datasetjson/adam folders.
    """
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "not a folder")
    files = _xpt_files(path)
    if files:
        defines = [path / "define.xml"] if (path / "define.xml").is_file() else []
        return Input(_read_xpts(files), "xpt", defines)
    stages = [path / s for s in ("sdtm", "adam") if _xpt_files(path / s)]
    if stages:
        files = [f for s in stages for f in _xpt_files(s)]
        defines = [s / "define.xml" for s in stages if (s / "define.xml").is_file()]
        return Input(_read_xpts(files), "build", defines)
    jsons, duplicates = _dataset_json_files(path)
    json_dirs = [path / "datasetjson" / s for s in ("sdtm", "adam")]
    if not jsons:
        for folder in json_dirs:
            files, notes = _dataset_json_files(folder)
            jsons += files
            duplicates += notes
    datasets, skipped = _read_jsons(jsons)
    skipped = duplicates + skipped
    if not datasets:
        raise InputError(
            path,
            "nothing to validate: no *.xpt here or in sdtm/ or adam/, and no Dataset-JSON "
            "(*.json, *.ndjson, *.dsjc) here or in datasetjson/sdtm, datasetjson/adam",
        )
    names = [d.name for d in datasets]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(path, f"dataset(s) {dupes} given by more than one file")
    stage_defines = [path / s / "define.xml" for s in ("sdtm", "adam")]
    defines = [p for p in [path / "define.xml", *stage_defines] if p.is_file()]
    return Input(datasets, "dataset-json", defines, skipped)


def read_directory(path: Path) -> list[Dataset]:
    """Every dataset `validate` would read at `path` (see `read_input`)."""
    return read_input(path).datasets


# --------------------------------------------------------------------------------------------
# Standards and CT: chosen, or read from define.xml, or the bundled ones
# --------------------------------------------------------------------------------------------


def define_standards(define: Path) -> dict[str, str]:
    """The IG and CT versions a define.xml declares: {"SDTMIG": "3.4", "CT": "2025-03-28"}.

    Define-XML 2.1 lists def:Standard elements; 2.0 names one standard on MetaDataVersion.
    An unreadable define.xml declares nothing (validation of the data goes on).
    """
    from lxml import etree

    try:
        root = etree.parse(str(define)).getroot()
    except (OSError, etree.XMLSyntaxError):
        return {}
    found: dict[str, str] = {}
    for el in root.iter("{*}Standard"):
        name, kind, version = el.get("Name", ""), el.get("Type", ""), el.get("Version", "")
        if kind == "IG" and name.upper() in ("SDTMIG", "ADAMIG"):
            found["ADaMIG" if name.upper() == "ADAMIG" else "SDTMIG"] = version
        elif kind == "CT" and version:
            found.setdefault("CT", version)
    for mdv in root.iter("{*}MetaDataVersion"):
        for key, value in mdv.attrib.items():
            if key.endswith("}StandardName"):
                version = next(
                    (v for k, v in mdv.attrib.items() if k.endswith("}StandardVersion")), ""
                )
                which = "ADaMIG" if "ADAM" in value.upper() else "SDTMIG"
                found.setdefault(which, version)
    return found


def select_standards(
    ig: str | None, ct_version: str | None, defines: Sequence[Path] = ()
) -> tuple[ValidationOptions, list[str]]:
    """Options for the chosen SDTMIG and CT, defaulting from define.xml, else the bundled ones.

    An explicit choice that is not bundled is a usage error (exit 2). A define.xml that
    declares a version we do not bundle is not: the bundled one is used and the report says so.
    """
    from cdiscforge import ct

    bundled_ct = ct.sdtm_ct_version()  # the default release
    releases = ct.bundled_versions("sdtm")
    notes: list[str] = []
    if ig is not None and ig not in BUNDLED_SDTMIG:
        raise CdiscforgeError(
            f"--ig {ig}: SDTMIG {ig} metadata is not bundled (bundled: {', '.join(BUNDLED_SDTMIG)})"
        )
    if ct_version is not None and ct_version not in releases:
        raise CdiscforgeError(
            f"--ct {ct_version}: that CT package is not bundled (bundled: {', '.join(releases)})"
        )
    declared: dict[str, str] = {}
    for define in defines:
        for key, value in define_standards(define).items():
            declared.setdefault(key, value)
            if key in ("SDTMIG", "ADaMIG", "CT"):
                notes.append(f"{define.parent.name}/{define.name} declares {key} {value}")
    chosen_ig = ig or declared.get("SDTMIG") or BUNDLED_SDTMIG[-1]
    if chosen_ig not in BUNDLED_SDTMIG:
        notes.append(
            f"SDTMIG {chosen_ig} is not bundled: validated against SDTMIG {BUNDLED_SDTMIG[-1]}"
        )
        chosen_ig = BUNDLED_SDTMIG[-1]
    adamig = declared.get("ADaMIG") or BUNDLED_ADAMIG[-1]
    if adamig not in BUNDLED_ADAMIG:
        notes.append(f"ADaMIG {adamig} is not bundled: validated against ADaMIG 1.3")
        adamig = BUNDLED_ADAMIG[-1]
    chosen_ct = ct_version or declared.get("CT") or bundled_ct
    if chosen_ct not in releases:
        notes.append(f"CT {chosen_ct} is not bundled: validated against CT {bundled_ct}")
        chosen_ct = bundled_ct
    options = ValidationOptions(
        ig=chosen_ig,
        adamig=adamig,
        ct_version=chosen_ct,
        terminology=ct.Terminology({"sdtm": chosen_ct}),  # the one CT lookup, that release
    )
    return options, list(dict.fromkeys(notes))


def validate_directory(
    path: Path,
    *,
    checks: ValidationOptions | None = None,
    engine: str = "native",
    ig: str | None = None,
    ct_version: str | None = None,
    waivers: Sequence[Waiver] = (),
) -> ValidationResult:
    """Re-validate written files (ours or anyone's, e.g. the CDISC pilot); see `read_input`.

    Each define.xml found (the folder's, or sdtm/ and adam/ of a build root) is checked
    against the datasets beside it (validation/rules_define.py), before the waivers apply.
    """
    start = time.perf_counter()
    found = read_input(path)
    read_time = time.perf_counter() - start
    chosen, notes = select_standards(ig, ct_version, found.defines)
    options = checks or ValidationOptions()
    options = replace(
        options,
        ig=chosen.ig,
        adamig=chosen.adamig,
        ct_version=chosen.ct_version,
        terminology=chosen.terminology,
        check_lengths=options.check_lengths or found.kind == "dataset-json",
    )
    result = validate_datasets(found.datasets, checks=options, engine=engine)
    for define in found.defines:  # define.xml hook
        define_findings(result, define, _described_by(define, found.datasets))
    apply_waivers(result, waivers)  # after the define rules, so they can be waived too
    result.run["input"] = {"path": str(path), "format": found.kind}
    result.run["notes"] = notes + found.skipped
    result.timings["read"] = read_time
    result.timings["total"] += read_time
    return result


def _described_by(define: Path, datasets: Sequence[Dataset]) -> list[Dataset]:
    """The datasets a define.xml describes: those with a file beside it (its folder's XPT, or
    the build root's datasetjson/<stage> files); all of them when none is found there."""
    folder = define.parent
    stems = {p.stem.upper() for p in folder.glob("*.xpt")}
    json_dir = folder.parent / "datasetjson" / folder.name
    stems |= {p.stem.upper() for p in _dataset_json_files(json_dir)[0]}
    beside = [d for d in datasets if d.name.upper() in stems]
    return beside or list(datasets)


def engines() -> tuple[str, ...]:
    """The engine names `validate --engine` accepts."""
    return ("native", "gx")


__all__ = [
    "Check",
    "ValidationOptions",
    "ValidationResult",
    "define_standards",
    "read_directory",
    "read_input",
    "select_standards",
    "validate_datasets",
    "validate_directory",
]
