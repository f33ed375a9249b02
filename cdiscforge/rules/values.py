"""Computed values: `arithmetic` (a small, safe expression language) and `date_shift`.

`arithmetic` exists so a conversion that is not a plain factor (degrees F to C, BMI from
weight and height) is written as the formula a reviewer reads, not as a rounded factor and
offset. The expression is parsed by the tiny recursive-descent parser below when the spec
loads, never evaluated as Python: numbers, references (target variables, `_helpers`,
`raw.COLUMN`), `+ - * /`, unary minus and parentheses, nothing else. A syntax error or a
reference to no variable of the dataset is a located spec error at load.

`date_shift` gives an ISO 8601 date an interval away from another (a planned date from a
reference date, a window end), calendar-aware for months and years.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdiscforge.rules import Params, RuleContext, rule
from cdiscforge.rules.words import Words, describes

MAX_EXPR = 2000  # characters: a formula, not a program
MAX_DEPTH = 50  # nested parentheses / unary minus

_TOKEN = re.compile(
    r"\s*(?:(?P<num>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?)"
    r"|(?P<ref>(?:raw\.)?[A-Za-z_][A-Za-z0-9_]*)|(?P<op>[-+*/()]))"
)


@dataclass(frozen=True)
class Num:
    value: float
    text: str  # as written (method text shows 32, not 32.0)


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Neg:
    operand: Node


@dataclass(frozen=True)
class Bin:
    op: str
    left: Node
    right: Node


Node = Num | Ref | Neg | Bin


class ExprError(ValueError):
    """An arithmetic expression that cannot be parsed (located by the spec loader)."""


@lru_cache(maxsize=512)
def parse(expr: str) -> Node:
    """`expr` as a syntax tree; ExprError naming the character where it goes wrong.

    Grammar: expr := term (('+'|'-') term)*; term := unary (('*'|'/') unary)*;
    unary := '-' unary | '+' unary | primary; primary := number | reference | '(' expr ')'.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ExprError("an expression is needed, e.g. (raw.TEMP - 32) * 5 / 9")
    if len(expr) > MAX_EXPR:
        raise ExprError(f"expression longer than {MAX_EXPR} characters")
    tokens: list[tuple[str, str, int]] = []
    pos = 0
    while pos < len(expr):
        if expr[pos:].strip() == "":
            break
        match = _TOKEN.match(expr, pos)
        if match is None or match.end() == pos:
            bad = expr[pos:].lstrip()[:1]
            at = len(expr) - len(expr[pos:].lstrip()) + 1
            raise ExprError(f"unexpected {bad!r} at character {at} of {expr!r}")
        kind = match.lastgroup or ""
        tokens.append((kind, match.group(kind), match.start(kind) + 1))
        pos = match.end()
    parser = _Parser(expr, tokens)
    node = parser.expr(0)
    if parser.i < len(tokens):
        _, text, at = tokens[parser.i]
        raise ExprError(f"unexpected {text!r} at character {at} of {expr!r}")
    if isinstance(_fold(node), Num) and _fold(node).value != _fold(node).value:  # NaN
        raise ExprError(f"{expr!r} divides by zero")
    return node


