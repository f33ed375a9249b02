"""Error types with locations.

A statistical programmer fixing a failed build needs to know *where*: which file, which key
path in a spec, which row and column of a raw export, which value. Every error cdiscforge
raises for bad input carries those fields, and the CLI maps the class to an exit code
(2 for bad input, spec or usage; 1 for a failed validation).
"""

from __future__ import annotations

from typing import Any


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
