"""The `cdiscforge` command: build, build-many, simulate, validate.

Exit codes: 0 success; 1 validation found error-level findings (the previous output kept,
the report in <out>/failed/); 2 bad input, bad spec, bad usage or an output folder that is
not ours to write; 130 / 143 interrupted by SIGINT / SIGTERM (nothing published). Errors
are printed as one located message, never a traceback. On a terminal the build shows a live
status line (step, elapsed seconds, records/s: cdiscforge.progress); otherwise plain lines.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from cdiscforge.errors import CdiscforgeError
from cdiscforge.progress import StageProgress
from cdiscforge.studies import DEFAULT_STUDY, study_dir

# Stage progress: a live rich status on a terminal, plain lines otherwise.
_Reporter = StageProgress


def _fail(exc: CdiscforgeError) -> None:
    click.echo(f"error: {exc}", err=True)
    sys.exit(exc.exit_code)


def _resolve_spec(study: str | None, spec: Path | None) -> tuple[Path, str]:
    if study and spec:
        raise click.UsageError("give --study or --spec, not both")
    if spec is not None:
        return spec, spec.name
    name = (study or DEFAULT_STUDY).lower()
    return study_dir(name), name


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="cdiscforge")
def main() -> None:
    """cdiscforge: raw EDC exports to validated SDTM and ADaM (XPT v5, define.xml,
    Dataset-JSON), driven by YAML specs."""


_study_option = click.option("--study", help=f"A bundled study (default {DEFAULT_STUDY}).")
_spec_option = click.option(
    "--spec",
    "spec",
    type=click.Path(file_okay=False, path_type=Path),
    help="A study spec folder (holding study.yaml) instead of a bundled study.",
)


@main.command()
@_study_option
@_spec_option
@click.option(
    "--raw",
    "raw",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of raw exports; without it the study's simulator makes them.",
)
@click.option(
    "--out",
    "out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default outputs/<study>).",
)
@click.option(
    "--datasetjson",
    "datasetjson",
    default="json",
    show_default=True,
    metavar="ENCODINGS",
    help="Dataset-JSON encodings to write, comma-separated: json, ndjson, dsjc "
    "(compressed NDJSON).",
)
def build(
    study: str | None, spec: Path | None, raw: Path | None, out: Path | None, datasetjson: str
) -> None:
    """Build SDTM and ADaM from raw exports, validate, and publish XPT, define.xml,
    Dataset-JSON, tables, the validation report and the build log.

    --out must be new, empty, or a folder an earlier build wrote (its
    cdiscforge-manifest.json): only the files that manifest lists are replaced."""
    from cdiscforge.datasetjson import ENCODINGS

    encodings = tuple(dict.fromkeys(e.strip().lower() for e in datasetjson.split(",")))
    unknown = [e for e in encodings if e not in ENCODINGS]
    if unknown or not encodings:
        raise click.BadParameter(
            f"{', '.join(unknown) or '(none)'}: choose from {', '.join(ENCODINGS)}",
            param_hint="--datasetjson",
        )
    from cdiscforge.outputs import Interrupted, handle_signals

    with handle_signals():  # SIGINT / SIGTERM unwind through the clean-up, exit 130 / 143
        reporter = _Reporter()
        out_dir = out
        try:
            from cdiscforge.build import run_build

            spec_dir, name = _resolve_spec(study, spec)
            if raw is not None and not raw.is_dir():
                raise CdiscforgeError(f"raw export folder not found: {raw}")
            out_dir = out or Path("outputs") / name
            result = run_build(
                spec_dir,
                out_dir,
                raw,
                progress=reporter,
                on_note=lambda note: click.echo(f"note: {note}", err=True),
                datasetjson=encodings,
            )
        except CdiscforgeError as exc:
            reporter.stop()
            _fail(exc)
            return
        except Interrupted as exc:
            reporter.stop()
            where = out_dir.resolve() if out_dir is not None else "the output folder"
            state = (
                f"the new output had been published to {where}"
                if exc.published
                else f"nothing was published and {where} is as it was"
            )
            click.echo(f"error: build interrupted by {exc.signame}; {state}", err=True)
            sys.exit(exc.exit_code)
        reporter.stop()
    if result.kept:
        click.echo(
            f"kept {len(result.kept)} file(s) of yours in {result.out_dir} untouched "
            "(named in build.log)"
        )
    n_sdtm = sum(1 for d in result.datasets.values() if not d.name.startswith("AD"))
    click.echo(
        f"built {len(result.datasets)} datasets ({n_sdtm} SDTM, {len(result.datasets) - n_sdtm} "
        f"ADaM), {len(result.log.warnings)} warnings, validation clean -> {result.out_dir}"
    )
    click.echo("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items()))


@main.command("build-many")
@click.argument("studies", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    help="A running Dask scheduler (e.g. tcp://10.0.0.5:8786); default: a LocalCluster here.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="LocalCluster workers, i.e. builds at once (default: one per study, at most the CPUs).",
)
@click.option(
    "--json",
    "json_out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the outcomes (the summary table's rows) to this JSON file.",
)
def build_many(
    studies: Path, scheduler: str | None, workers: int | None, json_out: Path | None
) -> None:
    """Build every study STUDIES lists (spec, raw and output folders), each as its own task
    on Dask distributed and its own `cdiscforge build` process; a summary table at the end.

    STUDIES is checked whole first (exit 2, nothing built, on any problem: output folders
    are held to build's rules, and two studies may not share one). One failing build does
    not stop the others. Exit 0 when every build succeeded, else the largest build exit
    code (1: a validation failure, 2: bad input)."""
    from cdiscforge import many

    try:
        entries = many.load_studies(studies)
    except CdiscforgeError as exc:
        _fail(exc)
        return
    where = scheduler or "a LocalCluster"
    click.echo(f"building {len(entries)} studies on {where}", err=True)

    def done(o: many.BuildOutcome) -> None:
        click.echo(f"  {o.name}: exit {o.exit_code} after {o.seconds:.1f}s", err=True)

    try:
        outcomes = many.build_many(entries, scheduler=scheduler, workers=workers, on_done=done)
    except CdiscforgeError as exc:
        _fail(exc)
        return
    click.echo("\n".join(many.summary_table(outcomes)))
    for o in outcomes:
        if o.message:
            click.echo(f"{o.name}: " + o.message.replace("\n", "\n    "))
    if json_out is not None:
        json_out.write_text(many.outcomes_json(outcomes), encoding="utf-8")
    code = max(o.exit_code for o in outcomes)
    if code:
        sys.exit(code)


@main.command()
@_study_option
@_spec_option
@click.option(
    "--subjects", type=click.IntRange(min=1), help="Enrolled subjects (default: profile)."
)
@click.option("--seed", type=int, help="Random seed (default: profile).")
@click.option("--clean", is_flag=True, help="Switch every kind of real-world mess off.")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the raw exports into.",
)
def simulate(
    study: str | None,
    spec: Path | None,
    subjects: int | None,
    seed: int | None,
    clean: bool,
    out: Path,
) -> None:
    """Write a study's simulated raw EDC and lab exports (deterministic for a seed)."""
    from cdiscforge.simulate import simulate as run

    try:
        spec_dir, _ = _resolve_spec(study, spec)
        start = time.perf_counter()
        result = run(spec_dir, out, subjects=subjects, seed=seed, mess=not clean)
    except CdiscforgeError as exc:
        _fail(exc)
        return
    for form, path in result.files.items():
        click.echo(f"{path}  {result.rows[form]} rows")
    click.echo(f"simulated {len(result.files)} files in {time.perf_counter() - start:.1f}s")


def _summary_table(result: object, limit: int = 60) -> list[str]:
    """Findings as a fixed-width table: rule, severity, dataset, variable, count, message."""
    from cdiscforge.validation.catalogue import SEVERITIES

    findings = sorted(
        result.findings,  # type: ignore[attr-defined]
        key=lambda f: (SEVERITIES.index(f.severity), f.rule_id, f.dataset, f.variables),
    )
    rows = [("rule", "severity", "dataset", "variable", "count", "message")]
    for f in findings[:limit]:
        message = f.message if len(f.message) <= 90 else f.message[:89] + "…"
        rows.append(
            (f.rule_id, f.severity, f.dataset, ",".join(f.variables), str(f.count), message)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        for r in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 7)
    if len(findings) > limit:
        lines.append(f"... and {len(findings) - limit} more findings in the report")
    return lines


@main.command()
@click.argument("path", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--report",
    "report",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html, report.xlsx, results.json and gx/ "
    "(default ./validation-report/<name of PATH>; inside a project folder "
    "<project>/outputs/validation-report/<name>).",
)
@click.option(
    "--waivers",
    "waivers_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A waivers.yaml of justified findings (e.g. specs/<study>/waivers.yaml).",
)
@click.option(
    "--engine",
    type=click.Choice(["native", "gx"]),
    default="native",
    show_default=True,
    help="Evaluate the generated Great Expectations suites natively (fast) or through GX.",
)
@click.option("--ig", help="SDTMIG version (default: define.xml's, else 3.4; 3.4 is bundled).")
@click.option(
    "--ct", "ct_version", help="CT package date (default: define.xml's, else the bundled one)."
)
def validate(
    path: Path,
    report: Path | None,
    waivers_file: Path | None,
    engine: str,
    ig: str | None,
    ct_version: str | None,
) -> None:
    """Validate SDTM/ADaM datasets at PATH; exit 1 on error-level findings.

    PATH is a folder of XPT files (ours or anyone's), a build output root (its sdtm/ and
    adam/ together, with their define.xml), or a folder of Dataset-JSON files. The report is
    written to ./validation-report/<name of PATH> (inside a project folder such as a
    checkout: <project>/outputs/validation-report/<name>) unless --report says where; never
    into PATH or the source tree.
    """
    from datetime import UTC, datetime

    from cdiscforge.outputs import report_target
    from cdiscforge.validation import validate_directory, write_report
    from cdiscforge.validation.waivers import load_waivers

    try:
        # Never into the folder being validated (it may be someone else's data), nor into
        # the source tree of a checkout: refused before anything is read.
        target = report_target(report, path)
        waivers = load_waivers(waivers_file) if waivers_file else []
        result = validate_directory(
            path, engine=engine, ig=ig, ct_version=ct_version, waivers=waivers
        )
    except CdiscforgeError as exc:
        _fail(exc)
        return
    run_date = datetime.now(UTC).replace(microsecond=0).isoformat()
    html, _ = write_report(result, target, run_date=run_date)
    counts: dict[str, int] = {}
    for f in result.findings:
        key = f"{f.severity} (waived)" if f.waiver else f.severity
        counts[key] = counts.get(key, 0) + 1
    summary = ", ".join(f"{n} {sev}" for sev, n in sorted(counts.items())) or "no findings"
    if result.findings:
        click.echo("\n".join(_summary_table(result)))
    run = result.run
    click.echo(
        f"validated {len(result.datasets)} datasets ({run['input']['format']}; "
        f"{', '.join(run['standards'])}; {run['ct']}; engine {run['engine']}) in "
        f"{result.timings.get('total', 0):.1f}s: {summary}. Report: {html}"
    )
    if result.has_errors:
        sys.exit(1)


@main.command(name="rules")
@click.argument("name", required=False)
@click.option(
    "--markdown", is_flag=True, help="Print the full reference as Markdown (docs/rules.md)."
)
def rules_command(name: str | None, markdown: bool) -> None:
    """The spec vocabulary: every rule and record generator with its purpose; NAME for one
    in full (parameters with type, default and description, and an example)."""
    from cdiscforge import reference

    try:
        if markdown:
            if name:
                raise click.UsageError("give NAME or --markdown, not both")
            click.echo(reference.markdown(), nl=False)
        else:
            click.echo(reference.text(name))
    except CdiscforgeError as exc:
        _fail(exc)


@main.command()
@click.option(
    "--raw",
    "raw",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder of the raw CSV exports.",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="The new study's spec folder (raw_forms.yaml is written there).",
)
def init(raw: Path, out: Path) -> None:
    """Draft a raw-form contract (OUT/raw_forms.yaml) from the raw CSV files' headers and
    values: one form per file, each column's type and date/time format guessed. Refuses to
    overwrite an existing raw_forms.yaml (exit 2). Next steps: docs/map-your-study.md."""
    from cdiscforge.scaffold import init_spec

    try:
        path = init_spec(raw, out)
    except CdiscforgeError as exc:
        _fail(exc)
        return
    click.echo(f"wrote {path}: check each guessed type and format, then see docs/map-your-study.md")


@main.group()
def spec() -> None:
    """Specification workbooks: import a Pinnacle 21 specification."""


@spec.command("import-p21")
@click.argument("workbook", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--study",
    "study",
    help="The study: a bundled study name or a spec folder holding study.yaml.",
)
def import_p21(workbook: Path, study: str | None) -> None:
    """Read a P21-format specification WORKBOOK and compare its metadata with the study's
    YAML, each difference on one line (exit 2 listing every workbook problem, located by
    sheet, row and column). Name it in study.yaml (`p21_spec: FILE.xlsx`) to have builds
    use it; `p21_precedence` (workbook | yaml) says which side wins a difference."""
    from cdiscforge.p21 import compare_study, read_p21_spec
    from cdiscforge.spec import load_study

    try:
        folder = Path(study) if study and Path(study, "study.yaml").is_file() else None
        spec_dir = folder or _resolve_spec(study, None)[0]
        target = load_study(spec_dir)
        metadata = read_p21_spec(workbook)
    except CdiscforgeError as exc:
        _fail(exc)
        return
    for note in metadata.notes:
        click.echo(f"note: {note}")
    n_vars = sum(len(d.variables) for d in metadata.datasets.values())
    n_vlm = sum(len(d.value_level) for d in metadata.datasets.values())
    click.echo(
        f"read {workbook}: {len(metadata.datasets)} datasets, {n_vars} variables, "
        f"{n_vlm} value-level rows, {len(metadata.codelists)} codelists, "
        f"{len(metadata.dictionaries)} dictionaries, {len(metadata.documents)} documents"
    )
    found = compare_study(metadata, target)
    for diff in found:
        click.echo(f"difference: {diff}")
    precedence = target.config.p21_precedence
    click.echo(
        f"{len(found)} difference(s) with {spec_dir}; a build naming this workbook "
        f"(p21_spec) reports each and keeps the {precedence}'s define-level metadata "
        "(p21_precedence)"
        if found
        else f"metadata equal to the YAML of {spec_dir}"
    )


if __name__ == "__main__":
    main()
