"""Reading resource files: YAML (several documents per file) or JSON, with line numbers.

Every document keeps a map from field path to line, so a validation message can point at
the line to edit. Syntax errors name the line and column; duplicate keys, which YAML
parsers silently collapse, are errors too.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ebbtide.core.errors import SpecError

FieldPath = tuple[str | int, ...]
RESOURCE_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class Document:
    """One parsed document of a file, with the line of each field (1-based)."""

    data: Any
    source: str
    index: int = 0
    lines: dict[FieldPath, int] = field(default_factory=dict)

    def line_of(self, path: FieldPath) -> int | None:
        """The line of `path`, or of its nearest enclosing field that has one."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get(())


def read_text(path: str) -> tuple[str, str]:
    """The text of a file, or of standard input for `-`; returns (text, source name)."""
    if path == "-":
        return sys.stdin.read(), "<stdin>"
    file = Path(path)
    if not file.exists():
        raise SpecError(f"{path}: no such file or directory")
    try:
        return file.read_text(encoding="utf-8"), path
    except UnicodeDecodeError as error:
        raise SpecError(f"{path}: not a UTF-8 text file ({error.reason})") from None
    except OSError as error:
        raise SpecError(f"{path}: cannot be read: {error.strerror}") from None


def resource_files(path: str) -> list[str]:
    """`path` itself, or for a directory its .yaml/.yml/.json files in name order (like kubectl)."""
    file = Path(path)
    if path != "-" and file.is_dir():
        found = sorted(str(p) for p in file.iterdir() if p.suffix in RESOURCE_SUFFIXES)
        if not found:
            raise SpecError(f"{path}: the directory holds no .yaml, .yml or .json file")
        return found
    return [path]


def parse_documents(text: str, source: str) -> list[Document]:
    """Every non-empty document in `text`. JSON is parsed as JSON for exact error positions."""
    if source.endswith(".json") or text.lstrip().startswith(("{", "[")):
        return _parse_json(text, source)
    return _parse_yaml(text, source)


YAML_FIX = "check indentation and quoting"


def _malformed(message: str, fix: str) -> SpecError:
    """A file that does not parse: one problem, the message with its fix."""
    return SpecError(message, [f"error: {message}\n  fix: {fix}"])


def _parse_json(text: str, source: str) -> list[Document]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise _malformed(
            f"{source}:{error.lineno}:{error.colno}: malformed JSON: {error.msg}",
            f"check the quotes, commas and brackets around line {error.lineno}",
        ) from None
    items = data if isinstance(data, list) else [data]
    return [Document(item, source, index) for index, item in enumerate(items)]


def _parse_yaml(text: str, source: str) -> list[Document]:
    documents: list[Document] = []
    try:
        for node in yaml.compose_all(text, Loader=yaml.SafeLoader):
            if node is None:
                continue
            lines: dict[FieldPath, int] = {}
            _record_lines(node, (), lines, source)
            loader = yaml.SafeLoader("")
            data = loader.construct_document(node)
            if data is None:
                continue
            documents.append(Document(data, source, len(documents), lines))
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark else source
        what = error.problem or error.context or "invalid YAML"
        raise _malformed(f"{where}: malformed YAML: {what}", YAML_FIX) from None
    except yaml.YAMLError as error:
        raise _malformed(f"{source}: malformed YAML: {error}", YAML_FIX) from None
    return documents


def _record_lines(
    node: yaml.Node, path: FieldPath, lines: dict[FieldPath, int], source: str
) -> None:
    lines[path] = node.start_mark.line + 1
    for key, child in _children(node, path, source):
        _record_lines(child, (*path, key), lines, source)


def _children(
    node: yaml.Node, path: FieldPath, source: str
) -> Iterator[tuple[str | int, yaml.Node]]:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                where = ".".join(str(part) for part in (*path, key))
                line = key_node.start_mark.line + 1
                message = f"{source}:{line}: {where}: the key appears twice in one mapping"
                raise SpecError(message, [f"error: {message}\n  fix: keep one of the two"])
            seen.add(key)
            yield key, value_node
    elif isinstance(node, yaml.SequenceNode):
        yield from enumerate(node.value)
