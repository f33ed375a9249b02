"""Write the validation result for people and machines: report.html, report.xlsx,
results.json, and the generated suites as Great Expectations JSON (gx/<dataset>.json).

Everything written is deterministic: findings and checks in a fixed order, no timings, and
no wall-clock time unless the caller passes one (`run_date`, which `cdiscforge validate`
does). The build passes only its reproducible data creation timestamp (`generated`), shown
as such, so a rebuild gives the same bytes. report.xlsx is a P21-style workbook (Dataset
Summary, Issue Summary, Details, Rules) with fixed zip timestamps for the same reason.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cdiscforge.validation.catalogue import RULES, SEVERITIES
from cdiscforge.validation.findings import ValidationResult

REPORT_HTML = "report.html"
RESULTS_JSON = "results.json"
REPORT_XLSX = "report.xlsx"
GX_FOLDER = "gx"
PAGE_ROWS = 100  # records per page in the HTML report
XLSX_SHEETS = ("Dataset Summary", "Issue Summary", "Details", "Rules")


@cache
def _environment() -> Environment:
    """One environment per process: its templates are compiled once (a build writes the
    report twice, `validate` once per path)."""
    return Environment(
        loader=PackageLoader("cdiscforge.validation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def _header(result: ValidationResult, generated: str | None, run_date: str | None) -> dict:
    run = dict(result.run)
    run.setdefault("notes", [])
    if run_date:
        run["run_date"] = run_date
    if generated:
        run["data_created"] = generated
    return run


def _by_rule(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Findings grouped by rule (most severe first), each with its records split in pages."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in findings:
        groups[f["rule_id"]].append(f)
    out = []
    for rule_id, items in groups.items():
        r = RULES.get(rule_id)
        severity = items[0]["severity"]
        for f in items:
            examples = f["examples"]
            columns = list(dict.fromkeys(k for e in examples for k in e))
            f["columns"] = columns
            f["pages"] = [examples[i : i + PAGE_ROWS] for i in range(0, len(examples), PAGE_ROWS)]
        out.append(
            {
                "rule_id": rule_id,
                "severity": severity,
                "title": r.title if r else rule_id,
                "fix": r.fix if r else "",
                "mirrors": r.mirrors if r else "",
                "records": sum(f["count"] for f in items),
                "findings": items,
            }
        )
    out.sort(key=lambda g: (SEVERITIES.index(g["severity"]), g["rule_id"]))
    return out


def _checks_by_dataset(checked: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in checked:
        groups[c["dataset"]].append(c)
    return [
        {"dataset": name, "checks": items, "counts": Counter(c["status"] for c in items)}
        for name, items in sorted(groups.items())
    ]


def render_html(
    result: ValidationResult, *, generated: str | None = None, run_date: str | None = None
) -> str:
    """The report page: header, verdict, summary, findings by rule (paged), checks, rules."""
    data = result.to_dict()
    summary = data["summary"]
    totals = {s: sum(c[s] for c in summary.values()) for s in SEVERITIES}
    status_counts = Counter(c["status"] for c in data["checked"])
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            run=_header(result, generated, run_date),
            has_errors=data["has_errors"],
            totals=totals,
            summary=summary,
            datasets=data["datasets"],
            rule_groups=_by_rule(data["findings"]),
            findings=data["findings"],
            checked=data["checked"],
            check_groups=_checks_by_dataset(data["checked"]),
            status_counts=status_counts,
            page_rows=PAGE_ROWS,
            rules=sorted(RULES.values(), key=lambda r: r.id),
        )
    )


def _record_text(example: dict[str, Any], keys: list[str]) -> tuple[str, str]:
    """A record's locating values and its other values, as 'NAME=value' lists."""
    where = ", ".join(f"{k}={example[k]}" for k in keys if k in example)
    rest = ", ".join(f"{k}={v}" for k, v in example.items() if k not in keys)
    return where, rest


