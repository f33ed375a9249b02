"""The build's progress display (cdiscforge.progress): live on a terminal, plain lines elsewhere.

The live status must keep moving while one step runs (it once froze at "write (128.0s)" for
a minute), and the plain output (logs, CI) must be one line per step start and end, the same
lines on every run apart from the seconds, with records/s computed from real counts.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from cdiscforge.concurrent import workers
from cdiscforge.engine import build_order
from cdiscforge.progress import StageProgress, counts
from cdiscforge.spec import load_study


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_name_each_step_and_its_records_per_second() -> None:
    clock, lines = _Clock(), []
    show = StageProgress(Console(file=io.StringIO()), live=False, echo=lines.append, clock=clock)
    show("specs")
    clock.now += 1.0
    show("sdtm DM")
    clock.now += 0.5
    show.done(300)
    show("sdtm LB")  # same stage: a line for the step, none closing the stage
    clock.now += 1.5
    show.done(1700)
    show.expect(4000, "validate", "write")
    show("validate")
    clock.now += 2.0
    show("write")
    clock.now += 4.0
    show.stop()
    assert lines == [
        "[   0.0s] specs",
        "[   1.0s] specs: 1.0s",
        "[   1.0s] sdtm DM",
        "[   1.5s] sdtm LB",
        "[   3.0s] sdtm: 2.0s, 2,000 records, 1,000 records/s",
        "[   3.0s] validate",
        "[   5.0s] validate: 2.0s, 4,000 records, 2,000 records/s",
        "[   5.0s] write",
        "[   9.0s] write: 4.0s, 4,000 records, 1,000 records/s",
    ]


def test_live_status_is_computed_from_the_clock_at_each_render() -> None:
    clock = _Clock()
    show = StageProgress(Console(file=io.StringIO()), live=False, echo=lambda _: None, clock=clock)
    show("sdtm MK")
    first = show.status_text()
    clock.now += 62.0  # no message in between: only the clock moved
    show.done(31_000)
    later = show.status_text()
    assert "(0.0s" in first and "(62.0s; total 62.0s)" in later
    assert "31,000 records · 500 records/s" in later


def test_terminal_display_refreshes_while_one_step_runs() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=120, color_system=None)
    show = StageProgress(console, refresh_per_second=20)
    assert show.live
    show.expect(1000, "write")
    show("write")
    time.sleep(0.8)  # the build is busy; nothing calls the display
    show.stop()
    text = out.getvalue()
    shown = set(re.findall(r"write \((\d+\.\d)s", text))
    assert len(shown) >= 3, text  # the elapsed seconds moved on their own
    assert re.search(r"✓ write: 0\.\ds, 1,000 records, [\d,]+ records/s", text), text


def test_a_plain_callable_still_works_as_progress() -> None:
    heard: list[str] = []
    counter = counts(heard.append)
    counter.done(5)
    counter.expect(5, "write")  # no-ops: a test's list.append only hears step names
    show = StageProgress(Console(file=io.StringIO()), live=False, echo=heard.append)
    assert counts(show) is show


def test_build_prints_deterministic_step_lines_off_a_terminal(
    default_raw: Path, seed_spec: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", "build", "--raw", str(default_raw),
         "--out", str(out)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines and all(re.match(r"\[ *\d+\.\ds\] \S", line) for line in lines), lines
    assert not any("\x1b" in line or "\r" in line for line in lines)  # no terminal codes
    steps = [re.sub(r"^\[ *\d+\.\ds\] ", "", line) for line in lines]
    closed = {s.split(":")[0]: s for s in steps if re.match(r"[a-z .+]+: \d", s)}
    # on two cores validation and writing run at once (cdiscforge.concurrent): one step
    both = ["validate + write"] if workers() > 1 else ["validate", "write"]
    assert list(closed) == ["specs", "sdtm", "adam", *both, "validate define.xml"]
    # Records/s from the build's own counts: build.log's OUTPUTS for SDTM, ADaM and all.
    records = {"sdtm": 0, "adam": 0}
    for line in (out / "build.log").read_text(encoding="utf-8").splitlines():
        m = re.match(r"  (sdtm|adam)/\S+\.xpt: (\{.*\})$", line)
        if m:
            records[m.group(1)] += json.loads(m.group(2))["records"]
    total = records["sdtm"] + records["adam"]
    for stage, n in (*records.items(), *((step, total) for step in both)):
        assert re.fullmatch(
            rf"{re.escape(stage)}: \d+\.\ds, {n:,} records, [\d,]+ records/s", closed[stage]
        )
    # One line per dataset step, in build order, the same on every run of this input.
    study = load_study(seed_spec)
    order = [f"{stage} {name}" for stage in ("sdtm", "adam") for name in build_order(study, stage)]
    assert [s for s in steps if re.fullmatch(r"(sdtm|adam) [A-Z]+", s)] == order
    assert steps[:3] == ["specs", "specs: " + closed["specs"].split(": ")[1], "sdtm raw exports"]
