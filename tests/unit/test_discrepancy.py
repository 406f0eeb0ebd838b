"""Typed discrepancies: every kind in one family, each family its own kinds only, the ledger's
JSON as it was; the fast check's comparison of an object's file status with its item."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from ingestd.catalog.db import CatalogFault, file_fault
from ingestd.integrity.discrepancy import (
    FAMILIES,
    BadSignature,
    ChainBroken,
    ChecksumMismatch,
    DiscrepancyKind,
    FileMissing,
    ObjectUnreadable,
    RowDiffers,
    SizeMismatch,
    family_of,
)
from ingestd.store import Store, presence_problem

K = DiscrepancyKind
ITEM = "ab" * 32


def test_every_kind_is_in_exactly_one_family() -> None:
    for kind in DiscrepancyKind:
        owners = [f for f in FAMILIES if kind in f.kinds]
        assert len(owners) == 1, (kind, owners)
        assert family_of(kind) is owners[0]


def test_a_family_takes_only_its_own_kinds() -> None:
    ChainBroken(kind=K.EDITED, seq=3, detail="x")
    with pytest.raises(ValueError, match="ChainBroken"):
        ChainBroken(kind=K.BAD_SIGNATURE, seq=3, detail="x")
    with pytest.raises(ValueError):
        BadSignature(kind=K.MISSING_ROW, detail="x")


def test_a_ledger_discrepancy_reads_as_before_in_json() -> None:
    found = BadSignature(kind=K.BAD_SIGNATURE, seq=7, detail="signature does not verify")
    assert found.as_dict() == {"kind": "bad_signature", "seq": 7,
                               "detail": "signature does not verify"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.seq = 8  # type: ignore[misc]


def test_a_row_that_differs_carries_both_values() -> None:
    found = RowDiffers.of(table="items", key="abcd", seq=4, field="officer", found="Mallory",
                          expected="张三")
    assert (found.expected, found.found, found.field) == ("张三", "Mallory", "officer")
    assert found.detail == "items row abcd: officer is 'Mallory' but the ledger says '张三'"
    assert found.as_dict() == {"kind": "row_differs", "seq": 4, "detail": found.detail}


def test_object_discrepancies_name_their_item() -> None:
    bad = ChecksumMismatch.of(ITEM, found="cd" * 32, size=10)
    assert (bad.kind, bad.item, bad.expected, bad.found) == (K.CHECKSUM_MISMATCH, ITEM, ITEM,
                                                             "cd" * 32)
    assert bad.as_dict()["sha256"] == ITEM and bad.as_dict()["problem"] == bad.detail


# -- the fast check's comparison -------------------------------------------------------------


def status(size: int, mode: int = stat.S_IFREG | 0o440) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, 0, 0, size, 0, 0, 0))


@pytest.mark.parametrize(("found", "family", "kind"), [
    (None, FileMissing, K.OBJECT_MISSING),
    (status(99), SizeMismatch, K.SIZE_MISMATCH),
    (status(101), SizeMismatch, K.SIZE_MISMATCH),
    (status(0), SizeMismatch, K.SIZE_MISMATCH),
    (status(100, stat.S_IFDIR | 0o750), ObjectUnreadable, K.OBJECT_UNREADABLE),
    (status(100, stat.S_IFLNK | 0o777), ObjectUnreadable, K.OBJECT_UNREADABLE),
])
def test_presence_and_size_against_the_item(found: os.stat_result | None, family: type,
                                            kind: K) -> None:
    problem = presence_problem(ITEM, 100, found, where=Path("/store/objects"))
    assert isinstance(problem, family) and problem.kind == kind and problem.item == ITEM


def test_a_size_mismatch_says_both_sizes_and_which_way() -> None:
    short = presence_problem(ITEM, 100, status(60), where=Path("/s"))
    grown = presence_problem(ITEM, 100, status(160), where=Path("/s"))
    assert isinstance(short, SizeMismatch) and (short.expected, short.found) == (100, 60)
    assert "cut short" in short.detail and "60 bytes" in short.detail
    assert isinstance(grown, SizeMismatch) and "grown" in grown.detail
    assert presence_problem(ITEM, 100, status(100), where=Path("/s")) is None


def test_the_store_looks_without_reading(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.create()
    path = store.path_of(ITEM)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"x" * 100)
    assert store.look(ITEM, 100) is None
    # The bytes are not read: other bytes of the same size pass the fast check...
    path.write_bytes(b"y" * 100)
    assert store.look(ITEM, 100) is None
    # ... and fail the full one.
    assert isinstance(store.examine(ITEM, 100)[1], ChecksumMismatch)
    path.write_bytes(b"y" * 40)
    assert isinstance(store.look(ITEM, 100), SizeMismatch)
    path.unlink()
    missing = store.look(ITEM, 100)
    assert isinstance(missing, FileMissing)
    assert missing.detail == f"object {ITEM} is missing from {store.objects}"


# -- the catalog's file faults, by SQLite's result code --------------------------------------


def test_a_file_fault_is_told_by_its_code_not_its_words(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"x" * 8192)
    with pytest.raises(sqlite3.DatabaseError) as not_a_db:
        sqlite3.connect(junk).execute("SELECT * FROM sqlite_master").fetchall()
    assert file_fault(not_a_db.value) == CatalogFault.DAMAGED
    with pytest.raises(sqlite3.OperationalError) as cannot_open:
        sqlite3.connect(tmp_path / "no" / "such" / "folder.sqlite")
    assert file_fault(cannot_open.value) == CatalogFault.UNUSABLE
    # Words alone say nothing: a busy database, or a message that merely reads like damage.
    busy = sqlite3.OperationalError("database disk image is malformed")
    busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
    assert file_fault(busy) is None
    full = sqlite3.OperationalError("some words")
    full.sqlite_errorcode = sqlite3.SQLITE_FULL
    assert file_fault(full) == CatalogFault.FULL
    assert file_fault(sqlite3.IntegrityError("UNIQUE constraint failed")) is None
