"""Error types with locations.

A statistical programmer fixing a failed build needs to know *where*: which file, which key
path in a spec, which row and column of a raw export, which value. Every error cdiscforge
raises for bad input carries those fields, and the CLI maps the class to an exit code
(2 for bad input, spec or usage; 1 for a failed validation).

Bad input is reported all at once: inside a `collecting()` block (the engine opens one around
reading the raw exports and the whole SDTM stage) every located input error is recorded
instead of raised, the code goes on with the bad value (a rule returns null for it), and the
block raises one `InputErrors` at its end listing them all, sorted by file and row, at most
`MAX_ERRORS_PER_FILE` per file with a count of the rest. Outside such a block the same calls
raise the first error, as a library caller expects.
"""

from __future__ import annotations

import re
from contextvars import ContextVar
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd


class CdiscforgeError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 2

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle as itself (its fields, not the constructor's arguments): a located error
        found in the build's second process (cdiscforge.concurrent) comes back unchanged."""
        return (_restore, (type(self), self.args, self.__dict__))


def _restore(cls: type[CdiscforgeError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


def _fmt_value(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


class SpecError(CdiscforgeError):
    """A spec file is broken: names the file, the key path inside it and what is wrong."""

    def __init__(self, file: object, key_path: str, problem: str) -> None:
        self.file = str(file)
        self.key_path = key_path
        self.problem = problem
        where = f"{self.file}: {key_path}" if key_path else self.file
        super().__init__(f"spec error in {where}: {problem}")


class SpecErrors(SpecError):
    """Every problem one load of a spec folder found, so they are all fixed in one pass.

    A SpecError itself (file, key_path and problem are the first one's), so code and tests
    catching SpecError see it too; the message lists each error on its own line, at most
    `limit` of them, with the count of the rest.
    """

    def __init__(self, errors: list[SpecError], limit: int = 100) -> None:
        flat: list[SpecError] = []
        for err in errors:
            flat.extend(err.errors if isinstance(err, SpecErrors) else [err])
        self.errors = flat
        first = flat[0]
        self.file, self.key_path, self.problem = first.file, first.key_path, first.problem
        lines = [f"  {err}" for err in flat[:limit]]
        if len(flat) > limit:
            lines.append(f"  ... and {len(flat) - limit} more spec errors")
        CdiscforgeError.__init__(self, f"{len(flat)} spec errors:\n" + "\n".join(lines))

    @staticmethod
    def combine(errors: list[SpecError]) -> SpecError:
        """One error as itself (its message unchanged), several as one SpecErrors."""
        if len(errors) == 1 and not isinstance(errors[0], SpecErrors):
            return errors[0]
        return SpecErrors(errors)


class InputError(CdiscforgeError):
    """Raw input is bad: names the file, the 1-based data row, the column and the value."""

    def __init__(
        self,
        file: object,
        problem: str,
        *,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
    ) -> None:
        self.file = str(file)
        self.row = row
        self.column = column
        self.value = value
        self.problem = problem
        parts = [self.file]
        if row is not None:
            parts.append(f"row {row}")
        if column is not None:
            parts.append(f"column {column}")
        if value is not None:
            parts.append(f"value {_fmt_value(value)}")
        super().__init__(f"input error in {', '.join(parts)}: {problem}")


class XptError(CdiscforgeError):
    """A dataset cannot be written as FDA-conformant XPT v5: names dataset, variable, row, value."""

    def __init__(
        self,
        dataset: str,
        problem: str,
        *,
        variable: str | None = None,
        row: int | None = None,
        value: Any = None,
    ) -> None:
        self.dataset = dataset
        self.variable = variable
        self.row = row
        self.value = value
        self.problem = problem
        parts = [f"dataset {dataset}"]
        if variable is not None:
            parts.append(f"variable {variable}")
        if row is not None:
            parts.append(f"row {row}")
        if value is not None:
            parts.append(f"value {_fmt_value(value)}")
        super().__init__(f"XPT error in {', '.join(parts)}: {problem}")


class ValidationFailed(CdiscforgeError):
    """Validation found error-level findings; nothing was published."""

    exit_code = 1


MAX_ERRORS_PER_FILE = 50
TRACK_UNLISTED = 100_000


class InputErrors(InputError):
    """Every located input error one build found, so they are all fixed in one pass.

    An InputError itself (file, row, column and value are the first one's), so code catching
    InputError sees it too. `errors` lists them sorted by file and row; `more` counts, per
    file, the errors past the per-file cap; `stopped` says what ended the stage early, when
    something did (a later failure that the bad values above may have caused).
    """

    def __init__(
        self, errors: list[InputError], more: dict[str, int] | None = None, stopped: str = ""
    ) -> None:
        self.errors = errors
        self.more = dict(more or {})
        self.stopped = stopped
        first = errors[0]
        self.file, self.row, self.column = first.file, first.row, first.column
        self.value, self.problem = first.value, first.problem
        extra = sum(self.more.values())
        files = sorted({e.file for e in errors} | set(self.more))
        # A workbook's errors name "<file> [sheet]": the header counts files, not sheets.
        n_files = len({re.sub(r" \[[^\]]*\]$", "", str(f)) for f in files})
        count = f"{len(errors)} input errors" + (f" (and about {extra} more)" if extra else "")
        lines = [f"{count} in {n_files} file(s); nothing was published:"]
        for file in files:
            lines += [f"  {e}" for e in errors if e.file == file]
            if self.more.get(file):
                lines.append(
                    f"  ... and about {self.more[file]} more input errors in {file} (not listed)"
                )
        if stopped:
            lines.append(f"  (the build stopped after these: {stopped})")
        CdiscforgeError.__init__(self, "\n".join(lines))


def _sort_key(err: InputError) -> tuple[str, int, str]:
    return (err.file, err.row if err.row is not None else -1, err.column or "")


class ErrorCollector:
    """Located input errors of one run: deduplicated by (file, row, column), the first
    problem found for a cell kept (a bad raw value is not reported again by the rule that
    maps it), capped per file."""

    def __init__(self, limit_per_file: int = MAX_ERRORS_PER_FILE) -> None:
        self.limit = limit_per_file
        self._errors: dict[tuple[str, int | None, str | None], InputError] = {}
        self._per_file: dict[str, int] = {}
        self._records: set[tuple[str, int | None]] = set()
        # Cells past the cap, remembered (up to TRACK_UNLISTED per file) so that a cell two
        # checks find is counted once.
        self._unlisted: dict[str, set[tuple[int | None, str | None]]] = {}
        self.more: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._errors) + sum(self.more.values())

    def add(self, err: InputError, *, secondary: bool = False) -> None:
        """Record `err`; `secondary`: a consequence of a value already reported for the same
        record (a derived variable of a bad raw cell), kept only if that record has none."""
        if isinstance(err, InputErrors):
            for sub in err.errors:
                self.add(sub)
            for file, n in err.more.items():
                self.more[file] = self.more.get(file, 0) + n
            return
        key = (err.file, err.row, err.column)
        if key in self._errors or (secondary and (err.file, err.row) in self._records):
            return
        if self._per_file.get(err.file, 0) >= self.limit:
            if not secondary:
                self._count_unlisted(err.file, err.row, err.column)
            return
        self._per_file[err.file] = self._per_file.get(err.file, 0) + 1
        self._errors[key] = err
        self._records.add((err.file, err.row))

    def _count_unlisted(self, file: str, row: int | None, column: str | None) -> None:
        seen = self._unlisted.setdefault(file, set())
        if (row, column) in seen or (file, row, column) in self._errors:
            return
        if len(seen) < TRACK_UNLISTED:
            seen.add((row, column))
        self.more[file] = self.more.get(file, 0) + 1

    def add_rows(
        self,
        file: str,
        rows: np.ndarray,
        column: str | None,
        values: np.ndarray,
        problems: str | np.ndarray,
        *,
        secondary: bool = False,
    ) -> None:
        """One error per row until the file's cap; rows past it are counted, each cell once
        (beyond TRACK_UNLISTED remembered cells the count is approximate: "about")."""
        per_row = not isinstance(problems, str)
        taken = 0
        for i in range(len(rows)):
            if self._per_file.get(file, 0) >= self.limit:
                break
            taken = i + 1
            value = values[i]
            if not isinstance(value, str) and pd.api.types.is_scalar(value) and pd.isna(value):
                value = None  # missing: NaN, NA or None
            problem = str(problems[i]) if per_row else str(problems)
            err = InputError(file, problem, row=int(rows[i]), column=column, value=value)
            self.add(err, secondary=secondary)
        if secondary or len(rows) == taken:
            return
        room = max(TRACK_UNLISTED - len(self._unlisted.get(file, ())), 0)
        rest = rows[taken:]
        for row in rest[:room].tolist():
            self._count_unlisted(file, int(row), column)
        if len(rest) > room:
            self.more[file] = self.more.get(file, 0) + len(rest) - room

    @property
    def errors(self) -> list[InputError]:
        return sorted(self._errors.values(), key=_sort_key)

    def combined(self, stopped: BaseException | None = None) -> InputError:
        """One error as itself, several as one InputErrors (with what stopped the run)."""
        errors = self.errors
        note = ""
        if stopped is not None:
            note = str(stopped) if isinstance(stopped, CdiscforgeError) else repr(stopped)
        if len(errors) == 1 and not self.more and not note:
            return errors[0]
        if not errors:  # only counted errors (cap 0): name the files
            file = next(iter(self.more))
            errors = [InputError(file, "too many input errors")]
        return InputErrors(errors, self.more, note)

    def raise_if_any(self) -> None:
        if len(self):
            raise self.combined()


class Recorder(ErrorCollector):
    """Records the located input errors reported to it, in order, without judging them
    (no dedupe, no cap): `replay` hands them to another collector later, which then ends in
    exactly the state it would have reached had they been reported to it directly. So a
    dataset built in the second process, or built while another one is (cdiscforge.engine),
    reports its errors where a one-process build puts them: the collector's dedupe, per-file
    cap and `secondary` rule depend on the order."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []

    def __len__(self) -> int:
        return len(self.calls)

    def add(self, *args: Any, **kwargs: Any) -> None:  # ErrorCollector.add's arguments
        self.calls.append(("add", args, kwargs))

    def add_rows(self, *args: Any, **kwargs: Any) -> None:  # ErrorCollector.add_rows's
        self.calls.append(("add_rows", args, kwargs))

    def replay(self, into: ErrorCollector) -> None:
        """Report everything recorded to `into`, in the order it was reported here."""
        for method, args, kwargs in self.calls:
            getattr(into, method)(*args, **kwargs)
        self.calls = []


_ACTIVE: ContextVar[ErrorCollector | None] = ContextVar("cdiscforge_errors", default=None)


class collecting:
    """`with collecting() as found:` records located input errors instead of raising them,
    and raises them all as one error when the block ends. Nested blocks share the outermost
    collector (only it raises). An exception ending the block early after errors were
    collected is reported with them: an InputError joins the list, anything else is named as
    what stopped the build (the bad values found so far are the likely cause)."""

    def __init__(self, limit_per_file: int = MAX_ERRORS_PER_FILE) -> None:
        self.limit = limit_per_file
        self.collector: ErrorCollector
        self._token: Any = None

    def __enter__(self) -> ErrorCollector:
        outer = _ACTIVE.get()
        if outer is not None:
            self.collector = outer
        else:
            self.collector = ErrorCollector(self.limit)
            self._token = _ACTIVE.set(self.collector)
        return self.collector

    def __exit__(
        self,
        typ: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if self._token is None:
            return False
        _ACTIVE.reset(self._token)
        self._token = None
        found = self.collector
        if exc is None:
            found.raise_if_any()
            return False
        if not isinstance(exc, Exception) or not len(found):
            return False  # Ctrl-C, SystemExit; or nothing collected: propagate as it is
        if isinstance(exc, InputError):
            found.add(exc)
            raise found.combined() from exc
        raise found.combined(stopped=exc) from exc


class raising:
    """Within `with raising():` input errors are raised at once even inside `collecting()`:
    for code that tries a fast path and falls back on the first error (dates.py)."""

    def __enter__(self) -> None:
        self._token = _ACTIVE.set(None)

    def __exit__(self, *exc: object) -> None:
        _ACTIVE.reset(self._token)


class recording:
    """`with recording() as rec:` hands the located input errors reported inside the block
    to a `Recorder` (`rec`) instead of the active collector; outside `collecting()` it
    changes nothing (`rec` is None and errors are raised as they are found)."""

    def __enter__(self) -> Recorder | None:
        self._token: Any = None
        if _ACTIVE.get() is None:
            return None
        rec = Recorder()
        self._token = _ACTIVE.set(rec)
        return rec

    def __exit__(self, *exc: object) -> None:
        if self._token is not None:
            _ACTIVE.reset(self._token)


def collector() -> ErrorCollector | None:
    """The active collector, if any."""
    return _ACTIVE.get()


def report(err: InputError) -> None:
    """Record `err` in the active collector, or raise it when none is active."""
    found = _ACTIVE.get()
    if found is None:
        raise err
    found.add(err)


@dataclass(frozen=True)
class Located:
    """Where a series came from, so a bad value can be reported precisely."""

    file: str
    column: str
    rows: np.ndarray | None = None  # 1-based data row numbers aligned with the series

    def row_of(self, position: int) -> int:
        return int(self.rows[position]) if self.rows is not None else position + 1

    def rows_of(self, positions: np.ndarray) -> np.ndarray:
        if self.rows is not None:
            return np.asarray(self.rows)[positions]
        return positions + 1


def raise_first(
    mask: pd.Series,
    values: pd.Series,
    where: Located,
    problem: str,
    *,
    secondary: bool = False,
) -> None:
    """Report the rows where `mask` holds, naming file, row, column and value.

    Inside `collecting()` every such row is recorded (the caller goes on: it must give the
    bad records a value, usually null); outside it the first row is raised, with how many
    more rows share the problem (the programmer fixes them all in one pass). `secondary`:
    see ErrorCollector.add."""
    flags = mask.fillna(False).to_numpy(dtype=bool)
    if not flags.any():
        return
    positions = np.flatnonzero(flags)
    found = _ACTIVE.get()
    if found is not None:
        vals = values.to_numpy(dtype=object)[positions]
        rows = where.rows_of(positions)
        found.add_rows(where.file, rows, where.column, vals, problem, secondary=secondary)
        return
    pos = int(positions[0])
    n = len(positions)
    more = f" ({n - 1} more rows like it)" if n > 1 else ""
    raise InputError(
        where.file, problem + more, row=where.row_of(pos), column=where.column,
        value=values.iloc[pos],
    )  # fmt: skip
