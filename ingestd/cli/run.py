"""``run``: the daemon in the foreground (systemd ``Type=notify``)."""

from __future__ import annotations

import sys

import click

from ..app.daemon import Daemon
from ..app.jobs import run_job, standard_jobs
from ..app.signals import hold_signals
from ..domain.records import SessionState
from ..usecases.docking import Outcome, scan_once
from ..usecases.ingest import IngestReport
from ..usecases.replicate import Replicator
from .base import AppContext, cli, console, esc, human_size, pass_app, plural, setup_logging


@cli.command()
@click.option("--once", is_flag=True,
              help="Serve every recorder docked now and run each job once, then exit.")
@pass_app
def run(app: AppContext, once: bool) -> None:
    """Run the docking-station daemon in the foreground."""
    if not once:
        hold_signals()  # the command line did, as it began; again for a caller of main()
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
        console.print(f"recorder {esc(outcome.serial or '?')}: {_outcome(outcome)}")
    failed = [j.name for j in standard_jobs(station) if not run_job(station, j)]
    console.print(_totals(outcomes, failed))
    if failed or any(o.state == SessionState.FAILED for o in outcomes):
        raise click.exceptions.Exit(1)


def _counts(reports: list[IngestReport]) -> str:
    new = sum(1 for r in reports for i in r.items if i.new)
    files = sum(len(r.items) for r in reports)
    return (f"{new} new, {files - new} known, {sum(len(r.skipped) for r in reports)} not "
            f"taken, {sum(len(r.errors) for r in reports)} failed "
            f"({human_size(sum(r.bytes_copied for r in reports))} copied)")


def _outcome(outcome: Outcome) -> str:
    """What became of one recorder: its files, or why none were taken."""
    said = str(outcome.state)
    if outcome.report is not None:
        said += f", {plural(len(outcome.report.items), 'file')}: {_counts([outcome.report])}"
        if outcome.wiped:
            said += f"; {outcome.wiped} wiped"
    if outcome.error:
        said += f": {esc(outcome.error)}"
    return said


def _totals(outcomes: list[Outcome], failed_jobs: list[str]) -> str:
    reports = [o.report for o in outcomes if o.report is not None]
    line = (f"served {plural(len(outcomes), 'recorder')}: {_counts(reports)}"
            if outcomes else "no recorder docked")
    turned = sum(1 for o in outcomes if o.state == SessionState.REFUSED)
    if turned:
        line += f"; {turned} refused"
    return line + (f"; jobs failed: {', '.join(failed_jobs)}" if failed_jobs
                   else "; every job ran")
