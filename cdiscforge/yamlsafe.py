"""Reading spec YAML safely: strict UTF-8, bounded depth and size, no duplicate keys.

`yaml.safe_load` refuses to build arbitrary Python objects, but it still accepts four things
that hurt a spec: bytes that are not UTF-8 (a traceback), nesting thousands deep (a
RecursionError), an alias bomb ("billion laughs": a few hundred bytes whose aliases expand to
billions of nodes; whatever walks the result runs out of memory) and a mapping key written
twice (YAML keeps the second without a word, so a copy-pasted `SITEID:` silently replaces
the first). Each is refused here with the line, column and key path where it happens, in
time and memory proportional to the file's size.

Aliases themselves stay allowed (a spec may reuse a value list with `&name` / `*name`); only
the *expanded* size of the document is bounded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

MAX_DEPTH = 64  # collections inside collections; the bundled specs need fewer than 10
MAX_NODES = 1_000_000  # nodes after expanding every alias; the bundled specs hold < 20,000
MERGE_TAG = "tag:yaml.org,2002:merge"


class SpecYAMLError(yaml.MarkedYAMLError):
    """A YAML document refused by the guards, with the key path where it happened."""

    def __init__(self, problem: str, mark: Any, key_path: str) -> None:
        super().__init__(problem=problem, problem_mark=mark)
        self.key_path = key_path


class NotUTF8(Exception):
    """The file's bytes are not UTF-8: line (1-based), byte offset in the file and the bytes."""

    def __init__(self, line: int, column: int, offset: int, sample: bytes) -> None:
        self.line, self.column, self.offset, self.sample = line, column, offset, sample
        super().__init__(f"line {line}, byte {offset}")


