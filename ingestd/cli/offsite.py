"""``replicate`` and ``checkpoint``: off-site copies by hand, as the daemon makes them."""

from __future__ import annotations

import click

from ..errors import DiscrepancyFound, TimestampError, UsageError
from ..usecases.replicate import Replicator
from .base import AppContext, cli, console, esc, json_option, pass_app, print_json


def _replicator(app: AppContext) -> Replicator:
    station = app.station()
    if not station.settings.targets:
        raise UsageError("no [[targets]] are configured: nothing to replicate to")
    replicator = Replicator(station)
    replicator.check()
    return replicator


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), help="At most this many items.")
@json_option
@pass_app
def replicate(app: AppContext, limit: int | None, as_json: bool) -> None:
    """Copy stored items to every off-site target, verify each copy, extend locks."""
    report = _replicator(app).run(limit=limit)
    if as_json:
        print_json(report.as_dict())
    else:
        console.print(report.summary())
        for f in report.failed:
            console.print(f"  [red]failed[/] {f['sha256'][:16]} → {esc(f['target'])}: "
                          f"{esc(f['error'])}")
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)


@cli.command()
@json_option
@pass_app
def checkpoint(app: AppContext, as_json: bool) -> None:
    """Send a signed ledger checkpoint (sequence, head hash) to every target."""
    result = _replicator(app).checkpoint()
    if as_json:
        print_json(result)
    else:
        console.print(f"checkpoint {result['name']} (entry {result['seq']}) sent to "
                      f"{', '.join(result['sent']) or 'no target'}")
        if result["unchanged"]:
            console.print(f"  unchanged since the last checkpoint on "
                          f"{', '.join(result['unchanged'])}")
        for err in result["errors"]:
            console.print(f"  [red]{esc(err)}[/]")
        if result["timestamp"]:
            console.print(f"  time-stamped by {esc(result['timestamp']['tsa'])} at "
                          f"{result['timestamp']['gen_time']}")
        if result["timestamp_error"]:
            console.print(f"  [red]sent without a time-stamp: "
                          f"{esc(result['timestamp_error'])}[/]")
    if result["errors"]:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)
    if result["timestamp_error"]:
        raise click.exceptions.Exit(TimestampError.exit_code)
