"""The fault-injection suite's catalogue and the README's reliability table agree."""

from __future__ import annotations

from pathlib import Path

from tests.faults.catalog import (
    BEGIN,
    END,
    Fault,
    area,
    fault_of,
    faults,
    first_sentence,
    markdown_table,
    readme_table,
    undocumented,
)


def test_a_docstring_names_the_fault_and_what_the_user_sees() -> None:
    assert fault_of("Fault: the registry stalls.\n    User sees: an error | exit 4.") == (
        "the registry stalls.", "an error | exit 4.")
    assert fault_of("Checks something.") is None
    assert fault_of(None) is None


def test_every_test_in_tests_faults_is_documented() -> None:
    assert undocumented() == []


def test_the_readme_table_is_generated_from_the_tests() -> None:
    entries = faults()
    assert any(e.test.startswith("tests/faults/") for e in entries)
    assert any(not e.test.startswith("tests/faults/") for e in entries)  # outage tests too
    assert readme_table() == markdown_table(entries), (
        "README.md's reliability table is stale: run python -m tests.faults.catalog --write")


def test_table_cells_escape_pipes(tmp_path: Path) -> None:
    table = markdown_table([Fault("tests/x/test_y.py::test_z", "a|b", "c")])
    assert "a\\|b" in table and "[`test_z`](tests/x/test_y.py)" in table
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\nold\n{END}\nrest\n")
    assert readme_table(readme) == "old"


def test_the_table_shows_first_sentences_and_areas() -> None:
    assert first_sentence('a (b. C) "d. E" e.g. f. Rest.') == 'a (b. C) "d. E" e.g. f'
    assert first_sentence("one sentence.") == "one sentence"
    assert area("tests/faults/test_build_faults.py::t") == "build"
    assert area("tests/faults/test_api_faults.py::t") == "Kubernetes API"
    assert area("tests/logs/test_logs_kube.py::t") == "logs"