class _Parser:
    def __init__(self, expr: str, tokens: list[tuple[str, str, int]]) -> None:
        self.text = expr
        self.tokens = tokens
        self.i = 0

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _fail(self, what: str) -> ExprError:
        if self.i < len(self.tokens):
            _, text, at = self.tokens[self.i]
            return ExprError(f"expected {what}, got {text!r} at character {at} of {self.text!r}")
        return ExprError(f"expected {what} at the end of {self.text!r}")

    def expr(self, depth: int) -> Node:
        node = self.term(depth)
        while self._peek() in ("+", "-"):
            op = self.tokens[self.i][1]
            self.i += 1
            node = Bin(op, node, self.term(depth))
        return node

    def term(self, depth: int) -> Node:
        node = self.unary(depth)
        while self._peek() in ("*", "/"):
            op = self.tokens[self.i][1]
            self.i += 1
            node = Bin(op, node, self.unary(depth))
        return node

    def unary(self, depth: int) -> Node:
        if depth > MAX_DEPTH:
            raise ExprError(f"{self.text!r} nests deeper than {MAX_DEPTH} levels")
        if self._peek() == "-":
            self.i += 1
            return Neg(self.unary(depth + 1))
        if self._peek() == "+":
            self.i += 1
            return self.unary(depth + 1)
        return self.primary(depth)

    def primary(self, depth: int) -> Node:
        if self.i >= len(self.tokens):
            raise self._fail("a number, a reference or (")
        kind, text, _ = self.tokens[self.i]
        if kind == "num":
            self.i += 1
            return Num(float(text), text)
        if kind == "ref":
            self.i += 1
            return Ref(text)
        if text == "(":
            self.i += 1
            node = self.expr(depth + 1)
            if self._peek() != ")":
                raise self._fail(")")
            self.i += 1
            return node
        raise self._fail("a number, a reference or (")


def _fold(node: Node) -> Node:
    """Constant sub-expressions folded (only to find a division by a constant zero)."""
    if isinstance(node, Neg):
        inner = _fold(node.operand)
        return Num(-inner.value, "") if isinstance(inner, Num) else node
    if isinstance(node, Bin):
        left, right = _fold(node.left), _fold(node.right)
        if isinstance(right, Num) and node.op == "/" and right.value == 0:
            return Num(float("nan"), "")
        if isinstance(left, Num) and isinstance(right, Num):
            ops = {"+": left.value + right.value, "-": left.value - right.value,
                   "*": left.value * right.value}  # fmt: skip
            return Num(ops.get(node.op, left.value / right.value if right.value else 0.0), "")
        return node
    return node


def references(node: Node) -> list[str]:
    """The references of an expression, in order of appearance, each once."""
    out: list[str] = []
    if isinstance(node, Ref):
        out.append(node.name)
    elif isinstance(node, Neg):
        out += references(node.operand)
    elif isinstance(node, Bin):
        out += references(node.left) + references(node.right)
    return list(dict.fromkeys(out))


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def render(node: Node, ref: Any, times: str = "x") -> str:
    """The expression in words for define.xml: references through `ref`, `*` as `times`,
    only the parentheses the meaning needs."""

    def go(n: Node, parent: int, right: bool, parent_op: str) -> str:
        if isinstance(n, Num):
            return n.text
        if isinstance(n, Ref):
            return ref(n.name)
        if isinstance(n, Neg):
            return "-" + go(n.operand, 3, False, "")
        prec = _PRECEDENCE[n.op]
        text = f"{go(n.left, prec, False, n.op)} {times if n.op == '*' else n.op} "
        text += go(n.right, prec, True, n.op)
        needs = prec < parent or (right and prec == parent and parent_op in ("-", "/"))
        return f"({text})" if needs else text

    return go(node, 0, False, "")


# --- arithmetic ---------------------------------------------------------------------------


class ArithmeticParams(Params):
    """A value computed from references and constants with + - * / and parentheses, e.g.
    degrees Fahrenheit to Celsius; written as the formula itself so define.xml shows it and
    no rounded factor hides in the spec."""

    expr: str = Field(
        description="the formula: numbers, references (variables, _helpers, raw.COLUMN), "
        "+ - * /, unary minus, parentheses; e.g. (raw.TEMP - 32) * 5 / 9"
    )
    round: int | None = Field(
        None, ge=0, le=15, description="decimal places to round the result to (none: unrounded)"
    )

    @field_validator("expr")
    @classmethod
    def _parsed(cls, value: str) -> str:
        try:
            parse(value)
        except ExprError as exc:
            raise ValueError(str(exc)) from None
        return value

    def raw_columns(self) -> list[str]:
        return [r[4:] for r in references(parse(self.expr)) if r.startswith("raw.")]

    def variable_refs(self) -> list[tuple[str, str]]:
        return [("expr", r) for r in references(parse(self.expr)) if not r.startswith("raw.")]


