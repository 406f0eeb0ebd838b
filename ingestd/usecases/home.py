"""Make a station's home, or bring an existing one forward: folders and modes, the station
key, the catalog migrated, the ledger's genesis (or time rule) entry, the key pin, and the
retention re-dating of items stored by an earlier release."""

from __future__ import annotations

import json
from pathlib import Path

from .. import config as config_mod
from ..domain.models import EventKind
from ..domain.policy import Clock
from ..domain.text import plural
from ..errors import IntegrityError
from ..integrity.hashing import fsync_dir
from ..integrity.ledger import TIME_RULE_KEY, KeyChain
from ..integrity.signing import PIN_NAME, PRIVATE_NAME, StationKey, write_pin
from ..modes import DIR_MODE, FILE_MODE, make_dir, tighten, write_private
from ..ports import CatalogTx
from ..station import Station, system_clock
from ..store import Store
from .redating import redate

EXAMPLE_HEADER = """\
# ingestd configuration. Every key is documented in config/ingestd.toml of the source tree.
# Relative paths are taken from `home` (by default, the folder holding this file).
"""


def init_home(home: Path, *, station: str = "station-01", clock: Clock = system_clock,
              catalog_url: str = "") -> tuple[Station, list[str]]:
    """Create (or complete) an embedded home: config, store, catalog, key, ledger genesis.

    Safe to run again: it creates only what is missing and never replaces a key or a config.
    """
    done: list[str] = []
    home = home.resolve()
    make_dir(home)
    tighten(home, DIR_MODE)
    config_path = home / config_mod.CONFIG_NAME
    if not config_path.exists():
        # JSON's string escapes are TOML's: a quote or a backslash in a value cannot end it
        body = EXAMPLE_HEADER + f"station = {json.dumps(station)}\n"
        if catalog_url:
            body += f"catalog = {json.dumps(catalog_url)}\n"
        body += '\n[docks]\nwatch_root = "docks"\n'
        write_private(config_path, body)
        done.append(f"wrote {config_path}")
    tighten(config_path, FILE_MODE)
    settings = config_mod.load(config_path)
    store = Store(settings.store_path)
    store.create()
    folders = [settings.logs_path, settings.runtime_dir]
    if settings.watch_root is not None:
        folders.append(settings.watch_root)
    for folder in folders:
        make_dir(folder)
        tighten(folder, DIR_MODE)
    if not (settings.keys_path / "station.key").exists():
        StationKey.generate().save(settings.keys_path)
        done.append(f"created station key in {settings.keys_path}")
    tighten(settings.keys_path / "station.pub", FILE_MODE)
    mirror = settings.ledger_mirror_path
    for path in (mirror, mirror.with_suffix(".lock")):
        tighten(path, FILE_MODE)
    station_ = Station.open(settings, clock=clock, migrate=True)
    custody = station_.custody
    with custody.transaction() as tx:
        keys = custody.trusted_keys(tx)
        if settings.station not in keys.started:
            # This station's first entry brings its key into the chain (on a shared catalog,
            # other stations' entries may come before it).
            seq, _ = tx.ledger_head()
            custody.record(
                tx, kind=EventKind.GENESIS, actor="ingestd",
                data={"station": settings.station, "public_key": station_.key.public.hex,
                      TIME_RULE_KEY: True},
            )
            done.append("started the custody ledger" if seq == 0
                        else f"brought station {settings.station}'s key into the ledger")
            keys = custody.trusted_keys(tx)
        elif not tx.entries_of_kinds([EventKind.TIME_RULE], station=settings.station) and \
                not _genesis_has_time_rule(tx, settings.station):
            # A ledger begun by an earlier release: times are checked from here on.
            custody.record(tx, kind=EventKind.TIME_RULE, actor="ingestd",
                           data={"station": settings.station})
            done.append("from now on no ledger entry is dated before the one it follows")
        custody.cache_keys(tx, keys)
    if custody.pin is None:
        # Taken from the ledger's genesis entry, not from the key file: an existing home pins
        # the key its ledger started with.
        genesis = keys.genesis.get(settings.station)
        if genesis is None:
            raise IntegrityError(f"the ledger's genesis entry for station {settings.station} "
                                 "does not verify: there is no first key to pin")
        fingerprint = genesis.fingerprint
        write_pin(settings.keys_path, fingerprint)
        custody.pin = fingerprint
        done.append(f"pinned the ledger's first key in {settings.keys_path / PIN_NAME}: "
                    f"fingerprint {fingerprint} (write it down)")
    done.extend(_remove_retired_keys(settings.keys_path, keys))
    redated = redate(station_)
    if redated:
        done.append(f"re-dated the retention of {plural(len(redated), 'item')} (counted from "
                    "the later of recording end and storage)")
    return station_, done


def _genesis_has_time_rule(tx: CatalogTx, station: str) -> bool:
    return any(e.station == station and e.data.get(TIME_RULE_KEY)
               for e in tx.entries_of_kinds([EventKind.GENESIS]))


def _remove_retired_keys(folder: Path, keys: KeyChain) -> list[str]:
    """A retired private key must not stay on the station: earlier rotations kept one."""
    done = []
    for path in sorted(folder.glob(f"{PRIVATE_NAME}.retired-*")):
        key_id = path.name.rsplit("-", 1)[-1]
        proven = keys.keys.get(key_id)
        if proven is not None and proven.until is not None:
            path.unlink()
            done.append(f"deleted the retired private key {key_id}")
    if done:
        fsync_dir(folder)
    return done
