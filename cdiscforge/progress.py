"""What a build shows while it runs: each step, its live elapsed time, records and records/s.

A 10,000-subject build spends minutes in one step (validation, writing); a display that
only changes when the next step starts looks hung ("write (128.0s)" stayed on screen for a
minute). So on a terminal the status line is re-rendered by rich's refresh thread a few
times a second, each time from the clock and the counts, and a finished step leaves one line
above it. Elsewhere (a log file, CI) the output is plain lines, one when a step starts and
one when it ends: the same lines in the same order on every run of the same input, only the
seconds differ, and nothing is printed between them.

The build (`cdiscforge.build.run_build`) calls the display with each step's name
(`"sdtm LB"`, `"validate"`, `"write"`), with `done(n)` after each dataset it builds, and with
`expect(n, "validate", "write")` for the steps that each go through all n records. Records/s
is records finished / seconds spent, never an estimate: a stage that counts datasets shows it
live, a step that goes through all records at once shows it when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# Steps whose per-dataset messages ("sdtm DM", "sdtm LB", ...) belong to one stage.
_STAGED = ("sdtm", "adam")


@dataclass
class _Stage:
    name: str
    start: float
    records: int = 0  # finished so far (done)
    expected: int = 0  # the records the step goes through (expect), finished when it ends


def _stage_of(message: str) -> str:
    head = message.split(" ", 1)[0]
    return head if head in _STAGED else message


def _rate(records: int, seconds: float) -> str:
    return f"{records / seconds:,.0f} records/s" if seconds > 0 else "- records/s"


class StageProgress:
    """Build progress: a live rich status on a terminal, plain lines otherwise.

    Call it with a message when a step starts; `done(n)` adds n finished records to the
    current stage; `stop()` ends the display (printing the open stage's line). `console`
    defaults to rich's on stderr; `live` defaults to whether that console is a terminal;
    `echo` writes a plain line (default: click's, to stderr).
    """

    def __init__(
        self,
        console: Any = None,
        *,
        live: bool | None = None,
        echo: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
        refresh_per_second: float = 4,
    ) -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console = console
        self.live = console.is_terminal if live is None else live
        self._echo = echo or _click_echo
        self._clock = clock
        self.start = clock()
        self.message = "starting"
        self.stage: _Stage | None = None
        self._expected: dict[str, int] = {}
        self._status: Any = None
        if self.live:
            self._status = console.status(self, refresh_per_second=refresh_per_second)
            self._status.start()

    # -- what the build calls ------------------------------------------------------------

    def __call__(self, message: str) -> None:
        """A step starts: `message` names it (`"sdtm LB"` is stage sdtm, dataset LB)."""
        now = self._clock()
        stage = _stage_of(message)
        ended = None
        if self.stage is None or self.stage.name != stage:
            ended = self.stage
            self.stage = _Stage(stage, now, expected=self._expected.get(stage, 0))
        self.message = message  # the new step first, so no refresh shows a stage-less line
        self._close(ended, now)
        if not self.live:
            self._echo(f"[{now - self.start:6.1f}s] {message}")

    def done(self, records: int) -> None:
        """`records` more records of the current stage are finished."""
        if self.stage is not None:
            self.stage.records += int(records)

    def expect(self, records: int, *steps: str) -> None:
        """Each of `steps` (names as they will be called) goes through `records` records:
        shown while it runs, and its records/s when it ends."""
        for step in steps:
            self._expected[step] = int(records)

    def stop(self) -> None:
        """End the display; the open stage's line (its seconds and records) is printed."""
        now = self._clock()
        if self._status is not None:  # stopped first: its last refresh shows the open step
            self._status.stop()
            self._status = None
        stage, self.stage = self.stage, None
        self._close(stage, now)

    # -- rendering -----------------------------------------------------------------------

    def _close(self, stage: _Stage | None, now: float) -> None:
        """Print the line of a stage that ended at `now`."""
        if stage is None:
            return
        line = f"{stage.name}: {now - stage.start:.1f}s"
        records = stage.records or stage.expected
        if records:
            line += f", {records:,} records, {_rate(records, now - stage.start)}"
        if self.live:
            self.console.print(f"[green]✓[/] {line}", highlight=False)
        else:
            self._echo(f"[{now - self.start:6.1f}s] {line}")

    def status_text(self) -> str:
        """The live line, from the clock now: step, elapsed in the stage and in total, and
        the stage's finished records and records/s once there are any."""
        now = self._clock()
        text = f"[bold]{self.message}[/]"
        stage = self.stage
        if stage is None:
            return f"{text} ({now - self.start:.1f}s)"
        seconds = now - stage.start
        text += f" ({seconds:.1f}s; total {now - self.start:.1f}s)"
        if stage.records:
            text += f" · {stage.records:,} records · {_rate(stage.records, seconds)}"
        elif stage.expected:
            text += f" · {stage.expected:,} records"
        return text

    def __rich__(self) -> str:  # rich's refresh thread renders this on every refresh
        return self.status_text()


def _click_echo(line: str) -> None:
    import click

    click.echo(line, err=True)


class _NoCounts:
    """What `counts` gives for a display that only hears step names."""

    def done(self, records: int) -> None:
        return None

    def expect(self, records: int, *steps: str) -> None:
        return None


def counts(progress: Callable[[str], None] | None) -> StageProgress | _NoCounts:
    """The record counter of a display: `progress` itself when it counts records
    (StageProgress), else a no-op, so a plain callable (a test's list.append) still works."""
    return progress if isinstance(progress, StageProgress) else _NoCounts()
