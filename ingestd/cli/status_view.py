"""What ``ingestd status`` prints on a terminal: the tables, rendered from the status model
(``usecases/status``), which these tables, ``--json`` and the web page all show. Imported
only to print them: ``status --json`` loads no rich.

Each part of the view is one section: a function of the status and the zone times are shown
in, giving something rich can print (or None, when it has nothing to say). A new fact in the
model is shown by one more function in :data:`SECTIONS`. Tables fit the terminal's width:
cells wrap, but an item's hash is never cut below the 8 digits a command accepts.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, tzinfo

from rich import box
from rich.columns import Columns
from rich.console import Console, ConsoleOptions, Group, RenderableType
from rich.measure import Measurement
from rich.table import Column, Table
from rich.text import Text

from ..usecases.status import Dock, StationStatus
from .base import (
    PREFIX_DIGITS,
    console,
    esc,
    human_size,
    plural,
    shown_time,
)

#: How many digits of a hash status shows when there is room; never fewer than PREFIX_DIGITS.
HASH_SHOWN = 12

Section = Callable[[StationStatus, tzinfo], RenderableType | None]


def watch_status(view: Callable[[], RenderableType], interval: float) -> None:
    """``view`` every ``interval`` seconds: redrawn in place on a terminal, else printed
    anew each time (a log or a pipe gets one status after the other), until interrupted."""
    if not console.is_terminal:
        while True:
            console.print(view())
            console.print()
            console.file.flush()
            time.sleep(interval)
    from rich.live import Live  # only to redraw a terminal in place

    with Live(view(), console=console, auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            live.update(view(), refresh=True)


def render(state: StationStatus, tz: tzinfo, *, watching: float | None = None) -> Group:
    """The whole view: each section that has something to show, in order."""
    head = Text.from_markup(f"[bold]station {esc(state.station)}[/]", emoji=False)
    if watching is not None:
        head.append(f"  at {shown_time(datetime.now(UTC), tz)}, every {watching:g} s "
                    "(Ctrl-C stops)", style="dim")
    parts: list[RenderableType] = [head]
    for section in SECTIONS:
        shown = section(state, tz)
        if shown is not None:
            parts.append(shown)
    return Group(*parts)


class Fitted:
    """A table that fits the width it is given: as a table where its columns fit whole (the
    last one, with ``wrap_last``, wrapped as it must), else each row as one wrapped line of
    ``header value`` pairs, so that no cell (a serial, a time, a hash) is ever cut short on a
    narrow terminal."""

    #: With ``wrap_last``: the least room the last column must have for a table.
    LAST_MIN = 24

    def __init__(self, title: str, columns: Sequence[str | Column], *,
                 wrap_last: bool = False) -> None:
        self.title = title
        self.columns = [c if isinstance(c, Column) else Column(c) for c in columns]
        self.wrap_last = wrap_last
        self.rows: list[tuple[str, ...]] = []

    def add_row(self, *cells: str) -> None:
        self.rows.append(cells)

    def table(self, *, measuring: bool = False) -> Table:
        table = Table(title=self.title, title_justify="left", box=box.SIMPLE_HEAD,
                      pad_edge=False)
        last = len(self.columns) - 1
        for i, column in enumerate(self.columns):
            wraps = self.wrap_last and i == last
            table.add_column(column.header, justify=column.justify, no_wrap=not wraps,
                             min_width=column.min_width)
        for row in self.rows:
            if measuring and self.wrap_last:
                cut = Text.from_markup(row[-1], emoji=False)
                cut.truncate(self.LAST_MIN)
                table.add_row(*row[:-1], cut)
            else:
                table.add_row(*row)
        return table

    def __rich_console__(self, console: Console,
                         options: ConsoleOptions) -> Iterator[RenderableType]:
        unbounded = options.update_width(10**6)
        natural = Measurement.get(console, unbounded, self.table(measuring=True)).maximum
        if natural <= options.max_width:
            yield self.table()
            return
        yield Text(self.title, style="italic")
        for row in self.rows:
            first, *rest = row
            # Each pair stays whole on its line: a time or a hash is never split.
            head = esc(str(self.columns[0].header))
            pairs = [Text.from_markup(f"[bold]{head} {first}[/]", emoji=False)] + [
                Text.from_markup(f"[dim]{esc(str(c.header))}[/] {cell}", emoji=False)
                for c, cell in zip(self.columns[1:], rest, strict=True) if cell]
            yield Columns(pairs, padding=(0, 2))


def hash_cell(sha256: str) -> str:
    return sha256[:HASH_SHOWN]


def hash_column(header: str) -> Column:
    """A column of hashes: never wrapped, and never narrower than the digits a command
    accepts (``PREFIX_DIGITS``), whatever the terminal's width."""
    return Column(header, no_wrap=True, overflow="crop", min_width=PREFIX_DIGITS)


def _lines(lines: Iterator[str]) -> RenderableType | None:
    texts = [Text.from_markup(line, emoji=False) for line in lines]
    return Group(*texts) if texts else None


# -- the sections ----------------------------------------------------------------------------


