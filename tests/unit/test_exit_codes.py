"""The exit codes are written once, in ``ingestd/errors.py``: ``ingestd --help`` and README.md
show the table that ``errors.exit_code_table`` builds from the exception classes."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from click.testing import CliRunner

from ingestd import errors
from ingestd.cli.base import cli
from ingestd.errors import ExitCode, exit_code_table

README = Path(__file__).resolve().parents[2] / "README.md"
HEADER = "| code | error | meaning |"


def markdown(table: list[ExitCode]) -> str:
    rows = [f"| {row.code} | `{row.error}` | {row.meaning} |" for row in table]
    return "\n".join([HEADER, "|---|---|---|", *rows])


def readme_table() -> str:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert lines.count(HEADER) == 1, f"README.md has no single table starting {HEADER}"
    start = lines.index(HEADER)
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])


def test_the_readme_shows_the_table_of_errors_py() -> None:
    expected = markdown(exit_code_table())
    assert readme_table() == expected, f"README.md's exit codes should read:\n\n{expected}\n"


def test_help_ends_with_the_table() -> None:
    shown = CliRunner().invoke(cli, ["--help"], terminal_width=80)
    assert shown.exit_code == 0
    lines = shown.output.splitlines()
    start = lines.index("  Exit codes (0 on success):")
    assert all(len(line) <= 80 for line in lines[start:])
    words = " ".join(" ".join(lines[start + 1:]).split())
    expected = " ".join(f"{row.code} {row.error} {row.meaning}" for row in exit_code_table())
    assert words == expected


def test_the_table_holds_every_error() -> None:
    classes = {name for name, value in vars(errors).items() if isinstance(value, type)
               and issubclass(value, errors.IngestdError | errors.ShutdownRequested)}
    assert sorted(row.error for row in exit_code_table()) == sorted(classes)


def test_each_error_has_its_own_code_but_a_family_and_its_most_common_case() -> None:
    by_code: dict[int, list[type[BaseException]]] = defaultdict(list)
    for row in exit_code_table():
        by_code[row.code].append(getattr(errors, row.error))
    assert 0 not in by_code, "0 is success"
    for code, classes in by_code.items():
        if len(classes) > 1:
            assert len(classes) == 2, (code, classes)
            family, leaf = classes
            assert leaf.__bases__ == (family,), (code, classes)
