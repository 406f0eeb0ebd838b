"""What the use cases' unit tests share: a station on a temporary SQLite home (a registered
recorder, a directory target when asked), recorders holding photos (checked without ffprobe),
and what the catalog says afterwards, read through ``CatalogTx`` as a use case reads it."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from conftest import (
    OFFICER,
    OFFICER_ID,
    RECORDED_T0,
    SERIAL,
    FakeClock,
    build_recorder,
    init_station,
    open_station,
)

from ingestd.domain.models import LedgerEntry
from ingestd.domain.records import Item, Replica
from ingestd.domain.status import SessionSummary
from ingestd.station import Station
from ingestd.usecases.ingest import DockContext, Ingestor, IngestReport

MEDIA = "DCIM/100MEDIA"
TARGET = "nas"
PREFIX = "bwc"


def photo(size: int = 2000) -> bytes:
    """A whole JPEG as far as ingest checks one (start and end markers): no ffprobe needed.
    Random bytes, so that every photo is an item of its own."""
    return b"\xff\xd8\xff\xe0" + os.urandom(size) + b"\xff\xd9"


def photo_name(n: int) -> str:
    """A file name that says when it was recorded (the recorder's local time, +08:00):
    ``RECORDED_T0`` plus ``n`` minutes, inside every window at the station's first time."""
    return (RECORDED_T0 + timedelta(hours=8, minutes=n)).strftime("%Y%m%d_%H%M%S") + ".JPG"


def target_config(nas: Path, *, required: bool = True) -> str:
    """A ``[[targets]]`` table for a folder on the same disk (allowed for tests)."""
    return (f'[[targets]]\nname = "{TARGET}"\ntype = "directory"\npath = "{nas}"\n'
            f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n'
            f"required = {'true' if required else 'false'}\n")


@dataclass
class Bench:
    """One station under test, with the folder its target writes to (if it has one)."""

    home: Path
    station: Station
    clock: FakeClock
    nas: Path | None
    tmp: Path

    # -- recorders ----------------------------------------------------------------------

    def recorder(self, name: str, files: Mapping[str | bytes, bytes | Path]) -> Path:
        return build_recorder(self.tmp / name, files)

    def photos(self, name: str, count: int, *, first: int = 0,
               extra: Mapping[str | bytes, bytes | Path] | None = None) -> Path:
        """A recorder folder with ``count`` time-named photos (and ``extra`` files)."""
        files: dict[str | bytes, bytes | Path] = {
            f"{MEDIA}/{photo_name(first + n)}": photo(1000 + 500 * n) for n in range(count)}
        files.update(extra or {})
        return self.recorder(name, files)

    def watched(self, folder: str, files: Mapping[str | bytes, bytes | Path]) -> Path:
        """A recorder folder under the watched root (``docks.watch_root``)."""
        root = self.station.settings.watch_root
        assert root is not None
        return build_recorder(root / folder, files)

    def dock(self, rec: Path, serial: str = SERIAL) -> IngestReport:
        return Ingestor(self.station).ingest(rec, serial=serial,
                                             ctx=DockContext(actor="tester"))

    # -- what the catalog says ----------------------------------------------------------

    def item(self, sha: str) -> Item:
        with self.station.catalog.read() as tx:
            item = tx.item(sha)
        assert item is not None, f"no item {sha}"
        return item

    def replica(self, sha: str) -> Replica | None:
        with self.station.catalog.read() as tx:
            return tx.replica(sha, TARGET)

    def entries(self, kinds: Sequence[str] | None = None, *, after: int = 0,
                item: str | None = None) -> list[LedgerEntry]:
        with self.station.catalog.read() as tx:
            return list(tx.iter_entries(after=after, kinds=kinds, item=item))

    def sessions(self) -> list[SessionSummary]:
        """The dock sessions, the newest first."""
        with self.station.catalog.read() as tx:
            return tx.recent_sessions(station=self.station.name)

    def head(self) -> int:
        with self.station.catalog.read() as tx:
            return tx.ledger_head()[0]

    def object(self, sha: str) -> Path:
        return self.station.store.path_of(sha)

    def copy_on_target(self, sha: str) -> Path:
        assert self.nas is not None
        return self.nas / PREFIX / "sha256" / sha

    def assert_ledger_verifies(self) -> None:
        report = self.station.custody.verify()
        assert report.ok, report.problems


@contextmanager
def bench(tmp_path: Path, *, config: str = "", target: bool = False,
          required: bool = True) -> Iterator[Bench]:
    """A station in ``tmp_path/home`` with SERIAL registered to OFFICER, on a FakeClock at
    ``STATION_T0``; with ``target``, a directory target ``nas`` in ``tmp_path/nas``."""
    nas: Path | None = None
    if target:
        nas = tmp_path / "nas"
        nas.mkdir()
        config = target_config(nas, required=required) + config
    home = init_station(tmp_path / "home", config=config,
                        register={SERIAL: (OFFICER, OFFICER_ID)})
    clock = FakeClock()
    station = open_station(home, clock)
    try:
        yield Bench(home=home, station=station, clock=clock, nas=nas, tmp=tmp_path)
    finally:
        station.close()
