"""``ingestd targets``: the off-site targets themselves (``targets check``: does WORM hold?)."""

from __future__ import annotations

import click

from ..errors import DiscrepancyFound, UsageError
from ..usecases.worm import check_worm, promises_worm
from .base import (
    AppContext,
    actor_option,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    print_json,
)


@cli.group()
def targets() -> None:
    """The off-site targets."""


@targets.command("check")
@click.option("--sample", type=click.IntRange(min=0), default=None,
              help="Real copies per target whose lock is read back "
                   "(default: scheduler.worm_check_sample).")
@actor_option
@json_option
@pass_app
def targets_check(app: AppContext, sample: int | None, actor: str, as_json: bool) -> None:
    """Prove WORM holds on every target with object_lock = true: a locked canary must refuse
    deletion and a shorter retention, and real copies must carry their recorded locks.

    Each run is a signed worm_checked entry. Exit status 1 when a target fails (or cannot
    be reached): a target that fails is critical, and its copies no longer count as safe.
    """
    station = app.station()
    if not promises_worm(station.settings):
        raise UsageError("no target has object_lock = true: nothing to check")
    report = check_worm(station, sample=sample, actor=actor)
    if as_json:
        print_json(report.as_dict())
    else:
        for check in report.checks:
            if check.passed is None:
                console.print(f"target {esc(check.target)}: [red]not reached[/]: "
                              f"{esc(check.error or '')}")
                continue
            verdict = ("[green]WORM holds[/]" if check.passed
                       else "[bold red]CRITICAL: WORM FAILED[/]")
            console.print(f"target {esc(check.target)}: {verdict} (entry {check.ledger_seq})")
            for attempt in check.attempts:
                mark = "held" if attempt.held else "[red]LET THROUGH[/]"
                what = f"{attempt.probe} {attempt.item[:12]}" if attempt.item else attempt.probe
                console.print(f"  {what}: {mark}: {esc(attempt.detail)}")
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)
