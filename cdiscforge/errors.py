"""Error types with locations.

A statistical programmer fixing a failed build needs to know *where*: which file, which key
path in a spec, which row and column of a raw export, which value. Every error cdiscforge
raises for bad input carries those fields, and the CLI maps the class to an exit code
(2 for bad input, spec or usage; 1 for a failed validation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


class CdiscforgeError(Exception):
    """Base class: a problem the user can fix; the CLI prints it without a traceback."""

    exit_code = 2


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


@dataclass(frozen=True)
class Located:
    """Where a series came from, so a bad value can be reported precisely."""

    file: str
    column: str
    rows: np.ndarray | None = None  # 1-based data row numbers aligned with the series

    def row_of(self, position: int) -> int:
        return int(self.rows[position]) if self.rows is not None else position + 1


def raise_first(mask: pd.Series, values: pd.Series, where: Located, problem: str) -> None:
    """Raise an InputError at the first True of `mask`, naming file, row, column and value,
    and how many more rows share the problem (the programmer fixes them all in one pass)."""
    flags = mask.fillna(False).to_numpy(dtype=bool)
    if not flags.any():
        return
    pos = int(np.flatnonzero(flags)[0])
    n = int(flags.sum())
    more = f" ({n - 1} more rows like it)" if n > 1 else ""
    raise InputError(
        where.file, problem + more, row=where.row_of(pos), column=where.column,
        value=values.iloc[pos],
    )  # fmt: skip
