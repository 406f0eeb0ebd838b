"""The status view's tables fit any width: as a table when the columns fit whole, else row
by row, and never with a hash cut below the 8 digits a command accepts, a serial or a time
cut at all."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ingestd.cli.status_view import Fitted, hash_cell, hash_column

SHA = "3fa9c2e1" + "b" * 56
WHEN = "2026-11-01 01:30:00+08:00"


def rendered(width: int) -> str:
    table = Fitted("off-site targets", ["target", "verified", "queued",
                                        hash_column("oldest waiting"), "due"])
    table.add_row("offsite-ceph-archive", "12", "3", hash_cell(SHA), WHEN)
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(table)
    return out.getvalue()


@pytest.mark.parametrize("width", [40, 60, 80, 100, 200])
def test_every_width_shows_the_hash_time_and_name_whole(width: int) -> None:
    text = rendered(width)
    assert max(len(line) for line in text.splitlines()) <= width
    assert SHA[:12] in text and WHEN in text and "offsite-ceph-archive" in text
    assert "…" not in text


def test_a_wide_terminal_gets_a_table_and_a_narrow_one_rows_of_pairs() -> None:
    wide = rendered(200).splitlines()
    assert any("oldest waiting" in line and "due" in line for line in wide)
    assert any(SHA[:12] in line and WHEN in line for line in wide)
    narrow = rendered(40)
    assert f"oldest waiting {SHA[:12]}" in narrow and f"due {WHEN}" in narrow
