"""``ingestd ledger``: the custody ledger checked against itself, its mirror, the catalog
and (with ``--offsite``) the checkpoints off-site."""

from __future__ import annotations

import click
from rich.table import Table

from ..errors import DiscrepancyFound, UsageError
from ..targets.factory import build_targets
from ..usecases.checkpoints import verify_checkpoint_records
from ..usecases.replicate import verify_offsite
from .base import AppContext, cli, console, esc, json_option, pass_app, print_json


@cli.group()
def ledger() -> None:
    """The custody ledger."""


@ledger.command("verify")
@click.option("--offsite", is_flag=True,
              help="Also compare with the signed checkpoints held by every target.")
@json_option
@pass_app
def ledger_verify(app: AppContext, offsite: bool, as_json: bool) -> None:
    """Check the whole chain, every signature, the mirror, every catalog row, and every
    published checkpoint the ledger records (with its time-stamp)."""
    # --offsite remembers the newest checkpoint each target holds: that one writes.
    station = app.station(read_only=not offsite)
    report = station.custody.verify()
    report.problems.extend(verify_checkpoint_records(station))
    if offsite:
        if not station.settings.targets:
            raise UsageError("--offsite: no [[targets]] are configured")
        report.problems.extend(verify_offsite(station, build_targets(station.settings)))
    if as_json:
        print_json(report.as_dict())
    elif report.ok:
        console.print(f"[green]ledger intact[/]: {report.entries} entries, head "
                      f"{report.head_seq} {report.head_hash[:16]}")
    else:
        console.print(f"[red]ledger has {len(report.problems)} problems[/] "
                      f"({report.entries} entries):")
        table = Table("kind", "entry", "detail")
        for p in report.problems:
            table.add_row(p.kind, str(p.seq or ""), esc(p.detail))
        console.print(table)
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)
