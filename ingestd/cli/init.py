"""``init``: create a station's home, or bring an existing one forward."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..errors import UsageError
from ..usecases.home import init_home
from .base import (
    AppContext,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    print_json,
    refuse_root_in_foreign_home,
)

#: What configuration accepts as ``station`` (checked before a configuration is written).
STATION_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@cli.command()
@click.option("--station", "station_name", default="station-01", show_default=True,
              help="This station's name, written into a new configuration.")
@click.option("--catalog", "catalog_url", default="",
              help="Catalog URL for a new configuration (default: SQLite in HOME).")
@json_option
@pass_app
def init(app: AppContext, station_name: str, catalog_url: str, as_json: bool) -> None:
    """Create an embedded station in HOME (config, store, catalog, key, ledger).

    Safe to run again: it completes what is missing and migrates the catalog, and never
    replaces an existing key or configuration.
    """
    home = app.home or app.config_path.parent
    if app.home is None and app.config_path == Path("/etc/ingestd/ingestd.toml") and not \
            app.config_path.exists():
        raise UsageError("give --home DIR (or INGESTD_HOME) for the station to create")
    if not STATION_NAME.fullmatch(station_name):
        raise UsageError(f"--station: {station_name!r} is not a station name (1 to 64 letters, "
                         "digits, '.', '_' or '-'); nothing was created")
    refuse_root_in_foreign_home(home)
    station, done = init_home(home, station=station_name, catalog_url=catalog_url)
    app._station = station
    info = {"home": str(home.resolve()), "config": str(home.resolve() / "ingestd.toml"),
            "station": station.name, "key_id": station.key.key_id, "done": done}
    if as_json:
        print_json(info)
        return
    for line in done or ["everything was in place already"]:
        console.print(f"• {esc(line)}")
    console.print(f"station [bold]{esc(station.name)}[/] ready in {esc(info['home'])} "
                  f"(key {station.key.key_id})")
