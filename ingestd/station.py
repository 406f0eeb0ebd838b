"""Wiring: one station's settings, catalog, store, key and custody, opened together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from . import config as config_mod
from .catalog import queries as q
from .catalog.db import Catalog, open_catalog
from .config import Settings
from .custody import Clock, Custody
from .domain.models import EventKind
from .integrity.signing import StationKey
from .modes import DIR_MODE, FILE_MODE, make_dir, tighten, write_private
from .store import Store

log = logging.getLogger(__name__)


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Station:
    settings: Settings
    catalog: Catalog
    store: Store
    key: StationKey
    custody: Custody
    clock: Clock

    @property
    def name(self) -> str:
        return self.settings.station

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock = system_clock,
             migrate: bool = False, read_only: bool = False) -> Station:
        """``read_only``: for the reporting commands, which then work on a read-only mount or
        a full disk; the catalog is opened read-only and nothing is written anywhere."""
        store = Store(settings.store_path, buffer_size=settings.ingest.buffer_size)
        store.check(writable=not read_only)
        key = StationKey.load(settings.keys_path)
        catalog = open_catalog(settings.catalog_url, migrate=migrate, read_only=read_only)
        custody = Custody(catalog=catalog, key=key, station=settings.station,
                          mirror=settings.ledger_mirror_path, clock=clock)
        return cls(settings=settings, catalog=catalog, store=store, key=key, custody=custody,
                   clock=clock)

    def close(self) -> None:
        self.catalog.dispose()


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
        body = EXAMPLE_HEADER + f'station = "{station}"\n'
        if catalog_url:
            body += f'catalog = "{catalog_url}"\n'
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
    with station_.custody.transaction() as conn:
        station_.custody.register_key(conn)

        seq, _ = q.ledger_head(conn)
        if seq == 0:
            station_.custody.record(
                conn, kind=EventKind.GENESIS, actor="ingestd",
                data={"station": settings.station, "public_key": station_.key.public.hex},
            )
            done.append("started the custody ledger")
    return station_, done
