"""The recorder registry, as the use case: registering, giving a recorder to another officer
and taking it out are each a signed entry with the row it backs; a recorder taken out keeps
its history, its items keep their officer, and its next dock is refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import OFFICER, OFFICER_ID, SERIAL
from usecase_helpers import Bench, bench

from ingestd.domain.models import EventKind, Recorder
from ingestd.errors import NotFound, RecorderNotRegistered
from ingestd.usecases.registry import register, unregister

NEW = Recorder(serial="BWC-0042", officer="Li Na", officer_id="PS-0042", unit="patrol",
               vendor="Acme", model="V1")


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path) as made:
        yield made


def on_file(b: Bench, serial: str, *, active_only: bool = True) -> Recorder | None:
    with b.station.catalog.read() as tx:
        return tx.recorder(serial, active_only=active_only)


def test_a_recorder_registered_is_on_file_with_its_entry(b: Bench) -> None:
    b.clock.advance(minutes=1)
    assert register(b.station, NEW, actor="admin") is True

    rec = on_file(b, NEW.serial)
    (entry,) = b.entries([EventKind.REGISTRY], after=b.head() - 1)
    assert rec == Recorder(serial=NEW.serial, officer="Li Na", officer_id="PS-0042",
                           unit="patrol", vendor="Acme", model="V1", added_at=b.clock.now,
                           active=True, ledger_seq=entry.seq)
    assert (entry.actor, entry.data) == ("admin", {
        "serial": NEW.serial, "officer": "Li Na", "officer_id": "PS-0042", "unit": "patrol",
        "vendor": "Acme", "model": "V1", "active": True})
    with b.station.catalog.read() as tx:
        assert [r.serial for r in tx.list_recorders()] == sorted([SERIAL, NEW.serial])
    b.assert_ledger_verifies()


def test_a_recorder_given_to_another_officer_files_new_items_under_them(b: Bench) -> None:
    (before,) = b.dock(b.photos("rec1", 1)).items
    added = on_file(b, SERIAL)
    assert added is not None
    b.clock.advance(minutes=1)

    register(b.station, Recorder(serial=SERIAL, officer="Sun Mei", officer_id="PS-2"),
             actor="admin")
    b.clock.advance(minutes=1)
    (after,) = b.dock(b.photos("rec2", 1, first=5)).items

    now = on_file(b, SERIAL)
    assert now is not None and (now.officer, now.officer_id) == ("Sun Mei", "PS-2")
    assert now.added_at == added.added_at  # first registered then, whoever carries it now
    assert b.item(before.sha256).officer == OFFICER
    assert b.item(after.sha256).officer == "Sun Mei"
    assert [e.data["officer"] for e in b.entries([EventKind.REGISTRY])] == [OFFICER, "Sun Mei"]


def test_only_if_new_leaves_a_registered_recorder_as_it_is(b: Bench) -> None:
    head = b.head()
    again = Recorder(serial=SERIAL, officer="Someone Else", officer_id="X")
    assert register(b.station, again, actor="admin", only_if_new=True) is False
    assert b.head() == head
    rec = on_file(b, SERIAL)
    assert rec is not None and (rec.officer, rec.officer_id) == (OFFICER, OFFICER_ID)


def test_a_recorder_taken_out_keeps_its_history_and_is_refused_at_its_next_dock(
        b: Bench) -> None:
    (item,) = b.dock(b.photos("rec", 1)).items
    b.clock.advance(minutes=1)

    unregister(b.station, SERIAL, actor="admin")

    assert on_file(b, SERIAL) is None
    removed = on_file(b, SERIAL, active_only=False)
    assert removed is not None and not removed.active and removed.officer == OFFICER
    last = b.entries([EventKind.REGISTRY])[-1]
    assert (removed.ledger_seq, last.data) == (
        last.seq, {"serial": SERIAL, "officer": None, "active": False})
    with b.station.catalog.read() as tx:
        assert tx.list_recorders() == []
        assert [r.serial for r in tx.list_recorders(include_removed=True)] == [SERIAL]
    assert b.item(item.sha256).officer == OFFICER
    b.clock.advance(minutes=1)
    with pytest.raises(RecorderNotRegistered):
        b.dock(b.photos("rec2", 1, first=5))
    head = b.head()
    with pytest.raises(NotFound, match="is not registered"):
        unregister(b.station, SERIAL, actor="admin")
    assert b.head() == head
    b.assert_ledger_verifies()

    b.clock.advance(minutes=1)
    register(b.station, Recorder(serial=SERIAL, officer="Sun Mei", officer_id="PS-2"),
             actor="admin")
    back = on_file(b, SERIAL)
    assert back is not None and back.active and back.officer == "Sun Mei"
