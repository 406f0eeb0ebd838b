"""``audit`` shows its progress on a terminal, and nothing when its output is not one or is
``--json``."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from ingestd.cli import checks


def test_a_terminal_gets_a_progress_bar(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(checks, "console", Console(file=out, force_terminal=True, width=80))
    with checks._progress(True) as tick:
        assert tick is not None
        tick(1, 3)
        tick(3, 3)
    assert "3/3" in out.getvalue()


@pytest.mark.parametrize("terminal", [True, False])
def test_json_or_a_pipe_gets_nothing(monkeypatch: pytest.MonkeyPatch, terminal: bool) -> None:
    out = io.StringIO()
    monkeypatch.setattr(checks, "console", Console(file=out, force_terminal=terminal))
    with checks._progress(not terminal) as tick:  # --json on a terminal; text to a pipe
        assert tick is None
    assert out.getvalue() == ""
