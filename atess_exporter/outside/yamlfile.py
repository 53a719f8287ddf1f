"""YAML configuration text loaded with bounds, so a hostile file costs little and says why.

PyYAML's safe loader is safe from code execution, not from exhaustion: a
"billion laughs" document of nested aliases expands to gigabytes as soon as
anything walks it, deep nesting overflows the composer's recursion, and a
duplicate key silently wins. Here:

- the file is read up to MAX_BYTES, and must be UTF-8 text (no NUL);
- nesting beyond MAX_DEPTH is refused while streaming events, before composing;
- aliases may add at most ALIAS_BUDGET nodes to the document once expanded,
  and may not be recursive;
- a key given twice in one mapping is refused (merge keys `<<` still work).

Every problem is a YamlRefused with a one-line text (line and column when known).
Every YAML file the exporter reads comes through here: the config, the web
config (also as the healthcheck reads it) and the catalog shipped in the package.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
ALIAS_BUDGET = 100_000  # generous: 1,000 devices each merging a 10-key base (`<<: *base`) fit

_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class YamlRefused(Exception):
    """A file that is not the bounded YAML we read. For a syntax error, `where`
    (" at line L, column C") and `problem` let a caller word it its own way."""

    def __init__(self, text: str, where: str = "", problem: str = ""):
        super().__init__(text)
        self.where, self.problem = where, problem


def _at(mark: Any) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


class _Loader(_Base):  # type: ignore[misc, valid-type]
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                if key in seen:
                    raise YamlRefused(f"duplicate key {_short(key)} given twice{_at(key_node.start_mark)} "
                                      f"(first{_at(seen[key])}); keep one")
            except TypeError:
                continue  # unhashable: the base constructor reports it
            seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def read_text(path: str) -> str:
    """The file's text, refused when too large, binary or not UTF-8."""
    with open(path, "rb") as fh:
        data = fh.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlRefused(f"larger than {MAX_BYTES // (1024 * 1024)} MiB; a configuration is a few KB of YAML text")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data:
        raise YamlRefused("not UTF-8 text (binary, or UTF-16); save it as UTF-8")
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise YamlRefused(f"not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); save it as UTF-8") from None


def _check_events(text: str) -> None:
    depth = 0
    for event in yaml.parse(text, Loader=_Base):
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_DEPTH:
                raise YamlRefused(f"nested too deep{_at(event.start_mark)} (at most {MAX_DEPTH} levels); flatten it")
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


def _check_aliases(root: yaml.Node) -> None:
    """Refuse a document whose aliases would add more than ALIAS_BUDGET nodes once expanded."""
    sizes: dict[int, int] = {}
    distinct = 0
    # Iterative post-order walk over distinct nodes; a node met again while open is a cycle.
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        ident = id(node)
        if done:
            open_nodes.discard(ident)
            total = 1
            for child in _children(node):
                total += sizes[id(child)]
            sizes[ident] = total
            continue
        if ident in sizes:
            continue
        if ident in open_nodes:
            raise YamlRefused(f"recursive alias{_at(node.start_mark)}; an anchor cannot contain itself")
        open_nodes.add(ident)
        distinct += 1
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise YamlRefused(f"recursive alias{_at(child.start_mark)}; an anchor cannot contain itself")
            if id(child) not in sizes:
                stack.append((child, False))
    if sizes[id(root)] > distinct + ALIAS_BUDGET:
        raise YamlRefused(f"aliases expand to {sizes[id(root)]:,} nodes (at most {ALIAS_BUDGET:,} more than written); "
                          "use fewer or smaller aliases")


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_yaml_file(path: str) -> Any:
    """The document in the file at `path`; OSError when it cannot be read, else YamlRefused."""
    return load_yaml(read_text(path))


def load_yaml(text: str) -> Any:
    """The document in `text`, or YamlRefused."""
    try:
        _check_events(text)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _check_aliases(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except YamlRefused:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        if "nesting depth" in problem:  # libyaml's own limit (1000), met while scanning ahead
            raise YamlRefused(f"nested too deep{_at(mark)} (at most {MAX_DEPTH} levels); flatten it") from None
        raise YamlRefused(f"YAML syntax error{_at(mark)}: {problem}; fix the indentation or quoting there",
                          _at(mark), problem) from None
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        # e.g. an integer longer than Python converts
        raise YamlRefused(f"cannot be read as YAML ({type(exc).__name__}: {str(exc)[:120]})") from None
