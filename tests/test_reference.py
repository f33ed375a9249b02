"""The spec author's reference: every rule and generator documented, every example run
through the real rule code, docs/rules.md current, `cdiscforge rules` on the terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cdiscforge import reference

ROOT = Path(__file__).resolve().parent.parent
ENTRIES = reference.entries()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdiscforge.cli", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_every_rule_and_generator_has_purpose_descriptions_and_an_example() -> None:
    missing = reference.gaps()
    assert not missing, (
        f"{len(missing)} gap(s) in the rule reference (add the docstring, the "
        "Field(description=...) or the example file cdiscforge/rules/examples/<name>.yaml, "
        "format in cdiscforge/reference.py):\n  " + "\n  ".join(missing)
    )


def test_the_registry_holds_rules_and_generators() -> None:
    kinds = {e.kind for e in ENTRIES}
    assert kinds == {"rule", "generator"}
    names = {e.name for e in ENTRIES}
    assert {"assign", "ct", "seq", "window", "count_records", "subject_elements"} <= names


@pytest.mark.parametrize("entry", [e for e in ENTRIES if e.example_file.is_file()],
                         ids=lambda e: e.name)  # fmt: skip
def test_example_holds_through_the_real_rule(entry: reference.Entry) -> None:
    example = entry.example()
    assert example is not None, f"{entry.example_file} is not a mapping"
    problems = reference.run_example(entry, example)
    assert not problems, f"{entry.example_file.name}: " + "; ".join(problems)


def test_a_wrong_expectation_fails() -> None:
    """The runner compares for real: a changed value, a missing log line, a generator
    column that does not match are each reported."""
    by_name = {e.name: e for e in ENTRIES}
    assign = by_name["assign"]
    example = assign.example()
    assert example is not None
    example["expect"] = ["Headache", "Nausea", "WRONG"]
    assert reference.run_example(assign, example) == [
        "expect: wanted ['Headache', 'Nausea', 'WRONG'], got ['Headache', 'Nausea', None]"
    ]
    age = by_name["age"]
    example = age.example() or {}
    example["expect_log"] = "no such message"
    assert "no build-log message" in reference.run_example(age, example)[0]
    counts = by_name["count_records"]
    example = counts.example() or {}
    example["expect"]["AVAL"] = [2, 0, 2]
    assert (
        "expect.AVAL: wanted [2, 0, 2], got [2, 0, 1]" in reference.run_example(counts, example)[0]
    )


def test_an_example_with_a_spec_error_is_reported_located() -> None:
    entry = next(e for e in ENTRIES if e.name == "coalesce")
    example = {"spec": {"name": "X", "rule": "coalesce", "refs": []}, "expect": []}
    (problem,) = reference.run_example(entry, example)
    assert "coalesce.yaml" in problem and "spec.refs" in problem


def test_docs_rules_md_is_generated_and_current() -> None:
    doc = ROOT / "docs" / "rules.md"
    assert doc.read_text(encoding="utf-8") == reference.markdown(), (
        "docs/rules.md is stale: regenerate it with `cdiscforge rules --markdown > docs/rules.md`"
    )
    text = doc.read_text(encoding="utf-8")
    for entry in ENTRIES:
        assert f"### {entry.name}\n" in text


def test_rules_on_the_terminal() -> None:
    listing = _cli("rules")
    assert listing.returncode == 0, listing.stderr
    for entry in ENTRIES:
        assert f"  {entry.name} " in listing.stdout
    one = _cli("rules", "lookup")
    assert one.returncode == 0, one.stderr
    assert "| `match` | mapping text -> text | required |" in one.stdout
    assert "vs_tests" in one.stdout  # its example
    unknown = _cli("rules", "lookpu")
    assert unknown.returncode == 2
    assert "unknown rule or generator 'lookpu'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    markdown = _cli("rules", "--markdown")
    assert markdown.returncode == 0
    assert markdown.stdout == (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