@rule("arithmetic", ArithmeticParams)
def arithmetic(ctx: RuleContext, p: ArithmeticParams) -> pd.Series:
    """The expression's value per record, rounded to `round` decimals.

    Cases, in order: a referenced value missing -> null; a referenced value that is not a
    number -> input error naming the row and value (null while errors are collected); a
    division by zero -> null, counted as a build-log warning; otherwise the value.

    Example: `{name: VSSTRESN, rule: arithmetic, expr: "(raw.TEMP - 32) * 5 / 9", round: 1}`.
    """
    zero = pd.Series(False, index=ctx.out.index)

    def value(node: Node) -> Any:
        nonlocal zero
        if isinstance(node, Num):
            return node.value
        if isinstance(node, Ref):
            return _numbers(ctx, node.name)
        if isinstance(node, Neg):
            return -value(node.operand)
        left, right = value(node.left), value(node.right)
        if node.op == "+":
            return left + right
        if node.op == "-":
            return left - right
        if node.op == "*":
            return left * right
        if not isinstance(right, pd.Series):
            right = pd.Series(right, index=ctx.out.index, dtype="Float64")
        by_zero = (right == 0).fillna(False).astype(bool)
        zero |= by_zero
        return left / right.mask(by_zero)

    result = value(parse(p.expr))
    if not isinstance(result, pd.Series):
        result = pd.Series(result, index=ctx.out.index)
    result = pd.to_numeric(result, errors="coerce").astype("Float64")
    ctx.report(zero & result.isna(), f"division by zero in {p.expr}: set to null", warn=True)
    return result.round(p.round) if p.round is not None else result


def _numbers(ctx: RuleContext, reference: str) -> pd.Series:
    values = ctx.ref(reference)
    nums = pd.to_numeric(values, errors="coerce")
    ctx.input_error(
        values.notna() & nums.isna(), reference.removeprefix("raw."), values, "not a number"
    )
    return nums.astype("Float64")


@describes("arithmetic")
def _say_arithmetic(p: ArithmeticParams, w: Words) -> str:
    text = render(parse(p.expr), w.ref)
    if p.round is not None:
        text += f", rounded to {p.round} decimal" + ("" if p.round == 1 else "s")
    return text + "; null when a value is missing or a divisor is zero"


# --- date_shift -----------------------------------------------------------------------------


