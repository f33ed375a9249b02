"""The build log and the record reconciliation.

A statistical programmer reads a SAS log for every dropped record, imputed date and truncated
value; this is that log. Every stage writes events here (info / warning, with dataset,
variable, count and examples) and one reconciliation row per (source, dataset): records read,
written and rejected with the reason. `reconciliation.csv` must balance: read = written +
rejected, for every raw form feeding every dataset.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd


@dataclass
class Event:
    level: str  # info | warning
    stage: str
    dataset: str
    message: str
    variable: str = ""
    count: int = 0
    examples: list[Any] = field(default_factory=list)


@dataclass
class Reconciliation:
    source: str  # raw form name, spec table or upstream dataset
    file: str
    dataset: str
    read: int
    written: int = 0
    rejected: dict[str, int] = field(default_factory=dict)  # reason -> count
    # How written rows became records when one row gives several (a pivot): not a reject.
    routed: str = ""

    @property
    def balanced(self) -> bool:
        return self.read == self.written + sum(self.rejected.values())


class BuildLog:
    """Collects events, reconciliation rows, inputs and outputs of one build."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.reconciliation: list[Reconciliation] = []
        self.inputs: dict[str, dict[str, Any]] = {}
        self.outputs: dict[str, dict[str, Any]] = {}
        self.timings: dict[str, float] = {}

    def info(self, stage: str, dataset: str, message: str, **kw: Any) -> None:
        self.events.append(Event("info", stage, dataset, message, **kw))

    def warn(self, stage: str, dataset: str, message: str, **kw: Any) -> None:
        self.events.append(Event("warning", stage, dataset, message, **kw))

    def input_file(self, name: str, path: Path, rows: int) -> None:
        self.inputs[name] = {"file": str(path), "rows": rows}

    def add_reconciliation(self, row: Reconciliation) -> None:
        self.reconciliation.append(row)

    @property
    def warnings(self) -> list[Event]:
        return [e for e in self.events if e.level == "warning"]

    def reconciliation_frame(self) -> pd.DataFrame:
        rows = [
            {
                "source": r.source,
                "file": Path(r.file).name if r.file else "",
                "dataset": r.dataset,
                "read": r.read,
                "written": r.written,
                "rejected": sum(r.rejected.values()),
                "reasons": "; ".join(f"{k}: {v}" for k, v in sorted(r.rejected.items())),
                "balanced": r.balanced,
                "routed": r.routed,
            }
            for r in self.reconciliation
        ]
        cols = ["source", "file", "dataset", "read", "written", "rejected", "reasons", "balanced",
                "routed"]  # fmt: skip
        return pd.DataFrame(rows, columns=cols)

    def write(self, out_dir: Path) -> tuple[Path, Path]:
        """Write build.log (human) and reconciliation.csv (machine) into `out_dir`.

        Input paths inside `out_dir` (simulated raw exports) are written relative to it, so
        two builds of the same input give the same log wherever they were staged.
        """
        for meta in self.inputs.values():
            path = Path(meta["file"])
            if path.is_absolute() and path.is_relative_to(out_dir.resolve()):
                meta["file"] = str(path.relative_to(out_dir.resolve()))
        out_dir.mkdir(parents=True, exist_ok=True)
        recon = out_dir / "reconciliation.csv"
        self.reconciliation_frame().to_csv(recon, index=False, lineterminator="\n")
        log = out_dir / "build.log"
        lines = ["cdiscforge build log", "", "INPUTS"]
        for name, meta in self.inputs.items():
            lines.append(f"  {name}: {meta['file']} ({meta['rows']} records read)")
        lines += ["", "RECONCILIATION (read = written + rejected)"]
        for r in self.reconciliation:
            reasons = ", ".join(f"{k}: {v}" for k, v in sorted(r.rejected.items())) or "none"
            flag = "" if r.balanced else "  <-- DOES NOT BALANCE"
            routed = f" (routed: {r.routed})" if r.routed else ""
            lines.append(
                f"  {r.source} -> {r.dataset}: read {r.read}, written {r.written}{routed}, "
                f"rejected {sum(r.rejected.values())} ({reasons}){flag}"
            )
        lines += ["", "OUTPUTS"]
        for name, meta in self.outputs.items():
            lines.append(f"  {name}: {json.dumps(meta, sort_keys=True)}")
        lines += ["", f"EVENTS ({len(self.warnings)} warnings)"]
        for e in self.events:
            where = f"{e.dataset}.{e.variable}" if e.variable else e.dataset
            count = f" [{e.count} records]" if e.count else ""
            ex = f" e.g. {e.examples[:3]}" if e.examples else ""
            lines.append(f"  {e.level.upper():7} {e.stage:10} {where}: {e.message}{count}{ex}")
        log.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self.timings:
            # Seconds vary between runs: kept apart so build.log stays reproducible.
            (out_dir / "timings.json").write_text(
                json.dumps(self.timings, indent=1, sort_keys=True) + "\n", encoding="utf-8"
            )
        (out_dir / "build_events.json").write_text(
            json.dumps([asdict(e) for e in self.events], indent=1, default=str) + "\n",
            encoding="utf-8",
        )
        return log, recon
