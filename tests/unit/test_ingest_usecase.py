"""Ingest, as the use case: a recorder's new files are stored, read back and recorded with
their signed entries; a second dock copies nothing twice; a file that cannot be read, or that
keeps changing, is a failed result saying why, and nothing already stored is lost; what the
walk does not take is counted by kind. On a temporary SQLite home, with photos."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import OFFICER, RECORDED_T0, SERIAL, sha256_of, snapshot_tree
from usecase_helpers import MEDIA, Bench, bench, photo, photo_name

import ingestd.store as store_mod
import ingestd.usecases.ingest as ingest_mod
from ingestd.docks.walk import SourceFile
from ingestd.domain.flags import Flag
from ingestd.domain.models import EventKind, RetentionClass, TimeSource
from ingestd.domain.records import AcquisitionState, SessionState
from ingestd.errors import SourceReadError
from ingestd.integrity import hashing
from ingestd.integrity.hashing import Digest
from ingestd.usecases.audit import audit
from ingestd.usecases.ingest import Ingestor
from tests.support.damage import flip_bit


@pytest.fixture
def b(tmp_path: Path) -> Iterator[Bench]:
    with bench(tmp_path, config="[ingest]\nchanged_retries = 1\n") as made:
        yield made


def test_new_files_are_stored_read_back_and_recorded(b: Bench) -> None:
    rec = b.photos("rec", 2, extra={"notes.txt": b"not footage", "RECORDER.ID": b"BWC-0001\n"})
    os.symlink("/etc/passwd", rec / MEDIA / "LINK.JPG")
    (rec / "SYSTEM").mkdir()
    os.mkfifo(rec / "SYSTEM" / "PIPE.JPG")  # not read: it would wait for a writer for ever
    before = snapshot_tree(rec / "DCIM")  # (a snapshot reads every file: the pipe is apart)

    report = b.dock(rec)

    assert report.state == SessionState.DONE and report.errors == []
    sources = [rec / MEDIA / photo_name(n) for n in range(2)]
    assert [(i.path, i.sha256, i.size, i.state, i.new, i.flags) for i in report.items] == [
        (f"{MEDIA}/{p.name}", sha256_of(p), p.stat().st_size, AcquisitionState.STORED, True, [])
        for p in sources]
    # What the walk did not take is counted by kind; the identity file is ingestd's own.
    assert report.skipped_by_kind() == {"fifo": 1, "symlink": 1, "unmatched": 1}
    assert report.bytes_copied == sum(p.stat().st_size for p in sources)
    assert snapshot_tree(rec / "DCIM") == before, "the recorder was changed"
    assert stat.S_ISFIFO((rec / "SYSTEM" / "PIPE.JPG").lstat().st_mode)

    for n, (result, source) in enumerate(zip(report.items, sources, strict=True)):
        assert b.object(result.sha256).read_bytes() == source.read_bytes()
        item = b.item(result.sha256)
        assert (item.recorder, item.officer, item.original_name) == (
            SERIAL, OFFICER, result.path)
        assert item.recorded_start == RECORDED_T0 + timedelta(minutes=n) == result.recorded_at
        assert item.time_source == TimeSource.FILENAME
        assert item.stored_at == b.clock.now and item.local_present
        # routine: a year from the later of the recording's end and its storage
        assert (item.retention_class, item.retain_until, item.hold) == (
            RetentionClass.ROUTINE, item.stored_at + timedelta(days=365), False)
        assert item.label_deadline == item.stored_at + timedelta(hours=48)
        stored = b.entries([EventKind.STORED], item=result.sha256)
        assert [e.seq for e in stored] == [item.ledger_seq]
        assert stored[0].data["retention"]["retain_until"] is not None

    with b.station.catalog.read() as tx:
        assert report.session_id is not None
        session = tx.session(report.session_id)
    assert session is not None
    assert (session.state, session.files_seen, session.files_new, session.files_known,
            session.files_failed, session.bytes_copied) == (
        SessionState.DONE, 2, 2, 0, 0, report.bytes_copied)
    assert (session.files_skipped, session.skipped) == (3, {"fifo": 1, "symlink": 1,
                                                            "unmatched": 1})
    (skipped,) = b.entries([EventKind.SKIPPED])
    assert skipped.data["by_kind"] == session.skipped and skipped.data["count"] == 3
    kinds = [e.kind for e in b.entries(after=session.ledger_seq or 0)]
    assert kinds.count(EventKind.ACQUIRED) == 2 and kinds.count(EventKind.STORED) == 2
    b.assert_ledger_verifies()


def test_a_second_dock_finds_the_files_known_and_copies_nothing(b: Bench) -> None:
    rec = b.photos("rec", 2)
    first = b.dock(rec)
    objects = sorted(b.station.store.iter_objects())
    head = b.head()
    b.clock.advance(hours=1)

    again = b.dock(rec)

    assert again.state == SessionState.DONE and again.errors == []
    assert [(i.sha256, i.state, i.new) for i in again.items] == [
        (i.sha256, AcquisitionState.KNOWN, False) for i in first.items]
    assert again.bytes_copied == 0
    assert sorted(b.station.store.iter_objects()) == objects, "a second copy was made"
    assert b.entries([EventKind.STORED], after=head) == [], "a second item was recorded"
    for result in first.items:
        item = b.item(result.sha256)
        assert item.stored_at == b.clock.now - timedelta(hours=1)  # the first storage stays
        with b.station.catalog.read() as tx:
            acquired = [a.acquisition.state for a in tx.acquisitions_of(result.sha256)]
        assert acquired == [AcquisitionState.STORED, AcquisitionState.KNOWN]
    b.assert_ledger_verifies()


def test_an_unreadable_file_is_a_failed_result_and_the_rest_is_taken(
        b: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = b.photos("rec", 3)
    bad = rec / MEDIA / photo_name(1)
    bad_ino = bad.stat().st_ino
    real = hashing.copy_hash_and_check

    def failing_flash(src_fd: int, dst_fd: int, dst_path: Path,
                      **kw: object) -> tuple[Digest, Digest | None]:
        if os.fstat(src_fd).st_ino == bad_ino:  # a bad sector: the recorder is still there
            raise SourceReadError("cannot read at byte 0: Input/output error")
        return real(src_fd, dst_fd, dst_path, **kw)  # type: ignore[arg-type]

    with monkeypatch.context() as patched:
        patched.setattr(store_mod, "copy_hash_and_check", failing_flash)
        report = b.dock(rec)

    assert report.state == SessionState.DONE
    assert report.errors == [{"path": f"{MEDIA}/{bad.name}",
                              "error": "cannot read at byte 0: Input/output error"}]
    assert [i.path for i in report.items] == [f"{MEDIA}/{photo_name(n)}" for n in (0, 2)]
    assert sorted(b.station.store.iter_objects()) == sorted(i.sha256 for i in report.items)
    assert list(b.station.store.tmp.iterdir()) == [], "a partial copy was left"
    assert report.session_id is not None
    with b.station.catalog.read() as tx:
        session = tx.session(report.session_id)
        assert tx.item(sha256_of(bad)) is None
    assert session is not None
    assert (session.files_new, session.files_failed) == (2, 1)
    assert "Input/output error" in session.error
    assert bad.read_bytes()[:3] == b"\xff\xd8\xff", "the recorder's file was touched"

    # Nothing is lost: the next dock takes it, and copies the others no more.
    b.clock.advance(minutes=5)
    later = b.dock(rec)
    assert [(i.path, i.new) for i in later.items] == [
        (f"{MEDIA}/{photo_name(0)}", False), (f"{MEDIA}/{bad.name}", True),
        (f"{MEDIA}/{photo_name(2)}", False)]
    assert b.object(sha256_of(bad)).read_bytes() == bad.read_bytes()
    b.assert_ledger_verifies()


def test_a_file_gone_when_its_turn_comes_is_a_failed_result(b: Bench) -> None:
    rec = b.photos("rec", 2)
    doomed = rec / MEDIA / photo_name(1)

    def lose_it(event: str, _src: SourceFile | None, _n: int) -> None:
        if event == "start":  # walked, not yet read
            doomed.unlink()

    report = Ingestor(b.station).ingest(rec, serial=SERIAL, progress=lose_it)
    assert report.state == SessionState.DONE and len(report.items) == 1
    assert report.errors == [{"path": f"{MEDIA}/{doomed.name}",
                              "error": "cannot read: No such file or directory"}]
    b.assert_ledger_verifies()


def test_a_known_file_that_keeps_changing_is_failed_and_its_item_is_kept(
        b: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = b.photos("rec", 2)
    (first, second) = b.dock(rec).items
    head = b.head()
    real = hashing.hash_fd

    def touched_while_read(fd: int, **kw: object) -> Digest:
        digest = real(fd, **kw)  # type: ignore[arg-type]
        st = os.fstat(fd)
        if st.st_ino == (rec / MEDIA / photo_name(1)).stat().st_ino:
            # the recorder writes it again (same bytes) while ingestd reads it
            os.utime(fd, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
        return digest

    b.clock.advance(minutes=10)
    with monkeypatch.context() as patched:
        patched.setattr(ingest_mod, "hash_fd", touched_while_read)
        report = b.dock(rec)

    assert [(i.sha256, i.state) for i in report.items] == [
        (first.sha256, AcquisitionState.KNOWN)]
    assert report.errors == [{"path": second.path,
                              "error": f"{second.path} keeps changing while it is read"}]
    # The item stored before stays whole and unflagged; nothing new is stored or flagged.
    b.station.store.verify(second.sha256, second.size)
    assert b.item(second.sha256).local_present
    kinds = {e.kind for e in b.entries(after=head)}
    assert EventKind.STORED not in kinds and EventKind.FLAGGED not in kinds
    b.assert_ledger_verifies()


def test_a_new_file_that_keeps_changing_is_kept_as_last_read_and_flagged(
        b: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    rec = b.photos("rec", 1)
    source = rec / MEDIA / photo_name(0)
    real = hashing.copy_hash_and_check

    def appended_while_read(src_fd: int, dst_fd: int, dst_path: Path,
                            **kw: object) -> tuple[Digest, Digest | None]:
        digests = real(src_fd, dst_fd, dst_path, **kw)  # type: ignore[arg-type]
        with source.open("ab") as fh:
            fh.write(b"more")
        return digests

    with monkeypatch.context() as patched:
        patched.setattr(store_mod, "copy_hash_and_check", appended_while_read)
        (item,) = b.dock(rec).items

    assert Flag.CHANGED_DURING_COPY in item.flags
    final = source.read_bytes()
    assert item.sha256 == sha256_of(final[:-len(b"more")])  # the last read, whole
    assert sorted(b.station.store.iter_objects()) == [item.sha256], "an unkept read was left"
    with b.station.catalog.read() as tx:
        assert tx.has_flag(item.sha256, Flag.CHANGED_DURING_COPY)
    b.assert_ledger_verifies()


def test_a_damaged_stored_copy_is_repaired_by_the_next_dock_and_the_bad_bytes_kept(
        b: Bench) -> None:
    rec = b.recorder("rec", {f"{MEDIA}/{photo_name(0)}": photo(4000)})
    (item,) = b.dock(rec).items
    flip_bit(b.object(item.sha256), 100)
    b.clock.advance(minutes=1)
    assert not audit(b.station, sample=None, actor="tester").ok  # flagged fixity_failed
    b.clock.advance(minutes=1)

    (again,) = b.dock(rec).items

    assert again.sha256 == item.sha256 and again.state == AcquisitionState.KNOWN
    b.station.store.verify(item.sha256, item.size)
    (repaired,) = b.entries([EventKind.REPAIRED], item=item.sha256)
    kept = b.station.store.root / repaired.data["quarantined_to"]
    assert kept.is_file() and sha256_of(kept) != item.sha256  # the damaged bytes, kept
    b.assert_ledger_verifies()