class AmountRef(BaseModel):
    """`{var: REF}`: a per-record amount from a variable or raw column."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    var: str = Field(description="the variable (or raw.COLUMN) holding each record's amount")


class DateShiftParams(Params):
    """An ISO 8601 date an interval before or after another date (a negative amount goes
    back): a planned date or window end from a reference date, calendar-aware, so the
    spec states the interval instead of precomputing dates."""

    date: str = Field(description="the ISO 8601 date (or datetime) variable, or raw.COLUMN")
    amount: int | AmountRef = Field(
        description="whole number of units to add (negative: subtract), or {var: REF}"
    )
    unit: Literal["days", "weeks", "months", "years"] = Field(
        description="days, weeks, months or years (a month from Jan 31 is Feb 28/29)"
    )

    def raw_columns(self) -> list[str]:
        refs = [self.date] + ([self.amount.var] if isinstance(self.amount, AmountRef) else [])
        return [r[4:] for r in refs if r.startswith("raw.")]

    def variable_refs(self) -> list[tuple[str, str]]:
        refs = [("date", self.date)]
        if isinstance(self.amount, AmountRef):
            refs.append(("amount.var", self.amount.var))
        return [(k, r) for k, r in refs if not r.startswith("raw.")]


@rule("date_shift", DateShiftParams)
def date_shift(ctx: RuleContext, p: DateShiftParams) -> pd.Series:
    """`date` plus `amount` `unit`s, as ISO 8601 (a time part is kept as it was).

    Cases, in order: date or amount missing -> null; a partial date (YYYY, YYYY-MM) or
    text that is no ISO 8601 date -> null, counted as a warning; a per-record amount that
    is not a whole number -> null, counted as a warning; months and years keep the day of
    the month, or take the month's last day when it has fewer (Jan 31 + 1 month = Feb 28;
    Feb 29 + 1 year = Feb 28), counted in the build log.

    Example: `{name: _WINEND, rule: date_shift, date: RFSTDTC, amount: 14, unit: days}`.
    """
    text = ctx.ref(p.date).astype("string").str.strip()
    day = pd.to_datetime(text.str.slice(0, 10), format="%Y-%m-%d", errors="coerce")
    complete = text.str.match(r"^\d{4}-\d{2}-\d{2}(T|$)").fillna(False).astype(bool)
    day = day.where(complete)
    unreadable = text.notna() & day.isna()
    ctx.report(unreadable, "partial or unreadable date: shifted date left null", warn=True,
               examples=text[unreadable].unique().tolist()[:3])  # fmt: skip
    if isinstance(p.amount, AmountRef):
        raw = pd.to_numeric(ctx.ref(p.amount.var), errors="coerce").astype("Float64")
        whole = raw.notna() & (raw == raw.round(0)).fillna(False)
        ctx.report(raw.notna() & ~whole, "amount not a whole number: shifted date left null",
                   warn=True)  # fmt: skip
        amount = raw.where(whole)
    else:
        amount = pd.Series(float(p.amount), index=text.index, dtype="Float64")
    known = day.notna() & amount.notna()
    out = pd.Series(pd.NA, index=text.index, dtype="string")
    if not known.any():
        return out
    d, n = day[known], amount[known].astype("int64").to_numpy()
    if p.unit in ("days", "weeks"):
        shifted = d + pd.to_timedelta(n * (7 if p.unit == "weeks" else 1), unit="D")
    else:
        months = n * (12 if p.unit == "years" else 1)
        total = d.dt.year.to_numpy() * 12 + d.dt.month.to_numpy() - 1 + months
        year, month = total // 12, total % 12 + 1
        first = pd.to_datetime(
            pd.DataFrame({"year": year, "month": month, "day": 1}), errors="coerce"
        )
        last = first.dt.days_in_month.to_numpy()
        dom = np.minimum(d.dt.day.to_numpy(), np.nan_to_num(last, nan=31).astype(int))
        shifted = pd.Series(first.to_numpy(), index=d.index) + pd.to_timedelta(dom - 1, unit="D")
        clamped = pd.Series(d.dt.day.to_numpy() > dom, index=d.index)
        ctx.report(clamped.reindex(text.index, fill_value=False),
                   "day of month past the month's end: the month's last day used")  # fmt: skip
    iso = shifted.dt.strftime("%Y-%m-%d").astype("string")
    out[known] = iso + text[known].str.slice(10)
    return out


@describes("date_shift")
def _say_date_shift(p: DateShiftParams, w: Words) -> str:
    if isinstance(p.amount, AmountRef):
        amount = f"{w.ref(p.amount.var)} {p.unit}"
        return f"{w.ref(p.date)} plus {amount}, in ISO 8601; null when the date is partial" + (
            "; a month past its last day takes the month's last day"
            if p.unit in ("months", "years")
            else ""
        )
    unit = p.unit if abs(p.amount) != 1 else p.unit.rstrip("s")
    way = "after" if p.amount >= 0 else "before"
    text = (
        f"{abs(p.amount)} {unit} {way} {w.ref(p.date)}, in ISO 8601; null when the date is partial"
    )
    if p.unit in ("months", "years"):
        text += "; a day past the month's end takes the month's last day"
    return text
