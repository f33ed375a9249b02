"""Write the validation result for people (report.html) and for machines (results.json).

Both files are deterministic: findings and checks in a fixed order, no wall-clock time (a
`generated` stamp is printed only when the caller passes one, e.g. the build's fixed creation
datetime), and no timings, so the same datasets give the same bytes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from validation.catalogue import RULES, SEVERITIES
from validation.findings import ValidationResult

REPORT_HTML = "report.html"
RESULTS_JSON = "results.json"


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("validation", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
    )


def render_html(result: ValidationResult, *, generated: str | None = None) -> str:
    """The one-page report: verdict, summary by dataset and severity, findings, checks, rules."""
    data = result.to_dict()
    summary = data["summary"]
    totals = {s: sum(c[s] for c in summary.values()) for s in SEVERITIES}
    status_counts = Counter(c["status"] for c in data["checked"])
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            generated=generated,
            has_errors=data["has_errors"],
            totals=totals,
            summary=summary,
            datasets=data["datasets"],
            findings=data["findings"],
            checked=data["checked"],
            status_counts=status_counts,
            rules=sorted(RULES.values(), key=lambda r: r.id),
        )
    )


def write_report(
    result: ValidationResult, out_dir: Path, *, generated: str | None = None
) -> tuple[Path, Path]:
    """Write report.html and results.json into `out_dir` (created if needed); return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, json_path = out_dir / REPORT_HTML, out_dir / RESULTS_JSON
    html_path.write_text(render_html(result, generated=generated), encoding="utf-8")
    payload = result.to_dict()
    if generated:
        payload["generated"] = generated
    text = json.dumps(payload, indent=2, sort_keys=False, ensure_ascii=False, default=str)
    json_path.write_text(text + "\n", encoding="utf-8")
    return html_path, json_path
