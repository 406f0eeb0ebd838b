"""A flag is set once, with its signed entry, whichever use case sets it: setting it again
changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import SERIAL, build_recorder

from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind
from ingestd.station import Station
from ingestd.usecases.flags import set_flag
from ingestd.usecases.ingest import FileResult, Ingestor


def _ingest_one(station: Station, tmp_path: Path, name: str, data: bytes) -> FileResult:
    (item,) = Ingestor(station).ingest(build_recorder(tmp_path / "rec", {name: data}),
                                       serial=SERIAL).items
    return item


@pytest.fixture
def photo(station: Station, tmp_path: Path) -> FileResult:
    """An item from a whole JPEG, as far as ingest checks one (no ffprobe needed)."""
    return _ingest_one(station, tmp_path, "DCIM/20260101_080000.JPG",
                       b"\xff\xd8\xff\xe0" + os.urandom(2000) + b"\xff\xd9")


def test_a_flag_is_set_once_with_its_entry(station: Station, photo: FileResult) -> None:
    item = photo
    with station.custody.transaction() as tx:
        first = set_flag(station, tx, item.sha256, Flag.LATE_LABEL, at=station.clock(),
                         actor="tester", detail="deadline passed")
        again = set_flag(station, tx, item.sha256, Flag.LATE_LABEL, at=station.clock(),
                         actor="tester", detail="deadline passed again")
    assert (first, again) == (True, False)
    with station.catalog.read() as tx:
        rows = [r for r in tx.item_flags(item.sha256) if r.flag == Flag.LATE_LABEL]
        flagged = [e for e in tx.entries_of_kinds([EventKind.FLAGGED])
                   if e.data["flag"] == Flag.LATE_LABEL]
    assert [(r.ledger_seq, r.detail) for r in rows] == [
        (flagged[0].seq, "deadline passed")]
    assert [(e.item, e.actor, e.data["detail"]) for e in flagged] == [
        (item.sha256, "tester", "deadline passed")]
    assert station.custody.verify().ok


def test_flags_set_with_a_new_item_are_each_set_once_in_its_transaction(
        station: Station, tmp_path: Path) -> None:
    # A new item's flags are set in the transaction that inserts it, where the catalog knows
    # them without asking again: each must still be set once, with its one entry.
    # Truncated (damaged_media), named for a day long before the dock (late_ingest).
    item = _ingest_one(station, tmp_path, "DCIM/20200101_080000.JPG",
                       b"\xff\xd8\xff\xe0" + os.urandom(2000))
    assert {Flag.DAMAGED_MEDIA, Flag.LATE_INGEST} <= set(item.flags)
    with station.custody.transaction() as tx:
        again = set_flag(station, tx, item.sha256, Flag.DAMAGED_MEDIA, at=station.clock(),
                         actor="tester", detail="seen again")
    assert again is False
    with station.catalog.read() as tx:
        rows = sorted(r.flag for r in tx.item_flags(item.sha256))
        flagged = sorted(e.data["flag"] for e in tx.entries_of_kinds([EventKind.FLAGGED])
                         if e.item == item.sha256)
    assert rows == flagged == sorted(str(f) for f in item.flags)
    assert len(rows) == len(set(rows))
    assert station.custody.verify().ok


def test_a_flag_set_in_a_transaction_that_failed_is_not_taken_for_set(
        station: Station, photo: FileResult) -> None:
    with pytest.raises(RuntimeError, match="the transaction fails"):
        with station.custody.transaction() as tx:
            assert set_flag(station, tx, photo.sha256, Flag.LATE_LABEL, at=station.clock(),
                            actor="tester", detail="rolled back")
            raise RuntimeError("the transaction fails")
    with station.custody.transaction() as tx:
        assert set_flag(station, tx, photo.sha256, Flag.LATE_LABEL, at=station.clock(),
                        actor="tester", detail="set")
    with station.catalog.read() as tx:
        details = [r.detail for r in tx.item_flags(photo.sha256) if r.flag == Flag.LATE_LABEL]
    assert details == ["set"]
    assert station.custody.verify().ok
