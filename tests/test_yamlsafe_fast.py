"""yamlsafe reads specs through libyaml's C parser when PyYAML has it, with the same guards:
the result must be the pure-Python GuardedLoader's, and a refused or malformed document must
be told exactly as the pure-Python loader tells it (its marks and snippet)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cdiscforge import yamlsafe

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILES = sorted((ROOT / "specs").rglob("*.yaml"))


def _pure(text: str):
    loader = yamlsafe.GuardedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _typed(value):
    """The value with every scalar's type, so 1 and 1.0 and '1' differ."""
    if isinstance(value, dict):
        return [(_typed(k), _typed(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_typed(v) for v in value]
    return (type(value).__name__, value)


def test_libyaml_is_used_when_present() -> None:
    assert hasattr(yamlsafe, "_FastGuardedLoader") == bool(yaml.__with_libyaml__)


@pytest.mark.parametrize("path", SPEC_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bundled_specs_load_the_same(path: Path) -> None:
    text = yamlsafe.decode_utf8(path.read_bytes())
    assert _typed(yamlsafe.load_text(text)) == _typed(_pure(text))


BAD = {
    "duplicate key": "a: 1\nb:\n  c: 2\n  c: 3\n",
    "alias bomb": 'a: &a ["x","x","x","x","x","x","x","x","x","x"]\n'
    + "".join(
        f"{n}: &{n} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]\n"
        for p, n in zip("abcdef", "bcdefg", strict=True)
    )
    + "h: [*g, *g]\n",
    "too deep": "x: " + "[" * (yamlsafe.MAX_DEPTH + 1) + "]" * (yamlsafe.MAX_DEPTH + 1) + "\n",
    "syntax": "a: 1\n b: 2\n",
    "tab indent": "a:\n\t- 1\n",
    "undefined alias": "a: *nowhere\n",
    "duplicate anchor": "a: &x 1\nb: &x 2\n",
    "bad scalar": 'a: "unterminated\n',
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_refusals_are_told_as_the_pure_loader_tells_them(case: str) -> None:
    text = BAD[case]
    with pytest.raises(yaml.YAMLError) as pure:
        _pure(text)
    with pytest.raises(yaml.YAMLError) as fast:
        yamlsafe.load_text(text)
    assert type(fast.value) is type(pure.value)
    assert str(fast.value) == str(pure.value)
    assert getattr(fast.value, "key_path", None) == getattr(pure.value, "key_path", None)
