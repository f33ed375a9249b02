"""`cdiscforge build-many STUDIES.yaml`: many independent study builds as tasks on Dask.

Sponsors rebuild whole portfolios (a CT or IG up-version touches dozens of studies); that
should run on a distributed engine they already have, not on a scheduler of our own. Each
entry of STUDIES.yaml becomes one Dask distributed task, and each task runs `cdiscforge build`
as a child process of its worker: a build that fails, runs out of memory or is killed takes no
other build with it, and every build keeps all of `build`'s rules (output-folder checks, the
lock, staging and atomic publishing, exit codes). A LocalCluster is started when no
`--scheduler` is given; with one, the workers must have cdiscforge installed and see the same
paths. Before any task is submitted the whole file is checked, and every problem is reported
at once (exit 2, nothing built): unknown keys, missing folders, output folders `build` would
refuse, and output folders the entries share or nest (they would write over each other).

STUDIES.yaml (relative paths are taken from the file's own folder)::

    studies:
      - name: pilot-a              # optional; default: the spec folder's name
        spec: specs/pilot_a        # a study spec folder (holding study.yaml) ...
        raw: raw/pilot_a           # optional: without it the study's simulator makes them
        out: outputs/pilot_a
        datasetjson: json,dsjc     # optional, as `build --datasetjson`
      - study: nct03691909         # ... or a bundled study by name
        out: outputs/nct03691909
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from cdiscforge import outputs
from cdiscforge.errors import CdiscforgeError, SpecError, SpecErrors

_KEYS = ("name", "spec", "study", "raw", "out", "datasetjson")
_SEVERITIES = ("error", "warning", "notice")
_MESSAGE_LINES = 12  # of a failed build's error shown under the summary table


@dataclass(frozen=True)
class StudyEntry:
    """One build of STUDIES.yaml, its folders resolved."""

    name: str
    spec: Path
    out: Path
    raw: Path | None = None
    datasetjson: tuple[str, ...] = ("json",)

    def command(self) -> list[str]:
        """The `cdiscforge build` command line the task runs."""
        cmd = [sys.executable, "-m", "cdiscforge.cli", "build", "--spec", str(self.spec)]
        if self.raw is not None:
            cmd += ["--raw", str(self.raw)]
        return [*cmd, "--out", str(self.out), "--datasetjson", ",".join(self.datasetjson)]


@dataclass
class BuildOutcome:
    """What one build gave: its exit code, records validated, seconds and findings."""

    name: str
    exit_code: int
    seconds: float
    records: int | None = None
    findings: dict[str, int] = field(default_factory=dict)  # severity -> open findings
    waived: int = 0
    message: str = ""  # the build's error message (first lines), when it failed


def _encodings(value: Any, file: Path, where: str, errors: list[SpecError]) -> tuple[str, ...]:
    from cdiscforge.datasetjson import ENCODINGS

    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        errors.append(SpecError(file, where, "give encodings as 'json,ndjson' or a list"))
        return ("json",)
    chosen = tuple(dict.fromkeys(str(e).strip().lower() for e in items))
    unknown = [e for e in chosen if e not in ENCODINGS]
    if unknown:
        errors.append(
            SpecError(file, where, f"{', '.join(unknown)}: choose from {', '.join(ENCODINGS)}")
        )
    return chosen


def _folder(
    value: Any, base: Path, file: Path, where: str, errors: list[SpecError], *, exists: bool
) -> Path | None:
    if not isinstance(value, str) or not value.strip():
        errors.append(SpecError(file, where, "give a folder path"))
        return None
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base / path).resolve()
    if exists and not path.is_dir():
        errors.append(SpecError(file, where, f"folder not found: {path}"))
        return None
    return path


def _entry(
    item: Any, index: int, base: Path, file: Path, errors: list[SpecError]
) -> StudyEntry | None:
    from cdiscforge.studies import study_dir

    at = f"studies[{index}]"
    if not isinstance(item, dict):
        errors.append(SpecError(file, at, "each study is a mapping (spec, raw, out, ...)"))
        return None
    for key in sorted(set(item) - set(_KEYS)):
        errors.append(SpecError(file, f"{at}.{key}", f"unknown key; known: {', '.join(_KEYS)}"))
    before = len(errors)
    spec: Path | None = None
    if ("spec" in item) == ("study" in item):
        errors.append(SpecError(file, at, "give spec (a spec folder) or study (bundled), one"))
    elif "spec" in item:
        spec = _folder(item["spec"], base, file, f"{at}.spec", errors, exists=True)
        if spec is not None and not (spec / "study.yaml").is_file():
            errors.append(SpecError(file, f"{at}.spec", f"{spec} holds no study.yaml"))
    else:
        try:
            spec = study_dir(str(item["study"]).lower())
        except CdiscforgeError as exc:
            errors.append(SpecError(file, f"{at}.study", str(exc)))
    raw = None
    if item.get("raw") is not None:
        raw = _folder(item["raw"], base, file, f"{at}.raw", errors, exists=True)
    out = None
    if "out" not in item:
        errors.append(SpecError(file, f"{at}.out", "required: the study's output folder"))
    else:
        out = _folder(item["out"], base, file, f"{at}.out", errors, exists=False)
    encodings = _encodings(item.get("datasetjson", "json"), file, f"{at}.datasetjson", errors)
    name = item.get("name", spec.name if spec is not None else f"study {index + 1}")
    if len(errors) > before or spec is None or out is None:
        return None
    return StudyEntry(str(name), spec, out, raw, encodings)


def load_studies(path: Path) -> list[StudyEntry]:
    """The builds STUDIES.yaml lists, every problem of the file in one `SpecErrors` (exit 2):
    its own keys and folders, and each output folder as `build` would judge it alone
    (`outputs.check_target`, `outputs.inspect`) and with the others
    (`outputs.check_targets_apart`)."""
    from cdiscforge import yamlsafe

    path = Path(path)
    try:
        doc = yamlsafe.load_file(path)
    except FileNotFoundError:
        raise CdiscforgeError(f"studies file not found: {path}") from None
    except Exception as exc:  # not UTF-8, bad YAML, an alias bomb: the guards say where
        raise SpecError(path, "", str(exc)) from None
    if not isinstance(doc, dict) or not isinstance(doc.get("studies"), list) or not doc["studies"]:
        raise SpecError(path, "studies", "give a non-empty list of studies")
    errors: list[SpecError] = []
    for key in sorted(set(doc) - {"studies"}):
        errors.append(SpecError(path, key, "unknown key; the file holds only `studies`"))
    base = path.resolve().parent
    entries = [_entry(item, i, base, path, errors) for i, item in enumerate(doc["studies"])]
    found = [e for e in entries if e is not None]
    names = [e.name for e in found]
    for name in sorted({n for n in names if names.count(n) > 1}):
        errors.append(SpecError(path, "studies", f"two studies are named {name!r}"))
    for entry in found:
        try:
            root = outputs.check_target(entry.out, spec_dir=entry.spec, raw_dir=entry.raw)
            outputs.check_writable(outputs.inspect(root))
        except CdiscforgeError as exc:
            errors.append(SpecError(path, f"studies[{entries.index(entry)}].out", str(exc)))
    shared = outputs.check_targets_apart(
        {e.name: e.out for e in found},
        {e.name: [e.spec, *([e.raw] if e.raw else [])] for e in found},
    )
    errors += [SpecError(path, "studies", f"refused: {problem}") for problem in shared]
    if errors:
        raise SpecErrors(errors)
    return found


def _results(out: Path, exit_code: int) -> dict[str, Any] | None:
    """The build's validation results.json: in the published folder when it succeeded, in
    <out>/failed/ when validation stopped it, none when it stopped earlier."""
    where = {0: out, 1: out / outputs.FAILED}.get(exit_code)
    file = where / "validation" / "results.json" if where is not None else None
    if file is None or not file.is_file():
        return None
    return json.loads(file.read_text(encoding="utf-8"))


def run_entry(entry: StudyEntry) -> BuildOutcome:
    """One build, as a Dask task: `cdiscforge build` in a child process, then its results.

    Module-level, so a worker on another machine can import it by name.
    """
    start = time.perf_counter()
    try:
        proc = subprocess.run(entry.command(), capture_output=True, text=True, check=False)
    except OSError as exc:
        return BuildOutcome(entry.name, 2, time.perf_counter() - start, message=str(exc))
    seconds = round(time.perf_counter() - start, 1)
    outcome = BuildOutcome(entry.name, proc.returncode, seconds)
    lines = proc.stderr.splitlines()
    first = next((i for i, line in enumerate(lines) if line.startswith("error:")), None)
    if proc.returncode and first is not None:  # the build's located error, as build says it
        shown = lines[first : first + _MESSAGE_LINES]
        more = len(lines) - first - len(shown)
        outcome.message = "\n".join(shown + ([f"  ... {more} more line(s)"] if more else []))
    results = _results(entry.out, proc.returncode)
    if results is not None:
        outcome.records = sum(results.get("datasets", {}).values())
        findings = results.get("findings", [])
        for severity in _SEVERITIES:
            outcome.findings[severity] = sum(
                1 for f in findings if f["severity"] == severity and not f.get("waiver")
            )
        outcome.waived = sum(1 for f in findings if f.get("waiver"))
    return outcome


def build_many(
    entries: Sequence[StudyEntry],
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    on_done: Callable[[BuildOutcome], None] | None = None,
) -> list[BuildOutcome]:
    """Run every entry as an independent task on Dask distributed; outcomes in entry order.

    Without `scheduler` a LocalCluster runs here: `workers` worker threads (default: one per
    study, at most the CPU count), each waiting on its build's own process, no dashboard (no
    port to clash with). `on_done` hears each outcome as its build ends.
    """
    from distributed import Client, LocalCluster, as_completed

    logging.getLogger("distributed").setLevel(logging.WARNING)
    cluster = None
    if scheduler is None:
        n = workers or max(1, min(len(entries), os.cpu_count() or 1))
        cluster = LocalCluster(
            n_workers=n, threads_per_worker=1, processes=False, dashboard_address=None
        )
    try:
        try:
            client = Client(cluster if cluster is not None else scheduler, timeout="20s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise CdiscforgeError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from exc
        with client:
            futures = {
                client.submit(run_entry, e, key=f"cdiscforge-build-{i}-{e.name}", pure=False): i
                for i, e in enumerate(entries)
            }
            done: dict[int, BuildOutcome] = {}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    outcome = future.result()
                except Exception as exc:  # the task itself broke (a worker lost, ...)
                    outcome = BuildOutcome(entries[index].name, 2, 0.0, message=f"task: {exc}")
                done[index] = outcome
                if on_done is not None:
                    on_done(outcome)
    finally:
        if cluster is not None:
            cluster.close()
    return [done[i] for i in range(len(entries))]


def summary_table(outcomes: Sequence[BuildOutcome]) -> list[str]:
    """study, exit code, records, seconds, findings: one fixed-width line per build."""
    rows = [("study", "exit", "records", "seconds", "findings")]
    for o in outcomes:
        counts = ", ".join(f"{o.findings[s]} {s}" for s in _SEVERITIES if o.findings.get(s))
        counts = counts or ("none" if o.records is not None else "-")
        if o.waived:
            counts += f" ({o.waived} waived)"
        records = f"{o.records:,}" if o.records is not None else "-"
        rows.append((o.name, str(o.exit_code), records, f"{o.seconds:.1f}", counts))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    right = (False, True, True, True)
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if ra else c.ljust(w) for c, w, ra in zip(r, widths, right, strict=False)
        ]
        lines.append("  ".join(cells) + "  " + r[4])
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 8)
    return lines


def outcomes_json(outcomes: Sequence[BuildOutcome]) -> str:
    """The outcomes as JSON (for scripts: `build-many --json FILE`)."""
    return json.dumps([asdict(o) for o in outcomes], indent=1) + "\n"
