"""``ingestd status``: the station at a glance, rendered from the status model
(``usecases/status``), which a terminal table and ``--json`` both show."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from rich.table import Table

from ..domain.canonical import format_time
from ..domain.status import ReplicaStats
from ..usecases.status import Dock
from ..usecases.status import status as station_status
from .base import (
    AppContext,
    cli,
    console,
    esc,
    human_size,
    json_option,
    pass_app,
    print_json,
)


@cli.command()
@json_option
@pass_app
def status(app: AppContext, as_json: bool) -> None:
    """Storage, items by state and flag, recent docks, last jobs."""
    station = app.station(read_only=True)
    state = station_status(station)
    if as_json:
        print_json(state.to_json())
        return
    counts, store = state.counts, state.store
    console.print(f"[bold]station {esc(state.station)}[/]")
    console.print(f"store {esc(store.path)}: {store.items} items, "
                  f"{human_size(store.bytes)}; {human_size(store.free)} free of "
                  f"{human_size(store.total)}")
    console.print(f"items: {counts.items} ({human_size(counts.bytes)}), "
                  f"{counts.labelled} labelled; {state.recorders} recorders registered")
    if counts.acquisitions:
        console.print("acquisitions: " + ", ".join(
            f"{k} {v}" for k, v in sorted(counts.acquisitions.items())))
    if counts.flags:
        console.print("flags: " + ", ".join(
            f"[yellow]{k}[/] {v}" for k, v in sorted(counts.flags.items())))
    else:
        console.print("flags: none")
    if state.docks:
        _print_docks(state.docks)
    for name, t in state.targets.items():
        _print_target(name, t)
    for name, standing in state.worm.items():
        if standing.passed:
            console.print(f"target {esc(name)}: WORM held at {_shown(standing.checked_at)}")
        else:
            console.print(f"target {esc(name)}: [bold red]CRITICAL: WORM check FAILED[/] at "
                          f"{_shown(standing.checked_at)}: its copies do not count as safe "
                          f"(entry {standing.ledger_seq})")
    for key, check in state.checks.named():
        label = _CHECK_LABELS[key]
        if check is None:
            console.print(f"last {label}: never run")
            continue
        console.print(f"last {label}: {_outcome(check.ok, '[green]ok[/]', '[red]FAILED[/]')} "
                      f"at {_shown(check.at)}: {esc(check.summary)}")
    for job in state.jobs:
        console.print(f"job {job.job}: {_outcome(job.ok, 'ok', 'FAILED')} at "
                      f"{_shown(job.started_at)} {esc(job.summary)}")


_CHECK_LABELS = {"ledger": "ledger check", "audit": "audit", "audit_offsite": "off-site audit"}


def _shown(moment: datetime) -> str:
    """A stored time as status prints it: to the second, UTC."""
    return format_time(moment)[:19]


def _outcome(ok: bool | None, good: str, bad: str) -> str:
    return good if ok else bad if ok is False else "running"


def _print_target(name: str, t: ReplicaStats) -> None:
    line = (f"target {esc(name)}: {t.verified} verified ({t.proven} read back), "
            f"{t.queued} queued, {t.in_flight} in flight, {t.failed} failed")
    if t.oldest_waiting:
        line += (f"; oldest waiting {t.oldest_waiting.sha256[:12]} "
                 f"(due {_shown(t.oldest_waiting.deadline)})")
    console.print(line)
    if t.last_error:
        console.print(f"  [red]last error[/] {_shown(t.last_error.at)}: "
                      f"{esc(t.last_error.error)}")


def _print_docks(docks: Sequence[Dock]) -> None:
    table = Table("dock", "recorder", "via", "state", "docked", "new", "known", "failed",
                  "skip", title="recent docks")
    for d in docks:
        s = d.session
        table.add_row(str(s.id), esc(s.serial), s.source, d.state, _shown(s.docked_at),
                      str(s.files_new), str(s.files_known), str(s.files_failed),
                      str(s.files_skipped))
    console.print(table)
    for d in docks:
        s = d.session
        if d.process_gone:
            console.print(f"dock {s.id} ({esc(s.serial)}): [red]interrupted[/]: its "
                          "process is gone; the recorder's files are taken at its next dock")
        # Files left on a recorder may be footage: each dock that left some says what.
        if s.files_skipped:
            console.print(f"dock {s.id} ({esc(s.serial)}): [yellow]"
                          f"{s.files_skipped} files not taken[/]: " + ", ".join(
                              f"{k} {n}" for k, n in s.skipped.items()))
