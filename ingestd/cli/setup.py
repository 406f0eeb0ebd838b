"""``init`` and ``keys``: create a station, show or rotate its signing key."""

from __future__ import annotations

import os
import re
from pathlib import Path

import click

from ..domain.canonical import format_time
from ..domain.models import EventKind
from ..errors import IntegrityError, UsageError
from ..integrity.hashing import fsync_dir
from ..integrity.signing import PRIVATE_NAME, PUBLIC_NAME, StationKey
from ..station import Station
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
    """The station's public key, the pinned fingerprint, and every key the ledger vouches for.

    Write the pinned fingerprint down: it proves the ledger's first key, and through it every
    later one, whatever the catalog says.
    """
    station = app.station(read_only=True)
    with station.catalog.read(snapshot=True) as tx:
        keys = station.custody.trusted_keys(tx)
    current = keys.current(station.name)
    proven = [{"key_id": k.key_id, "station": k.station, "public_key": k.public.hex,
               "fingerprint": k.public.fingerprint, "since_seq": k.since,
               "retired_seq": k.until,
               "retired_at": format_time(k.retired_at) if k.retired_at else None}
              for k in sorted(keys.keys.values(), key=lambda k: (k.station or "", k.since))]
    info = {"station": station.name, "key_id": station.key.key_id,
            "public_key": station.key.public.hex,
            "fingerprint": station.key.public.fingerprint,
            "pinned_fingerprint": station.custody.pin,
            "vouched": current is not None and current.key_id == station.key.key_id,
            "trusted": proven}
    if as_json:
        print_json(info)
        return
    console.print(f"station {esc(station.name)}: key [bold]{station.key.key_id}[/]"
                  + ("" if info["vouched"] else " [red](not vouched for by the ledger)[/]"))
    console.print(f"public key (Ed25519, hex): {station.key.public.hex}")
    if station.custody.pin:
        console.print("pinned fingerprint of the ledger's first key (SHA-256; write it down):")
        groups = _grouped(station.custody.pin).split()
        for half in (groups[:8], groups[8:]):  # two short lines: read out and copied by hand
            console.print(f"  [bold]{' '.join(half)}[/]")
    else:
        console.print("[red]no pinned fingerprint[/]: run `ingestd init` to pin one")
    console.print("keys the ledger vouches for:")
    for k in proven:
        span = (f"entries {k['since_seq']}..{k['retired_seq']}, retired {k['retired_at']}"
                if k["retired_seq"] else f"from entry {k['since_seq']}, in use")
        console.print(f"  {k['key_id']}  {esc(k['station'] or '-')}  {span}")


def _grouped(fingerprint: str) -> str:
    """Groups of four hex digits, easier to read out and copy by hand."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


@keys.command("rotate")
@pass_app
def keys_rotate(app: AppContext) -> None:
    """Replace the station key. The change is a ledger entry signed by the old key; the old
    private key is deleted, and an entry signed with it afterwards is a discrepancy."""
    station = app.station()
    folder = app.settings.keys_path
    staged = folder / f"{PRIVATE_NAME}.new"
    if staged.exists():
        # Left by a rotation stopped after its entry committed and before the rename: the
        # ledger may vouch for this key already, and then it is the only one that may sign.
        if _vouched(station, StationKey.load(folder, name=staged.name)):
            _put_in_place(folder, staged)
            console.print("finished a rotation that had stopped before its key was in place; "
                          "run `keys rotate` again for a new key")
            return
        staged.unlink()  # from a rotation that never reached the ledger
        staged.with_suffix(".pub").unlink(missing_ok=True)
    new = StationKey.generate()
    new.save(folder, name=staged.name)
    try:
        with station.custody.transaction() as tx:
            station.custody.record(tx, kind=EventKind.KEY_ROTATED, actor="ingestd",
                                   data={"old_key_id": station.key.key_id,
                                         "new_key_id": new.key_id,
                                         "new_public_key": new.public.hex})
            tx.add_key(key_id=new.key_id, station=station.name,
                      public_hex=new.public.hex, at=station.clock())
            tx.retire_key(station.key.key_id, station.clock())
    except BaseException:
        # Only a rotation that did not commit loses its new key; once committed (even if the
        # mirror then fails), the new key is the one the ledger vouches for and must stay.
        if not _vouched(station, new):
            staged.unlink(missing_ok=True)
            staged.with_suffix(".pub").unlink(missing_ok=True)
        raise
    _put_in_place(folder, staged)
    console.print(f"rotated: {station.key.key_id} -> {new.key_id} (the old private key is "
                  "deleted)")


def _vouched(station: Station, key: StationKey) -> bool:
    """Whether the ledger's chain names ``key`` as this station's key now."""
    with station.catalog.read() as tx:
        current = station.custody.trusted_keys(tx).current(station.name)
    return current is not None and current.key_id == key.key_id


def _put_in_place(folder: Path, staged: Path) -> None:
    # One rename puts the new key in place and drops the old one: no retired private key
    # stays on the station.
    os.replace(staged, folder / PRIVATE_NAME)
    os.replace(staged.with_suffix(".pub"), folder / PUBLIC_NAME)
    fsync_dir(folder)
