"""The window check, as the use case: an item not labelled within the label window, or not
copied to every required target within the replication window, is flagged once, with its
signed entry saying which deadline passed; an item on time, labelled or copied is not."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    SERIAL,
    FakeClock,
    build_recorder,
    init_station,
    open_station,
)
from usecase_helpers import MEDIA, Bench, bench, photo, photo_name, target_config

from ingestd.domain.canonical import format_time
from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind, Recorder
from ingestd.usecases import registry
from ingestd.usecases.casework import label
from ingestd.usecases.home import init_home
from ingestd.usecases.ingest import Ingestor
from ingestd.usecases.replicate import Replicator
from ingestd.usecases.windows import check_windows

LABEL = timedelta(hours=48)
REPLICATION = timedelta(hours=24)


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path, target=True) as made:
        yield made


def flags(b: Bench, sha: str) -> set[Flag]:
    with b.station.catalog.read() as tx:
        return {f.flag for f in tx.item_flags(sha)}


def test_an_unlabelled_item_is_flagged_late_only_after_its_label_window(b: Bench) -> None:
    late, labelled = (i.sha256 for i in b.dock(b.photos("rec", 2)).items)
    assert Replicator(b.station, actor="tester").run().ok
    stored_at = b.item(late).stored_at
    b.clock.advance(hours=1)
    label(b.station, [labelled], case="C-1", party="Zhao Lei", actor="tester")

    b.clock.set(stored_at + LABEL)  # at the deadline: not yet late
    on_time = check_windows(b.station, actor="tester")
    assert (on_time.checked, on_time.flagged) == (2, [])

    b.clock.advance(seconds=1)
    report = check_windows(b.station, actor="tester")

    assert report.flagged == [{"sha256": late, "flag": "late_label"}]
    assert flags(b, late) == {Flag.LATE_LABEL} and flags(b, labelled) == set()
    (entry,) = b.entries([EventKind.FLAGGED])
    assert (entry.item, entry.actor, entry.at) == (late, "tester", b.clock.now)
    assert entry.data["detail"] == f"deadline {format_time(stored_at + LABEL)} passed"
    b.assert_ledger_verifies()


def test_an_item_not_copied_in_time_is_flagged_late_replication(b: Bench) -> None:
    shas = [i.sha256 for i in b.dock(b.photos("rec", 2)).items]
    b.clock.advance(minutes=1)
    (sent,) = Replicator(b.station, actor="tester").run(limit=1).verified  # one of the two
    copied = sent["sha256"]
    (waiting,) = set(shas) - {copied}
    deadline = b.item(waiting).replication_deadline
    assert deadline == b.item(waiting).stored_at + REPLICATION

    b.clock.set(deadline)
    assert check_windows(b.station, actor="tester").flagged == []
    b.clock.advance(seconds=1)
    report = check_windows(b.station, actor="tester")

    assert {"sha256": waiting, "flag": "late_replication"} in report.flagged
    assert Flag.LATE_REPLICATION in flags(b, waiting)
    assert Flag.LATE_REPLICATION not in flags(b, copied)
    (entry,) = [e for e in b.entries([EventKind.FLAGGED], item=waiting)
                if e.data["flag"] == Flag.LATE_REPLICATION]
    assert entry.data["detail"] == f"deadline {format_time(deadline)} passed"


@pytest.mark.parametrize(("required", "expected"), [
    (True, {Flag.LATE_REPLICATION}), (False, set())])
def test_replication_lateness_counts_only_required_targets(
        tmp_path: Path, required: bool, expected: set[Flag]) -> None:
    with bench(tmp_path, target=True, required=required) as b:
        (sha,) = (i.sha256 for i in b.dock(b.photos("rec", 1)).items)
        b.clock.set(b.item(sha).stored_at + REPLICATION + timedelta(seconds=1))
        check_windows(b.station, actor="tester")
        assert flags(b, sha) == expected


def test_a_flag_is_set_once_however_often_the_check_runs(b: Bench) -> None:
    shas = [i.sha256 for i in b.dock(b.photos("rec", 2)).items]
    b.clock.advance(hours=49)
    first = check_windows(b.station, actor="tester")
    assert sorted((f["sha256"], f["flag"]) for f in first.flagged) == sorted(
        (sha, flag) for sha in shas for flag in ("late_label", "late_replication"))
    head = b.head()

    b.clock.advance(hours=1)
    again = check_windows(b.station, actor="tester")

    assert (again.checked, again.flagged) == (2, [])
    assert b.head() == head


def test_windows_shortened_after_storage_flag_only_by_the_items_own_deadline(
        tmp_path: Path) -> None:
    home = init_station(tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)})
    clock = FakeClock()
    station = open_station(home, clock)
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/{photo_name(0)}": photo()})
    (item,) = Ingestor(station).ingest(rec, serial=SERIAL).items
    with station.catalog.read() as tx:
        stored = tx.item(item.sha256)
    assert stored is not None
    station.close()
    with (home / "ingestd.toml").open("a") as fh:
        fh.write('[windows]\nlabel = "24h"\n')  # made stricter after the item was stored
    clock.advance(hours=25)
    station = open_station(home, clock)
    try:
        assert check_windows(station).flagged == []  # its own deadline, 48 h, is still ahead
        clock.set(stored.label_deadline + timedelta(seconds=1))
        assert check_windows(station).flagged == [{"sha256": item.sha256, "flag": "late_label"}]
        with station.catalog.read() as tx:
            (flag,) = tx.item_flags(item.sha256)
        assert flag.detail == f"deadline {format_time(stored.label_deadline)} passed"
        assert stored.label_deadline < clock.now
    finally:
        station.close()


def test_on_a_shared_catalog_each_station_checks_only_its_own_items(tmp_path: Path) -> None:
    shared = tmp_path / "shared.sqlite"

    def home_for(name: str, target: str) -> Path:
        (tmp_path / target).mkdir()
        home = tmp_path / name
        home.mkdir()
        (home / "ingestd.toml").write_text(
            f'station = "{name}"\ncatalog = "sqlite:///{shared}"\n'
            + target_config(tmp_path / target).replace('"nas"', f'"{target}"'))
        init_home(home, clock=FakeClock())[0].close()
        return home

    clock = FakeClock()
    one = open_station(home_for("dock-1", "nas1"), clock)
    two = open_station(home_for("dock-2", "nas2"), clock)
    try:
        registry.register(two, Recorder(serial="R-2", officer="Zhao", officer_id="2"),
                          actor="tester")
        rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/{photo_name(0)}": photo()})
        (item,) = Ingestor(two).ingest(rec, serial="R-2").items
        clock.advance(minutes=1)
        assert Replicator(two).run().ok  # dock-2 copies its item in time, to its own target
        clock.advance(hours=25)
        assert check_windows(two).flagged == []
        other = check_windows(one)
        assert (other.checked, other.flagged) == (0, [])
        with one.catalog.read() as tx:
            assert tx.item_flags(item.sha256) == []
    finally:
        one.close()
        two.close()