def _overview(state: StationStatus, tz: tzinfo) -> RenderableType:
    counts, store = state.counts, state.store
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column(overflow="fold")  # a long path folds, never cut
    grid.add_row("store", f"{esc(store.path)}: {plural(store.items, 'item')}, "
                          f"{human_size(store.bytes)}; {human_size(store.free)} free of "
                          f"{human_size(store.total)}")
    grid.add_row("items", f"{counts.items} ({human_size(counts.bytes)}), "
                          f"{counts.labelled} labelled")
    grid.add_row("recorders", f"{plural(state.recorders, 'recorder')} registered")
    if counts.acquisitions:
        grid.add_row("acquisitions", ", ".join(
            f"{k} {v}" for k, v in sorted(counts.acquisitions.items())))
    grid.add_row("flags", ", ".join(
        f"[yellow]{k}[/] {v}" for k, v in sorted(counts.flags.items())) or "none")
    return grid


def _docks(state: StationStatus, tz: tzinfo) -> RenderableType | None:
    if not state.docks:
        return None
    table = Fitted("recent docks", [
        "dock", "recorder", "via", "state", "docked", Column("new", justify="right"),
        Column("known", justify="right"), Column("failed", justify="right"),
        Column("skipped", justify="right")])
    for d in state.docks:
        s = d.session
        table.add_row(str(s.id), esc(s.serial), s.source, _dock_state(d),
                      shown_time(s.docked_at, tz), str(s.files_new), str(s.files_known),
                      str(s.files_failed), str(s.files_skipped))
    notes = _lines(_dock_notes(state.docks))
    return table if notes is None else Group(table, notes)


def _dock_state(dock: Dock) -> str:
    colour = {"done": "green", "running": "cyan"}.get(dock.state, "red")
    return f"[{colour}]{dock.state}[/]"


def _dock_notes(docks: tuple[Dock, ...]) -> Iterator[str]:
    for d in docks:
        s = d.session
        who = f"dock {s.id} ({esc(s.serial) or 'no serial'})"
        if d.process_gone:
            yield (f"{who}: [red]interrupted[/]: its process is gone; the recorder's files "
                   "are taken at its next dock")
        elif s.error and d.state != "running":
            # A refused or failed dock says why: nothing was copied from it, or not all.
            yield f"{who}: [red]{d.state}[/]: {esc(s.error)}"
        # Files left on a recorder may be footage: each dock that left some says what.
        if s.files_skipped:
            yield (f"{who}: [yellow]{plural(s.files_skipped, 'file')} not taken[/]: "
                   + ", ".join(f"{k} {n}" for k, n in s.skipped.items()))


def _targets(state: StationStatus, tz: tzinfo) -> RenderableType | None:
    if not state.targets and not state.worm:
        return None
    parts: list[RenderableType] = []
    if state.targets:
        table = Fitted("off-site targets", [
            "target", Column("verified", justify="right"),
            Column("read back", justify="right"), Column("queued", justify="right"),
            Column("in flight", justify="right"), Column("failed", justify="right"),
            hash_column("oldest waiting"), "due"])
        for name, t in state.targets.items():
            oldest = t.oldest_waiting
            table.add_row(esc(name), str(t.verified), str(t.proven), str(t.queued),
                          str(t.in_flight), f"[red]{t.failed}[/]" if t.failed else "0",
                          hash_cell(oldest.sha256) if oldest else "",
                          shown_time(oldest.deadline, tz) if oldest else "")
        parts.append(table)
    notes = _lines(_target_notes(state, tz))
    if notes is not None:
        parts.append(notes)
    return Group(*parts)


def _target_notes(state: StationStatus, tz: tzinfo) -> Iterator[str]:
    for name, t in state.targets.items():
        if t.last_error:
            yield (f"target {esc(name)}: [red]last error[/] {shown_time(t.last_error.at, tz)}: "
                   f"{esc(t.last_error.error)}")
    for name, standing in state.worm.items():
        at = shown_time(standing.checked_at, tz)
        if standing.passed:
            yield f"target {esc(name)}: WORM held at {at}"
        else:
            yield (f"target {esc(name)}: [bold red]CRITICAL: WORM check FAILED[/] at {at}: its "
                   f"copies do not count as safe (entry {standing.ledger_seq})")


_CHECK_LABELS = {"ledger": "ledger check", "audit": "audit", "audit_offsite": "off-site audit"}


def _checks(state: StationStatus, tz: tzinfo) -> RenderableType | None:
    def lines() -> Iterator[str]:
        for key, check in state.checks.named():
            label = _CHECK_LABELS[key]
            if check is None:
                yield f"last {label}: never run"
                continue
            yield (f"last {label}: {_outcome(check.ok, '[green]ok[/]', '[red]FAILED[/]')} at "
                   f"{shown_time(check.at, tz)}: {esc(check.summary)}")

    return _lines(lines())


def _jobs(state: StationStatus, tz: tzinfo) -> RenderableType | None:
    if not state.jobs:
        return None
    table = Fitted("last run of each job", ["job", "result", "started", "summary"],
                   wrap_last=True)
    for job in state.jobs:
        table.add_row(esc(job.job), _outcome(job.ok, "[green]ok[/]", "[red]FAILED[/]"),
                      shown_time(job.started_at, tz), esc(job.summary))
    return table


def _outcome(ok: bool | None, good: str, bad: str) -> str:
    return good if ok else bad if ok is False else "running"


#: The view, in the order it is shown.
SECTIONS: tuple[Section, ...] = (_overview, _docks, _targets, _checks, _jobs)
