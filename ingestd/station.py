"""Wiring: one station's settings, catalog, store, key and custody, opened together."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from .catalog.db import Catalog, open_catalog
from .config import Settings
from .domain.policy import Clock
from .integrity.signing import StationKey, read_pin
from .store import Store

if TYPE_CHECKING:
    from .custody import Custody

log = logging.getLogger(__name__)


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Station:
    settings: Settings
    catalog: Catalog
    store: Store
    key: StationKey
    clock: Clock
    pin: str | None = None  # the key's pinned fingerprint, read when the station opens
    _custody: Custody | None = field(default=None, repr=False)
    _making_custody: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def name(self) -> str:
        return self.settings.station

    @property
    def custody(self) -> Custody:
        """The ledger's writer and checker, made when first asked for (once, whichever thread
        asks): a report that only reads the catalog loads none of the ledger's code, its
        chain checks or its discrepancies. Once made, it is read without the lock."""
        if self._custody is not None:
            return self._custody
        with self._making_custody:
            if self._custody is None:
                from .custody import Custody

                settings = self.settings
                self._custody = Custody(catalog=self.catalog, key=self.key,
                                        station=settings.station,
                                        mirror=settings.ledger_mirror_path, clock=self.clock,
                                        pin=self.pin)
            return self._custody

    @classmethod
    def open(cls, settings: Settings, *, clock: Clock = system_clock,
             migrate: bool = False, read_only: bool = False) -> Station:
        """``read_only``: for the reporting commands, which then work on a read-only mount or
        a full disk; the catalog is opened read-only and nothing is written anywhere."""
        store = Store(settings.store_path, buffer_size=settings.ingest.buffer_size)
        store.check(writable=not read_only)
        key = StationKey.load(settings.keys_path)
        catalog = open_catalog(settings.catalog_url, migrate=migrate, read_only=read_only)
        return cls(settings=settings, catalog=catalog, store=store, key=key, clock=clock,
                   pin=read_pin(settings.keys_path))

    def close(self) -> None:
        self.catalog.dispose()
