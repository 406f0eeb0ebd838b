"""The plain table long listings are written as, a page at a time."""

from __future__ import annotations

import pytest
from rich.cells import cell_len

from ingestd.cli.base import print_rows


def test_pages_line_up_under_the_first_and_names_cannot_reach_the_terminal(
        capsys: pytest.CaptureFixture[str]) -> None:
    pages = [[["a1", "张三张三张三", "x"]], [["b2", "Li Si" + "!" * 60, "\x1b[2Jgone\x07"]]]
    assert print_rows(("id", "officer", "name"), pages) == 2
    header, rule, first, second = capsys.readouterr().out.splitlines()
    # Six double-width characters are 12 cells: the last column starts at cell 18 on every
    # line, the second page's long cell cut to the first page's width.
    assert rule == "──  " + "─" * 12 + "  ────"
    assert header == "id  officer       name"
    assert first == "a1  张三张三张三  x"
    assert second.startswith("b2  Li Si!!!!!!…  ")
    assert cell_len(second[:second.index("\ufffd")]) == 18
    # A name's control characters never reach the terminal; its text does.
    assert "\x1b" not in second and "\x07" not in second and "gone" in second


def test_no_rows_still_has_a_header(capsys: pytest.CaptureFixture[str]) -> None:
    assert print_rows(("id", "name"), []) == 0
    assert capsys.readouterr().out == "id  name\n"
