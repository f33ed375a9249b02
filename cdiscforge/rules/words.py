"""Plain-English method text for define.xml: each rule says what it did, in a reviewer's words.

A rule registers a `describe(params, words) -> str` that returns a phrase built from its
parameters (no trailing full stop). `Words` turns the parameters' references into words a
reviewer can follow: a variable by its name, a raw column as "X as collected", a helper
variable (a name starting with `_`, never submitted) by what the helper itself holds, a spec
table by its name in words, a condition as a sentence. Nothing of Python shows through:
no reprs, no brackets, no helper names, no spec file names.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cdiscforge.rules import Condition, Params, RuleDef

_OPS = {"lt": "is below", "le": "is at most", "gt": "is above", "ge": "is at least"}
_TEXT_OPS = {
    "startswith": "starts with",
    "endswith": "ends with",
    "contains": "contains",
    "matches": "matches the text pattern",
}


@dataclass
class Words:
    """Reference resolution for method text, per dataset.

    `helpers` maps a helper variable to (rule, params, spec method): a parameter that names
    the helper is described by the helper's own method text or rule phrase. `placeholders`
    fill `{studyid}`-style constants.
    """

    target: str = ""
    helpers: dict[str, tuple[RuleDef | None, Params | None, str | None]] = field(
        default_factory=dict
    )
    placeholders: dict[str, str] = field(default_factory=dict)
    usubjid_separator: str = "-"
    # The USUBJID template's parts in words (study.yaml `usubjid`); empty: the old rule.
    usubjid_parts: tuple[str, ...] = ()
    # What a `from:` column belongs to: ("form", name), ("table", name), ("dataset", name)
    # or ("generator", name), from the dataset's record blocks.
    records: tuple[str, str] = ("form", "")
    _seen: set[str] = field(default_factory=set)

    def ref(self, reference: str | None) -> str:
        """A variable by name, a raw column as collected, a helper by what it holds."""
        if not reference:
            return "null"
        if reference.startswith("raw."):
            return self.column(reference[4:])
        if reference.startswith("_"):
            return self._helper(reference)
        return reference

    def column(self, name: str) -> str:
        """A column of the record source: collected, a spec table's, a predecessor's."""
        kind, source = self.records
        if kind == "table":
            return f"{name.replace('_', ' ')} of {self.table(source)}"
        if kind == "dataset":
            return f"{source}.{name}"
        if kind == "generator":
            return f"{name} of the {source.replace('_', ' ')} the build derives"
        return f"{name} as collected"

    def source(self, raw: str | None, var: str | None) -> str:
        """The input of a `from:` (raw column) / `var:` (variable) rule."""
        return self.column(raw) if raw else self.ref(var)

    def refs(self, references: Iterable[str]) -> str:
        return join([self.ref(r) for r in references])

    def value(self, value: Any) -> str:
        """A literal: null for None, Y/N style text as is, placeholders filled."""
        if value is None:
            return "null"
        if isinstance(value, bool):
            return "Y" if value else "N"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        text = str(value)
        if "{" in text:
            try:
                text = text.format(**self.placeholders)
            except (KeyError, IndexError, ValueError):
                text = text.replace("{", "").replace("}", "")
        return text

    def table(self, name: str) -> str:
        return f"the study's {name.replace('_', ' ')} table"

    def condition(self, cond: Condition | None) -> str:
        """A condition as words: `AEONGO as collected is Y and ...`."""
        if cond is None:
            return "always"
        if cond.all is not None:
            return join([self.condition(c) for c in cond.all], last="and")
        if cond.any is not None:
            return join([self.condition(c) for c in cond.any], last="or")
        if cond.not_ is not None:
            return f"it is not the case that {self.condition(cond.not_)}"
        subject = self.ref(cond.col)
        parts: list[str] = []
        if cond.missing is not None:
            parts.append("is missing" if cond.missing else "is present")
        if cond.eq is not None:
            parts.append(f"is {self.operand(cond.eq)}")
        if cond.ne is not None:
            parts.append(f"is not {self.operand(cond.ne)}")
        if cond.in_ is not None:
            parts.append(f"is one of {self.values(cond.in_)}")
        if cond.not_in is not None:
            parts.append(f"is none of {self.values(cond.not_in)}")
        for op, verb in _OPS.items():
            bound = getattr(cond, op)
            if bound is not None:
                parts.append(f"{verb} {self.operand(bound)}")
        for op, verb in _TEXT_OPS.items():
            text = getattr(cond, op)
            if text is not None:
                parts.append(f'{verb} "{text}"')
        return f"{subject} {join(parts, last='and') or 'is given'}"

    def operand(self, value: Any) -> str:
        """A condition's right side: `{var: REF}` by its reference, else the literal."""
        if isinstance(value, dict):
            return self.ref(value["var"]) if "var" in value else self.value(value.get("value"))
        return self.value(value)

    def values(self, values: Iterable[Any]) -> str:
        # Case variants of one value (Not evaluable / NOT EVALUABLE) read as one.
        seen: dict[str, str] = {}
        for v in values:
            text = self.operand(v)
            seen.setdefault(text.upper(), text)
        return join(list(seen.values()), last="or")

    def _helper(self, name: str) -> str:
        rdef, params, method = self.helpers.get(name, (None, None, None))
        if method:
            return clean(method)
        if rdef is None or params is None or name in self._seen:
            return "a working value of the mapping"
        self._seen.add(name)
        try:
            return describe_rule(rdef, params, self, target=name)
        finally:
            self._seen.discard(name)


def join(items: list[str], last: str = "and") -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = [i for i in items if i]
    if len(items) <= 2:
        return f" {last} ".join(items)
    return ", ".join(items[:-1]) + f" {last} " + items[-1]


def clean(text: str) -> str:
    return " ".join(text.split()).rstrip(".")


def describe_rule(rdef: RuleDef, params: Params, words: Words, *, target: str = "") -> str:
    """The rule's phrase for these parameters (its own `describe`, else its one-line contract
    without code markup)."""
    previous, words.target = words.target, target or words.target
    try:
        if rdef.describe is not None:
            return clean(rdef.describe(params, words))
        summary = " ".join(rdef.doc.split("\n\n")[0].split())
        return clean(summary.replace("`", ""))
    finally:
        words.target = previous


def method_text(target: str, rdef: RuleDef, params: Params, words: Words) -> str:
    """`AESEQ: sequential number of the record within USUBJID, ordered by AESTDTC.`"""
    return f"{target}: {describe_rule(rdef, params, words, target=target)}."


Describer = Callable[[Any, Words], str]


def describes(
    name: str, *, origin_of: Callable[[Any], str] | None = None
) -> Callable[[Describer], Describer]:
    """Attach a method-text renderer (and an optional parameter-dependent origin) to the
    registered rule `name`; used beside each rule module's vocabulary."""

    def deco(fn: Describer) -> Describer:
        from dataclasses import replace

        from cdiscforge.rules import RULES

        RULES[name] = replace(
            RULES[name], describe=fn, origin_of=origin_of or RULES[name].origin_of
        )
        return fn

    return deco
