"""Wiring: one station's settings, catalog, store, key and custody, opened together."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

from .catalog.db import Catalog, open_catalog
from .config import Settings
from .custody import Custody
from .domain.policy import Clock
from .integrity.signing import StationKey, read_pin
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
                          mirror=settings.ledger_mirror_path, clock=clock,
                          pin=read_pin(settings.keys_path))
        return cls(settings=settings, catalog=catalog, store=store, key=key, custody=custody,
                   clock=clock)

    def close(self) -> None:
        self.catalog.dispose()
