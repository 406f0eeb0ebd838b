"""Checks: ``audit`` and ``check-windows`` (``verify`` is in ``verify``, ``ledger verify`` in
``ledger``).

Each exits 1 when anything does not match, after reporting every discrepancy.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..errors import DiscrepancyFound, UsageError
from ..targets.factory import build_targets
from ..usecases.audit import Progress as Tick
from ..usecases.audit import (
    Throttle,
    audit,
    audit_fast,
    coverage,
)
from ..usecases.windows import check_windows
from .base import (
    AppContext,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    plural,
    print_json,
    shown_time,
)


@cli.command("audit")
@click.option("--sample", type=click.IntRange(min=1), help="Re-hash N random items.")
@click.option("--all", "everything", is_flag=True, help="Re-hash every local item.")
@click.option("--decode", type=click.IntRange(min=0), default=1, show_default=True,
              help="Also decode this many of them end to end (spot-check playback).")
@click.option("--offsite", is_flag=True,
              help="Also read the off-site copies back in full and hash them.")
@click.option("--fast", is_flag=True,
              help="Only check that every local item's object is there, at its size, "
                   "without reading it (seconds, not hours; proves less than a re-hash).")
@click.option("--coverage", "cover", is_flag=True,
              help="Show, per store and target, the oldest proof and how many copies are "
                   "past their audit cycle (reads nothing but the catalog).")
@json_option
@pass_app
@click.pass_context
def audit_cmd(ctx: click.Context, app: AppContext, sample: int | None, everything: bool,
              decode: int, offsite: bool, fast: bool, cover: bool, as_json: bool) -> None:
    """Re-hash stored items from disk (and off-site) and decode a sample; record the results.

    With --fast, every local item's object is looked at instead of read: missing, cut short
    or grown objects are found (and flagged fixity_failed), a changed bit is not. With
    --coverage, nothing is read or recorded: exit status 1 when a copy is past its cycle.
    Otherwise exit status 1 when anything is found.
    """
    if cover:
        if sample or everything or offsite or fast:
            raise UsageError("--coverage reads only the catalog: give it alone (or with --json)")
        _coverage(app, as_json)
        return
    if fast:
        given = ctx.get_parameter_source("decode") != click.core.ParameterSource.DEFAULT
        if sample or offsite or given:
            raise UsageError("--fast looks at every local item and reads none: give it "
                             "without --sample, --decode or --offsite")
        _audit_fast(app, as_json)
        return
    if bool(sample) == everything:
        raise UsageError("give --sample N, --all or --fast")
    station = app.station()
    if offsite and not station.settings.targets:
        raise UsageError("--offsite: no [[targets]] are configured")
    targets = build_targets(station.settings) if offsite else []
    with _progress(not as_json) as tick:
        report = audit(station, sample=None if everything else sample, decode=decode,
                       targets=targets, progress=tick,
                       throttle=Throttle(station.settings.audit.max_rate))
    if as_json:
        print_json(report.as_dict())
    else:
        console.print(f"audited {plural(report.checked, 'item')}, decoded {report.decoded}: "
                      f"{'[green]all intact[/]' if report.ok else '[red]FAILURES[/]'}")
        for f in report.failures:
            console.print(f"  {f['sha256'][:16]}: {esc(f['problem'])}")
        for o in report.orphans:
            where = f" (moved to {esc(o['quarantined_to'])})" if "quarantined_to" in o else ""
            console.print(f"  orphan object {o['sha256'][:16]}, {plural(o['size'], 'byte')}, "
                          f"named by no item: {o['action']}{where}")
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)


@contextmanager
def _progress(wanted: bool) -> Iterator[Tick | None]:
    """A progress bar on a terminal (never in --json, nor when the output is not one)."""
    if not wanted or not console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    with Progress(TextColumn("audit"), BarColumn(), MofNCompleteColumn(),
                  TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("audit", total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def _coverage(app: AppContext, as_json: bool) -> None:
    station = app.station(read_only=True)
    rows = coverage(station, build_targets(station.settings))
    if as_json:
        print_json({"coverage": [c.as_dict() for c in rows]})
    else:
        for c in rows:
            where = f"store {esc(c.store)}" if c.store else f"target {esc(c.target or '')}"
            oldest = shown_time(c.oldest_proof, app.tz, none="-")
            state = (f"[red]{c.overdue} past their cycle[/]" if c.overdue
                     else "[green]none past their cycle[/]")
            console.print(f"{where}: {plural(c.copies, 'copy', 'copies')} "
                          f"({c.never_proven} never proven), "
                          f"oldest proof {oldest}, cycle {c.cycle}; {state}")
    if any(c.overdue for c in rows):
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)


def _audit_fast(app: AppContext, as_json: bool) -> None:
    report = audit_fast(app.station())
    if as_json:
        print_json(report.as_dict())
    else:
        verdict = ("[green]every object there, at its size[/]" if report.ok
                   else "[red]FAILURES[/]")
        console.print(f"looked at {plural(report.checked, 'item')} (present, size; not "
                      "re-hashed): "
                      f"{verdict}")
        for found in report.found:
            console.print(f"  {found.item[:16]}: {esc(found.detail)}")
        for odd in report.unexpected:
            console.print(f"  orphan object {odd.item[:16]}, {plural(odd.size, 'byte')}, "
                          "named by no item: not hashed (`ingestd audit --all` checks it)")
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)


@cli.command("check-windows")
@json_option
@pass_app
def check_windows_cmd(app: AppContext, as_json: bool) -> None:
    """Flag items past their label or replication window (the daemon runs this on schedule)."""
    report = check_windows(app.station())
    if as_json:
        print_json({"checked": report.checked, "flagged": report.flagged})
        return
    console.print(f"checked {plural(report.checked, 'item')}, "
                  f"{plural(len(report.flagged), 'new flag')}")
    for f in report.flagged:
        console.print(f"  {f['sha256'][:16]} {f['flag']}")