def decode_utf8(data: bytes) -> str:
    """The text of a spec file; a byte-order mark is dropped. Raises NotUTF8 naming the line
    and byte of the first invalid sequence (a Latin-1 / Windows-1252 save is the usual cause)."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line_start = data.rfind(b"\n", 0, exc.start) + 1
        line = data.count(b"\n", 0, exc.start) + 1
        sample = data[max(line_start, exc.start - 10) : exc.end + 10]
        raise NotUTF8(line, exc.start - line_start + 1, exc.start, sample) from exc


def _key_path(parts: list[Any]) -> str:
    """`a.b[3].c`; a path deeper than 12 keys keeps its first and last 4 around `...`."""
    if len(parts) > 12:
        return f"{_key_path(parts[:4])}...({len(parts) - 8} levels)...{_key_path(parts[-4:])}"
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Guards(Composer):
    """A composer that counts depth and expanded size and refuses duplicate keys.

    The composer is the one recursive stage of PyYAML (one Python frame per nesting level),
    so the depth limit is checked before each descent; the expanded size of every node
    (an alias counts as the whole node it names) is summed as children arrive, so an alias
    bomb is refused at the first collection that passes MAX_NODES, long before anything
    downstream walks it.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)  # type: ignore[call-arg]
        self._depth = 0
        self._path: list[Any] = []
        self._size: dict[int, int] = {}  # id(node) -> nodes after alias expansion

    def _refuse(self, problem: str, mark: Any) -> SpecYAMLError:
        return SpecYAMLError(problem, mark, _key_path(self._path))

    def _grow(self, total: int, child: Node, mark: Any) -> int:
        """`total` plus the expanded size of `child` (written at `mark`: for an alias, where
        the alias is, not the node it names), refused past MAX_NODES."""
        total += self._size.get(id(child), 1)
        if total > MAX_NODES:
            raise self._refuse(
                f"the document expands to more than {MAX_NODES:,} nodes through its aliases "
                "(an alias bomb?); a spec never needs that many",
                mark,
            )
        return total

    def compose_document(self) -> Node:
        node = super().compose_document()
        self._size = {}
        return node

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        if self.check_event(AliasEvent):
            event = self.get_event()
            if event.anchor not in self.anchors:
                raise ComposerError(
                    None, None, f"found undefined alias {event.anchor!r}", event.start_mark
                )
            return self.anchors[event.anchor]
        event = self.peek_event()
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        self.descend_resolver(parent, index)
        if self.check_event(ScalarEvent):
            node: Node = self.compose_scalar_node(anchor)
        else:
            self._depth += 1
            if self._depth > MAX_DEPTH:
                raise self._refuse(
                    f"nested more than {MAX_DEPTH} levels deep; a spec never needs that",
                    event.start_mark,
                )
            if self.check_event(SequenceStartEvent):
                node = self.compose_sequence_node(anchor)
            else:
                node = self.compose_mapping_node(anchor)
            self._depth -= 1
        self.ascend_resolver()
        return node

    def compose_sequence_node(self, anchor: str | None) -> SequenceNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(SequenceNode, None, start.implicit)
        node = SequenceNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        total, index = 1, 0
        while not self.check_event(SequenceEndEvent):
            self._path.append(index)
            mark = self.peek_event().start_mark
            child = self.compose_node(node, index)
            node.value.append(child)
            total = self._grow(total, child, mark)
            self._path.pop()
            index += 1
        node.end_mark = self.get_event().end_mark
        self._size[id(node)] = total
        return node

    def compose_mapping_node(self, anchor: str | None) -> MappingNode:
        start = self.get_event()
        tag = start.tag
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, start.implicit)
        node = MappingNode(tag, [], start.start_mark, None, flow_style=start.flow_style)
        if anchor is not None:
            self.anchors[anchor] = node
        seen: dict[str, Any] = {}
        total = 1
        while not self.check_event(MappingEndEvent):
            key = self.compose_node(node, None)
            name = key.value if isinstance(key, ScalarNode) else None
            if name is not None and key.tag != MERGE_TAG:
                if name in seen:
                    first = seen[name]
                    self._path.append(name)
                    raise self._refuse(
                        f"duplicate key {name!r}: first at line {first.line + 1}, again at "
                        f"line {key.start_mark.line + 1} (YAML would silently keep the "
                        "second)",
                        key.start_mark,
                    )
                seen[name] = key.start_mark
            self._path.append(name if name is not None else "?")
            mark = self.peek_event().start_mark
            value = self.compose_node(node, key)
            node.value.append((key, value))
            total = self._grow(self._grow(total, key, key.start_mark), value, mark)
            self._path.pop()
        node.end_mark = self.get_event().end_mark
        self._size[id(node)] = total
        return node


class GuardedLoader(_Guards, yaml.SafeLoader):
    """SafeLoader (pure Python) through the guards: the reference, and the one whose error
    messages (with the snippet of the offending line) a spec author reads."""


if yaml.__with_libyaml__:
    from yaml._yaml import CParser  # type: ignore[import-not-found]

    class _FastGuardedLoader(_Guards, CParser, SafeConstructor, Resolver):  # type: ignore[misc]
        """The same guards on events from libyaml's scanner and parser (C): the pure-Python
        scanner was most of loading a study's specs (5.9 of 9.4 s under cProfile), run on
        every build and every test. Only well-formed documents are taken from here: on any
        YAML error the document is parsed again by GuardedLoader, so what a spec author is
        told stays exactly the same."""

        def __init__(self, stream: str) -> None:
            CParser.__init__(self, stream)
            SafeConstructor.__init__(self)
            Resolver.__init__(self)
            Composer.__init__(self)
            self._depth = 0
            self._path = []
            self._size = {}


def _load(loader_class: type, text: str) -> Any:
    loader = loader_class(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_text(text: str) -> Any:
    """Parse one YAML document through the guards (raises yaml.YAMLError subclasses)."""
    if yaml.__with_libyaml__:
        try:
            return _load(_FastGuardedLoader, text)
        except yaml.YAMLError:
            pass  # told by the pure-Python loader below, with its marks and snippet
    return _load(GuardedLoader, text)


def load_file(path: Path) -> Any:
    """Read and parse a spec file: NotUTF8, FileNotFoundError or yaml.YAMLError on failure."""
    return load_text(decode_utf8(path.read_bytes()))
