"""``run``: the daemon in the foreground (systemd ``Type=notify``)."""

from __future__ import annotations

import sys

import click

from ..app.daemon import Daemon
from ..app.jobs import run_job, standard_jobs
from ..domain.records import SessionState
from ..usecases.docking import scan_once
from ..usecases.replicate import Replicator
from .base import AppContext, cli, console, esc, pass_app, setup_logging


@cli.command()
@click.option("--once", is_flag=True,
              help="Serve every recorder docked now and run each job once, then exit.")
@pass_app
def run(app: AppContext, once: bool) -> None:
    """Run the docking-station daemon in the foreground."""
    settings = app.settings
    # The daemon logs to stdout (journald); --once keeps stdout for its report.
    setup_logging(max(app.verbose, 1), fmt=settings.log.format,
                  level=None if app.verbose else settings.log.level,
                  stream=None if once else sys.stdout)
    station = app.station()
    daemon = Daemon(station)
    if not once:
        raise click.exceptions.Exit(daemon.run())
    if settings.targets:
        Replicator(station).check()  # as `run` does: a target that cannot serve stops it here
    daemon.recover()
    outcomes = scan_once(station)
    for outcome in outcomes:
        console.print(f"recorder {esc(outcome.serial or '?')}: {outcome.state} "
                      f"{esc(outcome.error)}")
    failed = [j.name for j in standard_jobs(station) if not run_job(station, j)]
    if failed or any(o.state == SessionState.FAILED for o in outcomes):
        raise click.exceptions.Exit(1)
