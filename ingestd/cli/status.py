"""``ingestd status``: the station at a glance. The tables are :mod:`.status_view`'s,
imported only when they are printed; ``--json`` prints the status model as it is."""

from __future__ import annotations

import click

from ..errors import UsageError
from ..usecases.status import status as station_status
from .base import AppContext, cli, json_option, pass_app, print_json


@cli.command()
@click.option("--watch", is_flag=True,
              help="Show the status again every --interval, in place on a terminal (Ctrl-C "
                   "stops); when the output is not a terminal, printed anew each time.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=5.0, show_default=True,
              metavar="SECONDS", help="How often --watch reads the status.")
@json_option
@pass_app
@click.pass_context
def status(ctx: click.Context, app: AppContext, watch: bool, interval: float,
           as_json: bool) -> None:
    """Storage, items by state and flag, recent docks, targets, last checks and jobs."""
    given = ctx.get_parameter_source("interval") != click.core.ParameterSource.DEFAULT
    if given and not watch:
        raise UsageError("--interval goes with --watch")
    if watch and as_json:
        raise UsageError("--watch shows the tables; --json prints the status once: give one "
                         "of them")
    station = app.station(read_only=True)
    if as_json:
        print_json(station_status(station).to_json())
        return
    from .base import console
    from .status_view import render, watch_status

    if not watch:
        console.print(render(station_status(station), app.tz))
        return
    try:
        watch_status(lambda: render(station_status(station), app.tz, watching=interval),
                     interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends: a clean exit
