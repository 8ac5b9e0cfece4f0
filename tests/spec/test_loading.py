from pathlib import Path

import pytest

from ebbtide.core.errors import SpecError
from ebbtide.spec import parse_documents, read_text, resource_files


def test_multi_document_yaml_keeps_lines() -> None:
    text = "a: 1\nb:\n  c: 2\n---\nd: 3\n---\n"
    first, second = parse_documents(text, "x.yaml")
    assert first.data == {"a": 1, "b": {"c": 2}}
    assert first.line_of(("b", "c")) == 3
    assert second.data == {"d": 3}
    assert second.index == 1


def test_malformed_yaml_names_line_and_column() -> None:
    with pytest.raises(SpecError, match=r"x.yaml:2:2: malformed YAML"):
        parse_documents("a: [1\nb: 2\n", "x.yaml")


def test_malformed_json_names_line_and_column() -> None:
    with pytest.raises(SpecError, match=r"x.json:2:1: malformed JSON") as raised:
        parse_documents('{"a": 1,\n}', "x.json")
    assert "fix: check the quotes, commas and brackets around line 2" in raised.value.problems[0]


def test_duplicate_keys_are_errors() -> None:
    with pytest.raises(SpecError, match="appears twice"):
        parse_documents("spec:\n  a: 1\n  a: 2\n", "x.yaml")


def test_json_list_is_several_documents() -> None:
    documents = parse_documents('[{"a": 1}, {"b": 2}]', "x.json")
    assert [d.data for d in documents] == [{"a": 1}, {"b": 2}]


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        read_text(str(tmp_path / "nope.yaml"))


def test_directory_lists_resource_files_in_order(tmp_path: Path) -> None:
    for name in ["b.yaml", "a.json", "notes.txt"]:
        (tmp_path / name).write_text("{}")
    assert [Path(p).name for p in resource_files(str(tmp_path))] == ["a.json", "b.yaml"]


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    file = tmp_path / "x.yaml"
    file.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="not a UTF-8 text file"):
        read_text(str(file))
