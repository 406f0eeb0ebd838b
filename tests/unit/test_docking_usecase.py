"""Docking a recorder folder under the watched root (``scan_once``, ``DockCoordinator``): a
registered recorder is taken, one that is not, or whose names disagree, is refused with its
ledger entry and nothing copied; the wipe policy deletes from the recorder only files whose
bytes were stored and verified (and, off-site, proven). Temporary folders and a directory
target: no udev, no mounts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SERIAL, sha256_of, snapshot_tree
from usecase_helpers import MEDIA, Bench, bench, photo, photo_name

import ingestd.store as store_mod
from ingestd.docks.wipe import ASIDE_PREFIX
from ingestd.domain.models import EventKind, Recorder
from ingestd.domain.records import DockSource, SessionState
from ingestd.errors import SourceReadError
from ingestd.integrity import hashing
from ingestd.integrity.hashing import Digest
from ingestd.usecases import registry
from ingestd.usecases.docking import DockCoordinator, Outcome, scan_once, serving
from ingestd.usecases.ingest import DockContext, Ingestor
from ingestd.usecases.replicate import Replicator
from tests.support.damage import flip_bit

OTHER = "BWC-0002"


def wiping(mode: str) -> str:
    return f'[docks]\nwipe = "{mode}"\n'


def photos(count: int) -> dict[str | bytes, bytes | Path]:
    return {f"{MEDIA}/{photo_name(n)}": photo(1000 + 300 * n) for n in range(count)}


def leftovers(folder: Path) -> list[Path]:
    """Files a wipe set aside and did not put back or delete."""
    return [p for p in folder.rglob("*") if p.name.startswith(ASIDE_PREFIX)]


def only(outcomes: list[Outcome]) -> Outcome:
    (outcome,) = outcomes
    return outcome


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path) as made:
        yield made


def test_a_watched_folder_is_taken_and_by_default_nothing_is_wiped(b: Bench) -> None:
    folder = b.watched(SERIAL, {**photos(2), "notes.txt": b"left alone"})
    before = snapshot_tree(folder)

    outcome = only(scan_once(b.station))

    assert (outcome.serial, outcome.state, outcome.wiped) == (SERIAL, SessionState.DONE, 0)
    assert outcome.report is not None and len(outcome.report.items) == 2
    assert snapshot_tree(folder) == before
    (session,) = b.sessions()
    assert (session.source, session.state, session.files_new) == (DockSource.WATCH, "done", 2)
    assert b.entries([EventKind.WIPED]) == []
    with b.station.catalog.read() as tx:
        assert all(a.acquisition.wiped_at is None
                   for i in outcome.report.items for a in tx.acquisitions_of(i.sha256))
        health = tx.session(session.id)
    assert health is not None and health.health["faults"] == []
    assert health.health["total_bytes"] >= health.health["free_bytes"] > 0
    b.assert_ledger_verifies()


def test_a_station_without_a_watched_root_serves_no_folder(tmp_path: Path) -> None:
    with bench(tmp_path, config='[docks]\nwatch_root = ""\n') as off:
        assert off.station.settings.watch_root is None
        assert scan_once(off.station) == []


def test_after_local_verify_wipes_only_the_files_stored_and_verified(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with bench(tmp_path, config=wiping("after-local-verify")) as b:
        folder = b.watched(SERIAL, {**photos(3), "notes.txt": b"not footage",
                                    "RECORDER.ID": f"{SERIAL}\n".encode()})
        unread = folder / MEDIA / photo_name(2)
        unread_ino = unread.stat().st_ino
        shas = {p.name: sha256_of(p) for p in (folder / MEDIA).iterdir()}
        real = hashing.copy_hash_and_check

        def failing_flash(src_fd: int, dst_fd: int, dst_path: Path,
                          **kw: object) -> tuple[Digest, Digest | None]:
            if os.fstat(src_fd).st_ino == unread_ino:
                raise SourceReadError("cannot read at byte 0: Input/output error")
            return real(src_fd, dst_fd, dst_path, **kw)  # type: ignore[arg-type]

        real_gone = Ingestor._gone

        def gone_now(ctx: DockContext, *, wait: float = 2.0) -> bool:
            return real_gone(ctx, wait=0.0)  # asked once: the folder is still there

        with monkeypatch.context() as patched:
            patched.setattr(store_mod, "copy_hash_and_check", failing_flash)
            patched.setattr(Ingestor, "_gone", staticmethod(gone_now))
            outcome = only(scan_once(b.station))

        assert (outcome.state, outcome.wiped) == (SessionState.DONE, 2)
        left = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        assert left == ["DCIM/100MEDIA/" + unread.name, "RECORDER.ID", "notes.txt"]
        assert leftovers(folder) == []
        wiped = b.entries([EventKind.WIPED])
        assert sorted(e.item or "" for e in wiped) == sorted(
            shas[photo_name(n)] for n in range(2))
        for entry in wiped:
            assert entry.item is not None
            assert entry.data["policy"] == "after-local-verify"
            assert entry.data["serial"] == SERIAL
            b.station.store.verify(entry.item)  # the evidence stays whole in the store
            with b.station.catalog.read() as tx:
                (acq,) = tx.acquisitions_of(entry.item)
            assert acq.acquisition.wiped_at == entry.at
            assert acq.acquisition.path == entry.data["path"]
        b.assert_ledger_verifies()


def test_a_wipe_leaves_a_file_whose_stored_copy_is_damaged_or_that_changed(
        tmp_path: Path) -> None:
    with bench(tmp_path, config=wiping("after-local-verify")) as b:
        folder = b.watched(SERIAL, photos(3))
        coordinator = DockCoordinator(b.station)
        try:
            report = coordinator.ingestor.ingest(folder, serial=SERIAL,
                                                 ctx=DockContext(actor="tester"))
            damaged, changed, intact = report.items
            flip_bit(b.object(damaged.sha256), 10)
            rewritten = folder / changed.path
            st = rewritten.stat()
            rewritten.write_bytes(photo(st.st_size - 6))  # same size and time, other bytes
            os.utime(rewritten, ns=(st.st_atime_ns, st.st_mtime_ns))
            new_bytes = rewritten.read_bytes()
            b.clock.advance(minutes=1)
            wiped = coordinator.wipe(report, folder, contextlib.nullcontext)
        finally:
            coordinator.shutdown()
        assert wiped == 1
        assert not (folder / intact.path).exists()
        assert (folder / damaged.path).exists()
        assert rewritten.read_bytes() == new_bytes
        assert [e.item for e in b.entries([EventKind.WIPED])] == [intact.sha256]
        assert leftovers(folder) == []
        b.assert_ledger_verifies()


def test_after_offsite_verify_wipes_once_a_copy_is_proven_off_site(tmp_path: Path) -> None:
    with bench(tmp_path, target=True, config=wiping("after-offsite-verify")) as b:
        folder = b.watched(SERIAL, photos(2))
        first = only(scan_once(b.station))
        assert (first.state, first.wiped) == (SessionState.DONE, 0)
        assert len(list((folder / MEDIA).iterdir())) == 2

        b.clock.advance(minutes=5)
        assert Replicator(b.station, actor="tester").run().ok
        b.clock.advance(minutes=5)
        second = only(scan_once(b.station))

        assert (second.state, second.wiped) == (SessionState.DONE, 2)
        assert list((folder / MEDIA).iterdir()) == []
        assert {e.data["policy"] for e in b.entries([EventKind.WIPED])} == {
            "after-offsite-verify"}
        b.assert_ledger_verifies()


def test_after_offsite_verify_with_no_required_target_wipes_nothing(tmp_path: Path) -> None:
    with bench(tmp_path, target=True, required=False,
               config=wiping("after-offsite-verify")) as b:
        folder = b.watched(SERIAL, photos(1))
        assert only(scan_once(b.station)).state == SessionState.DONE
        assert Replicator(b.station, actor="tester").run().ok
        b.clock.advance(minutes=1)
        assert only(scan_once(b.station)).wiped == 0
        assert len(list((folder / MEDIA).iterdir())) == 1


def test_an_unregistered_recorder_is_refused_with_its_entry_and_nothing_copied(
        b: Bench) -> None:
    folder = b.watched("BWC-9999", photos(2))
    before = snapshot_tree(folder)

    outcome = only(scan_once(b.station))

    assert (outcome.serial, outcome.state, outcome.report) == (
        "BWC-9999", SessionState.REFUSED, None)
    assert "BWC-9999 is not registered" in outcome.error
    (refused,) = b.entries([EventKind.RECORDER_REFUSED])
    assert (refused.data["serial"], refused.data["reason"], refused.data["source"]) == (
        "BWC-9999", "recorder not registered", "watch")
    (session,) = b.sessions()
    assert (session.serial, session.state, session.error) == (
        "BWC-9999", "refused", "recorder not registered")
    assert list(b.station.store.iter_objects()) == []
    assert snapshot_tree(folder) == before
    b.assert_ledger_verifies()


def test_a_folder_whose_identity_file_names_another_recorder_is_refused(b: Bench) -> None:
    b.watched(SERIAL, {**photos(1), "RECORDER.ID": f"{OTHER}\n".encode()})

    outcome = only(scan_once(b.station))

    reason = f"its RECORDER.ID names recorder '{OTHER}', but it docked as '{SERIAL}'"
    assert (outcome.state, outcome.error) == (SessionState.REFUSED, reason)
    (refused,) = b.entries([EventKind.RECORDER_REFUSED])
    assert (refused.data["serial"], refused.data["reason"]) == (SERIAL, reason)
    assert list(b.station.store.iter_objects()) == []


def test_a_folder_named_after_another_registered_recorder_is_refused(tmp_path: Path) -> None:
    with bench(tmp_path, config='[docks]\nidentity = "file"\n') as b:
        registry.register(b.station, Recorder(serial=OTHER, officer="Li Na", officer_id="2"),
                          actor="tester")
        # named by its identity file as SERIAL, in a folder named after OTHER
        b.watched(OTHER, {**photos(1), "RECORDER.ID": f"{SERIAL}\n".encode()})

        outcome = only(scan_once(b.station))

        assert (outcome.serial, outcome.state) == (SERIAL, SessionState.REFUSED)
        assert outcome.error == (f"its folder is named after recorder '{OTHER}', "
                                 f"but it docked as '{SERIAL}'")
        assert [e.data["reason"] for e in b.entries([EventKind.RECORDER_REFUSED])] == [
            outcome.error]
        assert list(b.station.store.iter_objects()) == []


def test_a_folder_that_names_no_recorder_is_refused(tmp_path: Path) -> None:
    with bench(tmp_path, config='[docks]\nidentity = "file"\n') as b:
        b.watched(SERIAL, photos(1))  # no RECORDER.ID

        outcome = only(scan_once(b.station))

        assert (outcome.serial, outcome.state) == ("", SessionState.REFUSED)
        assert outcome.error == "no readable RECORDER.ID: No such file or directory"
        (refused,) = b.entries([EventKind.RECORDER_REFUSED])
        assert (refused.data["serial"], refused.data["reason"]) == ("", outcome.error)
        assert list(b.station.store.iter_objects()) == []


def test_a_recorder_already_being_served_is_refused(b: Bench) -> None:
    folder = b.watched(SERIAL, photos(1))
    with serving(b.station, SERIAL, folder):  # another session holds it
        outcome = only(scan_once(b.station))
    assert outcome.state == SessionState.REFUSED
    assert outcome.error.startswith(f"recorder {SERIAL} is being served already")
    assert list(b.station.store.iter_objects()) == []
    # and once it is let go, the next dock takes it
    b.clock.advance(minutes=1)
    assert only(scan_once(b.station)).state == SessionState.DONE
