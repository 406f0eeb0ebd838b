"""``init`` and ``keys``: create a station, show or rotate its signing key."""

from __future__ import annotations

from pathlib import Path

import click

from ..catalog import queries as q
from ..domain.models import EventKind
from ..errors import IntegrityError, UsageError
from ..integrity.signing import StationKey
from ..station import init_home
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


@cli.group()
def keys() -> None:
    """The station's Ed25519 signing key."""


@keys.command("init")
@pass_app
def keys_init(app: AppContext) -> None:
    """Create the station key if there is none (never replaces one)."""
    folder = app.settings.keys_path
    if (folder / "station.key").exists():
        raise IntegrityError(f"a station key exists already in {folder}; use `keys rotate`")
    key = StationKey.generate()
    key.save(folder)
    console.print(f"created station key {key.key_id} in {esc(folder)}")


@keys.command("show")
@json_option
@pass_app
def keys_show(app: AppContext, as_json: bool) -> None:
    """The station's public key and every key the catalog trusts."""
    station = app.station()
    with station.catalog.read() as conn:
        rows = [dict(r) for r in q.all_keys(conn)]
    info = {"station": station.name, "key_id": station.key.key_id,
            "public_key": station.key.public.hex, "trusted": rows}
    if as_json:
        print_json(info)
        return
    console.print(f"station {esc(station.name)}: key [bold]{station.key.key_id}[/]")
    console.print(f"public key (Ed25519, hex): {station.key.public.hex}")
    for row in rows:
        state = f"retired {row['retired_at']}" if row["retired_at"] else "in use"
        console.print(f"  {row['key_id']}  {esc(row['station'])}  since {row['created_at']}  "
                      f"{state}")


@keys.command("rotate")
@pass_app
def keys_rotate(app: AppContext) -> None:
    """Replace the station key. The change is a ledger entry signed by the old key."""
    station = app.station()
    folder = app.settings.keys_path
    new = StationKey.generate()
    new.save(folder, name="station.key.new")
    with station.custody.transaction() as conn:
        station.custody.record(conn, kind=EventKind.KEY_ROTATED, actor="ingestd",
                               data={"old_key_id": station.key.key_id,
                                     "new_key_id": new.key_id,
                                     "new_public_key": new.public.hex})
        q.add_key(conn, key_id=new.key_id, station=station.name, public_hex=new.public.hex,
                  at=station.clock())
        q.retire_key(conn, station.key.key_id, station.clock())
    old = folder / "station.key"
    old.rename(folder / f"station.key.retired-{station.key.key_id}")
    (folder / "station.key.new").rename(old)
    (folder / "station.key.pub").replace(folder / "station.pub")
    console.print(f"rotated: {station.key.key_id} -> {new.key_id}")
