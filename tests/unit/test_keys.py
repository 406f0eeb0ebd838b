"""Rotating the station key, as a use case on a temporary SQLite home: the new key is the one
in place and the only one the ledger lets sign, the ledger still verifies, and the old private
key is gone; a rotation stopped half-way is finished, never repeated."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    FakeClock,
    init_station,
    open_station,
)

from ingestd.custody import Custody
from ingestd.domain.models import EventKind, Recorder
from ingestd.errors import IntegrityError, StoreFull
from ingestd.integrity.signing import StationKey
from ingestd.usecases import registry
from ingestd.usecases.keys import (
    STAGED_NAME,
    create_key,
    key_report,
    rotate_key,
)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})


def test_a_rotation_puts_a_new_key_in_place_and_the_old_one_signs_nothing_more(
        home: Path) -> None:
    keys = home / "keys"
    old_pem = (keys / "station.key").read_bytes()
    station = open_station(home, FakeClock())
    old_id = station.key.key_id
    rotation = rotate_key(station, actor="tester")
    assert (rotation.old_key_id, rotation.resumed) == (old_id, False)
    assert rotation.new_key_id != old_id

    # One key on the station, the new one; the retired private key is nowhere in the folder.
    assert sorted(p.name for p in keys.iterdir()) == ["station.key", "station.pin",
                                                       "station.pub"]
    assert StationKey.load(keys).key_id == rotation.new_key_id
    assert (keys / "station.pub").read_text().strip() == StationKey.load(keys).public.hex
    assert old_pem not in {p.read_bytes() for p in keys.iterdir()}

    # The rotation is an entry signed by the old key, by whom it was asked.
    with station.catalog.read() as tx:
        seq, _ = tx.ledger_head()
        (entry,) = tx.iter_entries(after=seq - 1)
    assert (entry.kind, entry.key_id, entry.actor) == (EventKind.KEY_ROTATED, old_id, "tester")
    assert entry.data["new_key_id"] == rotation.new_key_id

    # A station still holding the old key in memory is refused, and writes nothing.
    with pytest.raises(IntegrityError, match="refusing to sign"):
        registry.register(station, Recorder(serial="BWC-9", officer="Li", officer_id="9"),
                          actor="tester")
    with station.catalog.read() as tx:
        assert tx.ledger_head()[0] == entry.seq and tx.recorder("BWC-9") is None
    station.close()

    again = open_station(home, FakeClock())
    try:
        shown = key_report(again)
        assert shown.vouched and shown.key_id == rotation.new_key_id
        assert [(k.key_id, k.since_seq, k.retired_seq) for k in shown.trusted] == [
            (old_id, 1, entry.seq), (rotation.new_key_id, entry.seq + 1, None)]
        assert shown.to_json()["trusted"][0]["retired_at"] is not None
        registry.register(again, Recorder(serial="BWC-9", officer="Li", officer_id="9"),
                          actor="tester")  # the new key signs
        report = again.custody.verify()
        assert report.ok, report.problems
        with again.catalog.read() as tx:
            assert [e.key_id for e in tx.iter_entries(after=entry.seq)] == [
                rotation.new_key_id]
    finally:
        again.close()


def test_a_rotation_whose_mirror_failed_is_finished_by_the_next_one(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    station = open_station(home, FakeClock())
    old_id = station.key.key_id

    def full(self: Custody, committed: object = None) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(Custody, "_sync", full)
        with pytest.raises(StoreFull, match="ledger mirror"):
            rotate_key(station, actor="tester")
    staged = home / "keys" / STAGED_NAME
    assert staged.is_file(), "the key the ledger vouches for was thrown away"
    staged_id = StationKey.load(home / "keys", name=STAGED_NAME).key_id
    with station.catalog.read() as tx:
        head, _ = tx.ledger_head()

    finished = rotate_key(station, actor="tester")
    assert (finished.resumed, finished.old_key_id, finished.new_key_id) == (
        True, old_id, staged_id)
    with station.catalog.read() as tx:
        assert tx.ledger_head()[0] == head  # no second rotation
    assert StationKey.load(home / "keys").key_id == staged_id and not staged.exists()
    station.close()


def test_a_staged_key_the_ledger_never_named_is_discarded(home: Path) -> None:
    stray = StationKey.generate()
    stray.save(home / "keys", name=STAGED_NAME)
    station = open_station(home, FakeClock())
    try:
        rotation = rotate_key(station, actor="tester")
    finally:
        station.close()
    assert not rotation.resumed and rotation.new_key_id != stray.key_id
    assert StationKey.load(home / "keys").key_id == rotation.new_key_id
    assert not (home / "keys" / STAGED_NAME).exists()


def test_create_key_never_replaces_a_key(home: Path, tmp_path: Path) -> None:
    before = (home / "keys" / "station.key").read_bytes()
    with pytest.raises(IntegrityError, match="exists already"):
        create_key(home / "keys")
    assert (home / "keys" / "station.key").read_bytes() == before
    made = create_key(tmp_path / "fresh")
    assert StationKey.load(tmp_path / "fresh").key_id == made.key_id
