"""The status model: what a dock, a replication and the daemon's jobs leave is what ``status``
reports, from one read of the catalog; a session whose process is gone is shown interrupted
without a write. On a temporary SQLite home, with photos (checked without ffprobe) and a
directory target."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import (
    OFFICER,
    OFFICER_ID,
    RECORDED_T0,
    SERIAL,
    FakeClock,
    build_recorder,
    init_station,
    open_station,
    sha256_of,
)

from ingestd.app.jobs import Job, run_job
from ingestd.domain.canonical import format_time
from ingestd.domain.records import DockSource, SessionState
from ingestd.errors import IntegrityError
from ingestd.station import Station
from ingestd.usecases.ingest import DockContext, Ingestor
from ingestd.usecases.replicate import Replicator
from ingestd.usecases.status import (
    AUDIT_JOB,
    AUDIT_OFFSITE_JOB,
    LEDGER_JOB,
    StationStatus,
    status,
)
from tests.support import catalog

MEDIA = "DCIM/100MEDIA"


def photo(size: int) -> bytes:
    """A whole JPEG as far as ingest checks one (start and end markers): no ffprobe needed."""
    return b"\xff\xd8\xff\xe0" + os.urandom(size) + b"\xff\xd9"


@pytest.fixture
def station(tmp_path: Path) -> Iterator[Station]:
    nas = tmp_path / "nas"
    nas.mkdir()
    home = init_station(
        tmp_path / "home", register={SERIAL: (OFFICER, OFFICER_ID)},
        config=f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
               'prefix = "bwc"\nsame_filesystem_ok = true\n')
    st = open_station(home, FakeClock())
    yield st
    st.close()


def dock(station: Station, tmp_path: Path) -> list[Path]:
    """A recorder with two photos, named by their local time, and a stray file."""
    names = [(RECORDED_T0 + timedelta(hours=8 + n)).strftime("%Y%m%d_%H%M%S") + ".JPG"
             for n in range(2)]
    rec = build_recorder(tmp_path / "rec", {
        f"{MEDIA}/{names[0]}": photo(3000), f"{MEDIA}/{names[1]}": photo(5000),
        "notes.txt": b"left on the recorder"})
    report = Ingestor(station).ingest(rec, serial=SERIAL, ctx=DockContext(actor="tester"))
    assert report.state == "done" and len(report.items) == 2
    return [rec / MEDIA / n for n in names]


def test_the_status_after_a_dock_says_what_was_taken_and_what_was_left(
        station: Station, tmp_path: Path) -> None:
    photos = dock(station, tmp_path)
    now = status(station)
    assert now.station == "station-01"
    size = sum(p.stat().st_size for p in photos)
    assert (now.counts.items, now.counts.bytes, now.counts.labelled) == (2, size, 0)
    assert (now.store.items, now.store.bytes) == (2, size)
    assert now.store.path == station.store.root and 0 < now.store.free <= now.store.total
    assert dict(now.counts.acquisitions) == {"stored": 2}
    assert dict(now.counts.flags) == {}
    assert now.recorders == 1
    (docked,) = now.docks
    assert (docked.session.serial, docked.state, docked.session.source) == (
        SERIAL, "done", "manual")
    assert (docked.session.files_new, docked.session.files_known,
            docked.session.files_failed) == (2, 0, 0)
    assert docked.session.files_skipped == 1 and dict(docked.session.skipped) == {"unmatched": 1}
    assert not docked.process_gone
    # nothing is off-site yet: both wait, the one due first named
    (nas,) = now.targets.values()
    assert (nas.verified, nas.proven, nas.queued, nas.in_flight, nas.failed) == (0, 0, 2, 0, 0)
    assert nas.oldest_waiting is not None
    assert nas.oldest_waiting.sha256 in {sha256_of(p) for p in photos}
    assert nas.last_error is None
    assert now.jobs == () and (now.checks.ledger, now.checks.audit,
                                now.checks.audit_offsite) == (None, None, None)

    Replicator(station).run()
    (nas,) = status(station).targets.values()
    assert (nas.verified, nas.queued, nas.oldest_waiting) == (2, 0, None)


def test_its_json_is_what_the_catalog_holds(station: Station, tmp_path: Path) -> None:
    dock(station, tmp_path)
    doc = status(station).to_json()
    assert json.loads(json.dumps(doc)) == doc  # plain JSON, nothing turned into a string
    (row,) = catalog.dock_sessions(station.settings.home)
    (shown,) = doc["docks"]
    assert shown == {**{k: row[k] for k in (
        "id", "serial", "source", "state", "docked_at", "finished_at", "files_new",
        "files_known", "files_failed", "files_skipped", "error")},
        "skipped": {"unmatched": 1}, "process_gone": False,
        "health": row["health"]}
    # the WORM standing came later, as a key of its own, and then what the status page
    # shows: the others are as they were
    assert list(doc) == ["station", "store", "items", "acquisitions", "recorders", "docks",
                         "jobs", "checks", "targets", "worm", "docked_now", "flagged", "events"]
    assert doc["worm"] == {}  # a directory target promises no WORM, and none was checked
    with station.catalog.read() as tx:
        deadlines = {format_time(listed.item.replication_deadline)
                     for listed in tx.search_items()}
    assert doc["targets"]["nas"]["oldest_waiting"]["deadline"] in deadlines


def test_the_last_run_of_each_check_is_shown(station: Station) -> None:
    def broken(st: Station) -> str:
        raise IntegrityError("2 problems in the ledger")

    clock = station.clock
    assert isinstance(clock, FakeClock)
    run_job(station, Job(name=LEDGER_JOB, every=timedelta(hours=1), func=lambda st: "one"))
    clock.advance(minutes=5)
    run_job(station, Job(name=LEDGER_JOB, every=timedelta(hours=1), func=lambda st: "two"))
    run_job(station, Job(name=AUDIT_JOB, every=timedelta(hours=1), func=broken))
    now: StationStatus = status(station)
    assert [(j.job, j.ok, j.summary) for j in now.jobs] == [
        (AUDIT_JOB, False, "2 problems in the ledger"), (LEDGER_JOB, True, "two")]
    assert now.checks.ledger is not None and now.checks.audit is not None
    assert (now.checks.ledger.ok, now.checks.ledger.summary) == (True, "two")
    assert now.checks.ledger.at == clock.now
    assert now.checks.audit.ok is False
    assert now.checks.audit_offsite is None
    checks = now.to_json()["checks"]
    assert checks["audit_offsite"] is None and checks["ledger"]["job"] == LEDGER_JOB
    assert AUDIT_OFFSITE_JOB not in {j["job"] for j in now.to_json()["jobs"]}


def test_a_session_whose_process_is_gone_is_shown_interrupted_and_nothing_written(
        station: Station) -> None:
    with station.catalog.write() as tx:
        tx.open_session(serial=SERIAL, station=station.name, source=DockSource.UDEV,
                        mountpoint="/m", state=SessionState.RUNNING,
                        docked_at=datetime(2026, 1, 1, tzinfo=UTC), actor="tester",
                        ledger_seq=1, health={}, pid=os.getpid(), host="another-host")
    (shown,) = status(station).docks
    assert shown.process_gone and shown.state == "interrupted"
    assert shown.to_json()["state"] == "interrupted"
    (row,) = catalog.dock_sessions(station.settings.home)
    assert row["state"] == SessionState.RUNNING