def render_xlsx(
    result: ValidationResult, *, generated: str | None = None, run_date: str | None = None
) -> bytes:
    """The P21-style workbook: Dataset Summary, Issue Summary, Details, Rules (fixed bytes)."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    data = result.to_dict()
    run = _header(result, generated, run_date)
    wb = Workbook()
    sheets = [wb.active] + [wb.create_sheet() for _ in XLSX_SHEETS[1:]]
    for sheet, title in zip(sheets, XLSX_SHEETS, strict=True):
        sheet.title = title
    ds_sheet, issues, details, rules_sheet = sheets

    checks_by_ds: dict[str, Counter] = defaultdict(Counter)
    for c in data["checked"]:
        checks_by_ds[c["dataset"]][c["status"]] += 1
    ds_sheet.append(
        [
            "Dataset",
            "Records",
            "Errors",
            "Warnings",
            "Notices",
            "Checks passed",
            "Checks failed",
            "Not applicable",
        ]
    )
    for name, counts in data["summary"].items():
        st = checks_by_ds.get(name, Counter())
        ds_sheet.append(
            [
                name,
                data["datasets"].get(name),
                counts["error"],
                counts["warning"],
                counts["notice"],
                st["pass"],
                st["fail"],
                st["not applicable"],
            ]
        )
    ds_sheet.append([])
    for label, key in (("Tool", "tool_version"), ("Engine", "engine"), ("CT", "ct")):
        ds_sheet.append([label, str(run.get(key, ""))])
    ds_sheet.append(["Standards", ", ".join(run.get("standards", []))])
    if run.get("run_date"):
        ds_sheet.append(["Run date", run["run_date"]])
    if run.get("data_created"):
        ds_sheet.append(["Data creation timestamp (reproducible)", run["data_created"]])

    issues.append(["Dataset", "Rule", "Mirrors", "Severity", "Variables", "Found", "Message"])
    details.append(
        ["Dataset", "Rule", "Mirrors", "Severity", "Variables", "Record", "Values", "Message"]
    )
    for f in data["findings"]:
        variables = ", ".join(f["variables"])
        issues.append(
            [
                f["dataset"],
                f["rule_id"],
                f["mirrors"],
                f["severity"],
                variables,
                f["count"],
                f["message"],
            ]
        )
        keys = [k for k in ("USUBJID", "row") if any(k in e for e in f["examples"])]
        keys += [k for e in f["examples"][:1] for k in e if k.endswith("SEQ") or k == "PARAMCD"]
        for e in f["examples"]:
            where, rest = _record_text(e, keys)
            details.append(
                [
                    f["dataset"],
                    f["rule_id"],
                    f["mirrors"],
                    f["severity"],
                    variables,
                    where,
                    rest,
                    f["message"],
                ]
            )
        if not f["examples"]:
            details.append(
                [
                    f["dataset"],
                    f["rule_id"],
                    f["mirrors"],
                    f["severity"],
                    variables,
                    "",
                    "",
                    f["message"],
                ]
            )

    per_rule: dict[str, Counter] = defaultdict(Counter)
    for c in data["checked"]:
        per_rule[c["rule_id"]][c["status"]] += 1
    rules_sheet.append(
        [
            "Rule",
            "Severity",
            "Title",
            "Fix",
            "Mirrors",
            "Checks passed",
            "Checks failed",
            "Not applicable",
        ]
    )
    for r in sorted(RULES.values(), key=lambda r: r.id):
        st = per_rule.get(r.id, Counter())
        rules_sheet.append(
            [
                r.id,
                r.severity,
                r.title,
                r.fix,
                r.mirrors,
                st["pass"],
                st["fail"],
                st["not applicable"],
            ]
        )
    for sheet in sheets:
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"

    from cdiscforge.xlsx import workbook_bytes

    return workbook_bytes(wb)  # fixed docProps and zip timestamps: same result, same bytes


def write_gx_suites(result: ValidationResult, out_dir: Path) -> list[Path]:
    """Each generated suite as GX ExpectationSuite JSON in `out_dir` (<dataset>.json).

    A team loads one with `great_expectations.ExpectationSuite(**json.load(fh))` and runs it
    in its own GX setup; suites are the ones both engines ran.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, suite in sorted(result.suites.items()):
        path = out_dir / f"{name.lower()}.json"
        path.write_text(json.dumps(suite, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        paths.append(path)
    return paths


def write_report(
    result: ValidationResult,
    out_dir: Path,
    *,
    generated: str | None = None,
    run_date: str | None = None,
) -> tuple[Path, Path]:
    """Write report.html, report.xlsx, results.json and gx/*.json into `out_dir`.

    `generated` is the data's reproducible creation timestamp (the build's), `run_date` the
    real date of this run (`cdiscforge validate`); each is shown under its own label.
    Returns the paths of report.html and results.json.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / REPORT_HTML, out_dir / RESULTS_JSON
    html_path.write_text(
        render_html(result, generated=generated, run_date=run_date), encoding="utf-8"
    )
    (out_dir / REPORT_XLSX).write_bytes(render_xlsx(result, generated=generated, run_date=run_date))
    payload = result.to_dict()
    payload["run"] = _header(result, generated, run_date)
    if generated:
        payload["generated"] = generated
    text = json.dumps(payload, indent=2, sort_keys=False, ensure_ascii=False, default=str)
    json_path.write_text(text + "\n", encoding="utf-8")
    if result.suites:
        write_gx_suites(result, out_dir / GX_FOLDER)
    return html_path, json_path
