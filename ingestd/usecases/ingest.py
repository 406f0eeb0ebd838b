"""Ingest: take every recording off a mounted recorder into the evidence store.

For each file: one pass that reads, hashes and writes; fsync; rename into place; read-back
from disk; probe; then one catalog transaction that records the acquisition, the item, its
flags and their signed ledger entries together. A file whose bytes are already stored is
hashed but not copied again. Nothing on the recorder is ever written.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..docks.walk import SkipKind, Skipped, SourceFile, open_source, walk
from ..domain import policy
from ..domain.canonical import format_time
from ..domain.flags import REASONS, Flag
from ..domain.models import EventKind, MediaInfo, RecordedTime, Recorder
from ..domain.records import AcquisitionState, DockSource, Item, SessionState, retention_data
from ..domain.text import plural
from ..errors import (
    NotRegularFile,
    RecorderError,
    RecorderGone,
    RecorderNotRegistered,
    SourceChanged,
    SourceReadError,
    StoreError,
)
from ..integrity.hashing import Digest, drop_cache, hash_fd, source_read_error
from ..media import probe
from ..ports import CatalogTx
from ..station import Station
from ..store import Repair
from .flags import set_flag
from .liveness import HOST as HOST
from .liveness import process_alive as process_alive
from .liveness import session_abandoned as session_abandoned

log = logging.getLogger(__name__)

Progress = Callable[[str, "SourceFile | None", int], None]

#: How much of a session's skipped list its ``skipped`` ledger entry names (all are counted):
#: a recorder full of stray files must not make one entry megabytes long.
SKIPPED_LISTED = 200
SKIPPED_LISTED_CHARS = 32_000
#: What the walk leaves that is logged a line each only at INFO: names no pattern takes
#: (stray names are many on some recorders) and the recorder's own files.
QUIET_SKIPS = frozenset({SkipKind.UNMATCHED, SkipKind.IGNORED})


@dataclass(frozen=True, kw_only=True)
class Copied:
    """What copying one file gave: its bytes' digest, and what the store did with them."""

    sha256: str
    size: int
    new: bool  # bytes were written to the store
    changed: bool  # the source kept changing while it was read
    repaired: Repair | None = None  # the bytes replaced a damaged object


@dataclass(frozen=True, kw_only=True)
class FileResult:
    """What became of one file: its bytes stored (new, or known already), or not readable
    (``failed``, and ``error`` says why)."""

    sha256: str
    path: str
    size: int
    state: AcquisitionState
    recorded_at: datetime | None
    flags: list[Flag]
    new: bool
    error: str = ""

    @classmethod
    def failed(cls, path: str, error: str) -> FileResult:
        return cls(sha256="", path=path, size=0, state=AcquisitionState.FAILED,
                   recorded_at=None, flags=[], new=False, error=error)

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256, "path": self.path, "size": self.size,
            "state": str(self.state),
            "recorded_at": format_time(self.recorded_at) if self.recorded_at else None,
            "flags": [str(f) for f in self.flags], "new": self.new,
        }


@dataclass(kw_only=True)
class IngestReport:
    serial: str
    session_id: int | None = None
    state: SessionState = SessionState.RUNNING
    items: list[FileResult] = field(default_factory=list)
    errors: list[dict[str, str]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    bytes_copied: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial, "session": self.session_id, "state": str(self.state),
            "items": [i.as_dict() for i in self.items], "errors": self.errors,
            "skipped": self.skipped, "skipped_by_kind": self.skipped_by_kind(),
            "bytes_copied": self.bytes_copied,
        }

    def skipped_by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for skip in self.skipped:
            counts[skip["kind"]] = counts.get(skip["kind"], 0) + 1
        return dict(sorted(counts.items()))


@dataclass(frozen=True, kw_only=True)
class DockContext:
    source: DockSource = DockSource.MANUAL
    actor: str = "ingestd"
    health: dict[str, Any] = field(default_factory=dict)
    #: Is the recorder still there? Asked after a read error, to tell "pulled out" from "bad file".
    present: Callable[[], bool] | None = None
    #: Set on a second stop signal: stop even in the middle of a file.
    abort: threading.Event | None = None
    #: The dock's health once the files are read (read errors, clock, faults): saved with the
    #: session's end, so no one sees a finished session without it.
    health_after: Callable[[IngestReport], dict[str, Any]] | None = None


@dataclass(frozen=True, kw_only=True)
class _Session:
    """One dock session being served: what each of its files is taken with."""

    serial: str
    recorder: Recorder | None  # None: an unregistered recorder, taken in unassigned
    session_id: int
    docked_at: datetime
    dock: DockContext
    report: IngestReport  # filled in as the files are taken
    abort: threading.Event  # set: stop even in the middle of a file
    progress: Progress | None


class Ingestor:
    def __init__(self, station: Station) -> None:
        self.station = station
        self.settings = station.settings
        self.windows = station.settings.windows.policy()
        self.tz = station.settings.ingest.recorder_tz
        self.conventions = station.settings.ingest.conventions()
        self._tally = threading.Lock()  # the report's byte count, added to by file threads

    # -- the session -----------------------------------------------------------------------

    def admit(self, serial: str, *, mountpoint: Path, ctx: DockContext) -> Recorder | None:
        """The registry's answer for a docked recorder; a refusal is recorded and raised."""
        with self.station.catalog.read() as tx:
            rec = tx.recorder(serial)
        if rec is not None:
            return rec
        if self.settings.ingest.unregistered == "unassigned":
            return None
        self.refuse(serial, mountpoint=mountpoint, ctx=ctx, reason="recorder not registered")
        raise RecorderNotRegistered(
            f"recorder {serial} is not registered; nothing was copied. Register it with "
            f"`ingestd devices add {serial} --officer NAME --officer-id ID`, or set "
            "ingest.unregistered = \"unassigned\""
        )

    def interrupt_abandoned(self) -> tuple[int, int]:
        with self.station.catalog.write() as tx:  # the rule of ``session_abandoned``
            return tx.interrupt_abandoned(station=self.station.name, host=HOST,
                                         at=self.station.clock(), alive=process_alive)

    def refuse(self, serial: str, *, mountpoint: Path, ctx: DockContext, reason: str) -> None:
        """Record (ledger and dock sessions) that a recorder was turned away, and why."""
        self._unserved(serial, mountpoint=mountpoint, ctx=ctx, reason=reason,
                       state=SessionState.REFUSED)

    def dock_failed(self, serial: str, *, mountpoint: Path, ctx: DockContext,
                    reason: str) -> None:
        """Record that a registered recorder could not be read at all (never ready, file
        system check impossible, mount refused): visible in status and the ledger."""
        self._unserved(serial, mountpoint=mountpoint, ctx=ctx, reason=reason,
                       state=SessionState.FAILED)

    def _unserved(self, serial: str, *, mountpoint: Path, ctx: DockContext, reason: str,
                  state: SessionState) -> None:
        kind = EventKind.RECORDER_REFUSED if state == SessionState.REFUSED else EventKind.DOCKED
        with self.station.custody.transaction() as tx:
            entry = self.station.custody.record(
                tx, kind=kind, actor=ctx.actor,
                data={"serial": serial, "mountpoint": str(mountpoint), "source": str(ctx.source),
                      "health": ctx.health, "reason": reason, "state": str(state)},
            )
            tx.open_session(
                serial=serial, station=self.station.name, source=ctx.source,
                mountpoint=str(mountpoint), state=state, docked_at=entry.at,
                finished_at=entry.at, health=ctx.health, error=reason, ledger_seq=entry.seq,
                actor=ctx.actor,
            )
        log.warning("%s recorder %r at %s: %s", state, serial, mountpoint, reason,
                    extra={"event": f"recorder_{state}"})

    def ingest(
        self,
        mountpoint: Path,
        *,
        serial: str,
        ctx: DockContext | None = None,
        cancel: threading.Event | None = None,
        progress: Progress | None = None,
    ) -> IngestReport:
        ctx = ctx or DockContext()
        if not mountpoint.is_dir():
            raise RecorderError(f"{mountpoint} is not a folder (is the recorder mounted?)")
        rec = self.admit(serial, mountpoint=mountpoint, ctx=ctx)
        # Work a killed process left behind: its temp files were never stored (copies running
        # now, in other sessions or processes, hold theirs locked and keep them), and its
        # sessions are interrupted (those of live processes are left alone).
        self.station.store.clean_tmp()
        self.interrupt_abandoned()
        report = IngestReport(serial=serial)
        with self.station.custody.transaction() as tx:
            entry = self.station.custody.record(
                tx, kind=EventKind.DOCKED, actor=ctx.actor,
                data={"serial": serial, "officer": rec.officer if rec else "",
                      "source": str(ctx.source), "health": ctx.health,
                      "mountpoint": str(mountpoint)},
            )
            report.session_id = tx.open_session(
                serial=serial, station=self.station.name, source=ctx.source,
                mountpoint=str(mountpoint), state=SessionState.RUNNING, docked_at=entry.at,
                pid=os.getpid(), host=HOST,
                officer=rec.officer if rec else "", health=ctx.health,
                ledger_seq=entry.seq, actor=ctx.actor,
            )
        # Ctrl-C on `ingestd ingest` reaches only this thread: abort the copies in hand too.
        session = _Session(serial=serial, recorder=rec, session_id=report.session_id,
                           docked_at=entry.at, dock=ctx, report=report,
                           abort=ctx.abort if ctx.abort is not None else threading.Event(),
                           progress=progress)
        files: list[SourceFile] = []
        # The recorder's identity file is read by ingestd itself (docks.identity_file): it is
        # no footage left behind.
        identity = os.fsencode(self.settings.docks.identity_file)
        for found in walk(mountpoint, self.settings.ingest.patterns,
                          ignore=self.settings.ingest.ignore):
            if isinstance(found, Skipped) and found.kind == SkipKind.UNMATCHED \
                    and found.rel == identity:
                continue
            if isinstance(found, Skipped):
                report.skipped.append({"path": found.display, "kind": str(found.kind),
                                       "reason": found.reason})
                level = logging.INFO if found.kind in QUIET_SKIPS else logging.WARNING
                log.log(level, "recorder %s: skipped %s: %s", serial, found.display,
                        found.reason, extra={"event": "file_skipped"})
            else:
                files.append(found)
        if report.skipped:
            self._record_skipped(session)
        if progress:
            progress("start", None, sum(f.size for f in files))
        try:
            self._files(files, session, cancel=cancel)
        except RecorderGone as exc:
            report.state = SessionState.INTERRUPTED
            report.errors.append({"path": "", "error": exc.message})
            log.warning("recorder %s: %s", serial, exc.message, extra={"event": "recorder_gone"})
        except StoreError as exc:
            report.state = SessionState.FAILED
            report.errors.append({"path": "", "error": exc.message})
            self._close(session)
            raise
        except BaseException:
            report.state = SessionState.INTERRUPTED
            self._close(session)
            raise
        self._close(session)
        return report

    def _record_skipped(self, session: _Session) -> None:
        """What the walk did not take, counted by kind in the session and in the ledger (with
        the first paths): footage left on a recorder must be seen before a window is missed."""
        report = session.report
        by_kind = report.skipped_by_kind()
        listed: list[dict[str, str]] = []
        chars = 0
        for skip in report.skipped[:SKIPPED_LISTED]:
            chars += len(skip["path"]) + len(skip["kind"])
            if chars > SKIPPED_LISTED_CHARS:
                break
            listed.append({"path": skip["path"], "kind": skip["kind"]})
        with self.station.custody.transaction() as tx:
            self.station.custody.record(
                tx, kind=EventKind.SKIPPED, actor=session.dock.actor,
                data={"session": session.session_id, "serial": report.serial,
                      "count": len(report.skipped), "by_kind": by_kind, "paths": listed,
                      "unlisted": len(report.skipped) - len(listed)},
                at=self.station.clock(),
            )
            tx.session_skipped(session.session_id, by_kind=by_kind)
        level = logging.INFO if set(by_kind) == {SkipKind.IGNORED} else logging.WARNING
        log.log(level, "recorder %s: %s not taken (%s)", report.serial,
                plural(len(report.skipped), "file"),
                ", ".join(f"{k} {n}" for k, n in by_kind.items()),
                extra={"event": "files_skipped"})

    def _files(self, files: list[SourceFile], session: _Session, *,
               cancel: threading.Event | None) -> None:
        """Take ``files`` on up to ``ingest.parallel_files`` threads, so that one file's fsync,
        read-back and catalog commit overlap the next one's copy. A stop (``cancel``) lets the
        files in hand finish; a recorder pulled out, a store failure or an abort ends the
        session once the files in hand have ended. The report lists files in walk order."""
        batch = _Batch(files, cancel)

        def work() -> None:
            while (taken := batch.take()) is not None:
                index, src = taken
                try:
                    batch.results[index] = self._one(src, session)
                except BaseException as exc:  # noqa: BLE001 - raised again by the session
                    batch.fail(exc)

        count = min(self.settings.ingest.parallel_files, len(files))
        workers = [threading.Thread(target=work, name=f"ingestd-file-{n}", daemon=True)
                   for n in range(count)] if count > 1 else []
        if not workers:
            work()  # one at a time: in this thread
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        except BaseException:
            batch.halt.set()
            session.abort.set()
            for worker in workers:
                worker.join()
            raise
        finally:
            batch.report_into(session.report)
        if batch.failures:
            # A recorder pulled out is what the user must hear of, whatever else failed with it.
            gone = [exc for exc in batch.failures if isinstance(exc, RecorderGone)]
            raise (gone or batch.failures)[0]
        session.report.state = SessionState.INTERRUPTED if batch.stopped else SessionState.DONE

    def _close(self, session: _Session) -> None:
        report, dock = session.report, session.dock
        health = dock.health_after(report) if dock.health_after is not None else None
        with self.station.catalog.write() as tx:
            tx.close_session(
                session.session_id, state=report.state, finished_at=self.station.clock(),
                files_seen=len(report.items) + len(report.errors),
                files_new=sum(1 for i in report.items if i.new),
                files_known=sum(1 for i in report.items if not i.new),
                files_failed=len(report.errors), bytes_copied=report.bytes_copied,
                error="; ".join(e["error"] for e in report.errors)[:2000], health=health,
            )

    # -- one file --------------------------------------------------------------------------

    def _one(self, src: SourceFile, session: _Session) -> FileResult:
        """One file: stored, found known, or not readable (a failed result saying why)."""
        serial, progress = session.serial, session.progress
        # Not waited onto the disk: a power cut that loses it loses a copy that was not
        # finished either (the session is interrupted all the same); what follows makes it so.
        with self.station.catalog.write(durable=False) as tx:
            acq_id = tx.start_acquisition(
                session_id=session.session_id, serial=serial, path=src.display,
                path_hex=src.rel.hex(), size=src.size, mtime_ns=src.mtime_ns,
                started_at=self.station.clock(),
            )
            known = tx.known_source(serial=serial, path_hex=src.rel.hex(), size=src.size,
                                   mtime_ns=src.mtime_ns)
            if known is not None and tx.has_flag(known, Flag.FIXITY_FAILED):
                # The stored copy was found damaged: copy these bytes again, so that intact
                # ones can take its place (the store verifies it and keeps the bad bytes).
                known = None
        if progress:
            progress("file", src, 0)
        try:
            on_bytes = (lambda n: progress("bytes", src, n)) if progress else None
            copied = self._copy(src, known=known, abort=session.abort, on_bytes=on_bytes)
        except (OSError, RecorderError) as exc:
            reason = exc.message if isinstance(exc, RecorderError) else (
                f"cannot read: {exc.strerror or exc}")
            if not isinstance(exc, NotRegularFile | SourceChanged) and self._gone(session.dock):
                self._end_acquisition(acq_id, AcquisitionState.INTERRUPTED,
                                      "recorder removed during copy")
                raise RecorderGone(f"recorder {serial} was removed while {src.display} was "
                                   "copied; it is resumed when docked again") from None
            self._end_acquisition(acq_id, AcquisitionState.FAILED, reason)
            log.error("recorder %s: %s: %s", serial, src.display, reason)
            return FileResult.failed(src.display, reason)
        except StoreError as exc:
            self._end_acquisition(acq_id, AcquisitionState.FAILED, exc.message)
            # The same error (its class, its exit code), saying which recorder file it met.
            raise type(exc)(f"storing {src.display}: {exc.message}") from exc
        except BaseException:
            self._end_acquisition(acq_id, AcquisitionState.INTERRUPTED, "stopped during copy")
            raise
        if copied.new:
            with self._tally:
                session.report.bytes_copied += copied.size
        result = self._record(src, session, acq_id=acq_id, copied=copied)
        if progress:
            progress("done", src, copied.size)
        return result

    @staticmethod
    def _gone(ctx: DockContext, *, wait: float = 2.0) -> bool:
        """After a read error: was the recorder pulled out? The kernel fails reads a moment
        before it removes the device, so look again for a short while before answering no."""
        if ctx.present is None:
            return False
        deadline = time.monotonic() + wait
        while True:
            if not ctx.present():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def _end_acquisition(self, acq_id: int, state: AcquisitionState, error: str) -> None:
        with self.station.catalog.write() as tx:
            tx.acquisition_failed(acq_id, state=state, error=error, at=self.station.clock())

    def _copy(self, src: SourceFile, *, known: str | None,
              abort: threading.Event | None = None,
              on_bytes: Callable[[int], None] | None = None) -> Copied:
        store = self.station.store
        attempts = self.settings.ingest.changed_retries + 1
        for attempt in range(1, attempts + 1):
            fd = open_source(src.path)
            try:
                before = os.fstat(fd)
                if (before.st_dev, before.st_ino) != (src.dev, src.ino):
                    # Not the file the walk found: replaced since, or reached through a folder
                    # swapped for a link to somewhere else. Nothing of it is read.
                    raise SourceChanged(
                        f"{src.display} is no longer the file found on the recorder (replaced, "
                        "or a folder on its path swapped since the recorder was walked): not "
                        "read; it is looked at again at the next dock")
                # An unstable read enters the store only on the last attempt (flagged then):
                # earlier ones are discarded, so no object is left that no item names.
                check = _SourceCheck(fd, before, again=self.settings.ingest.verify_source,
                                     buffer_size=store.buffer_size)
                keep = functools.partial(_keep_copy, check, last=attempt == attempts)

                repaired: Repair | None = None
                matched = False  # the bytes hash to the stored copy's name: read right
                if known is not None and store.has(known):
                    digest = hash_fd(fd, buffer_size=store.buffer_size, on_bytes=on_bytes)
                    new, matched = False, digest.sha256 == known
                    if not matched:
                        # Different bytes under the same name, size and time: copy them now
                        # (moving on to the next attempt could leave none to copy them in).
                        known = None
                        os.lseek(fd, 0, os.SEEK_SET)
                        written = store.put_from_fd(fd, abort=abort, accept=keep, on_bytes=on_bytes)
                        digest, new, repaired = written.digest, written.new, written.repaired
                else:
                    written = store.put_from_fd(fd, abort=abort, accept=keep, on_bytes=on_bytes)
                    digest, new, repaired = written.digest, written.new, written.repaired
                # Bytes read right need no second read: only the file's stability is checked.
                stable = _unchanged(fd, before, digest) if matched else check(digest)
            finally:
                os.close(fd)
            # A copy that replaced a damaged object was accepted, so this attempt is the one
            # returned: its repair is recorded with the acquisition.
            if stable:
                return Copied(sha256=digest.sha256, size=digest.size, new=new, changed=False,
                              repaired=repaired)
            if check.read_differently:
                log.warning("%s read differently the second time, unchanged on the recorder "
                            "(attempt %d of %d)", src.display, attempt, attempts)
            else:
                log.warning("%s changed while being copied (attempt %d of %d)",
                            src.display, attempt, attempts)
        # Still changing: keep what was read (it is verified in the store) and flag it; the
        # recorder's file is untouched and is read again at the next dock.
        if known is None:
            return Copied(sha256=digest.sha256, size=digest.size, new=new, changed=True,
                          repaired=repaired)
        raise SourceChanged(f"{src.display} keeps changing while it is read")

    def _record(self, src: SourceFile, session: _Session, *, acq_id: int,
                copied: Copied) -> FileResult:
        sha, size = copied.sha256, copied.size
        custody = self.station.custody
        with self.station.catalog.read() as tx:
            existing = tx.item(sha)
        media: MediaInfo | None = None
        if existing is None:
            media = probe(self.station.store.path_of(sha),
                          timeout=self.settings.ingest.probe_timeout.total_seconds())
        with custody.transaction() as tx:
            # Taken with the catalog in hand, so the entries it dates follow the ledger's.
            now = custody.now(tx)
            existing = tx.item(sha)  # another recorder may have stored it meanwhile
            acquired = custody.record(
                tx, kind=EventKind.ACQUIRED, actor=session.dock.actor, item=sha,
                data={"serial": session.serial, "path": src.display,
                      "path_hex": src.rel.hex(), "size": size, "mtime_ns": src.mtime_ns,
                      "acquisition": acq_id, "copied": copied.new},
                at=now,
            )
            state = AcquisitionState.STORED if existing is None else AcquisitionState.KNOWN
            if existing is None:
                assert media is not None
                recorded_at = self._new_item(tx, session, src=src, copied=copied, media=media,
                                             now=now).start
            else:
                recorded_at = existing.recorded_start
                # Back in the local store only if the object really is there: the retention
                # sweep may have removed it since this copy found it.
                if not existing.local_present and self.station.store.has(sha):
                    tx.set_local_present(sha, True)
            if copied.repaired is not None:
                custody.record(
                    tx, kind=EventKind.REPAIRED, actor=session.dock.actor, item=sha,
                    data={"problem": copied.repaired.problem,
                          "quarantined_to": copied.repaired.quarantined_to,
                          "serial": session.serial, "path": src.display,
                          "acquisition": acq_id},
                    at=now,
                )
                log.warning("item %s repaired from %s %s; damaged bytes kept at %s", sha[:12],
                            session.serial, src.display, copied.repaired.quarantined_to,
                            extra={"event": "object_repaired"})
            # The size acquired, as the ledger entry states it (a file that grew while it was
            # copied differs from the size seen when the recorder was walked).
            tx.acquisition_stored(acq_id, state=state, item=sha, size=size, at=now,
                                  ledger_seq=acquired.seq)
            all_flags = [f.flag for f in tx.item_flags(sha)]
        return FileResult(sha256=sha, path=src.display, size=size, state=state,
                          recorded_at=recorded_at, flags=all_flags, new=existing is None)

    def _new_item(self, tx: CatalogTx, session: _Session, *, src: SourceFile, copied: Copied,
                  media: MediaInfo, now: datetime) -> RecordedTime:
        custody = self.station.custody
        sha, size, rec = copied.sha256, copied.size, session.recorder
        recorded = policy.recorded_time(
            media=media if media.ok else None, name=os.fsdecode(os.path.basename(src.rel)),
            file_mtime=datetime.fromtimestamp(src.mtime_ns / 1e9, UTC),
            conventions=self.conventions, tz=self.tz,
        )
        flags = policy.ingest_flags(
            recorded=recorded, stored_at=now, docked_at=session.docked_at, windows=self.windows,
            clock_tolerance=self.settings.ingest.clock_tolerance,
        )
        if size == 0:
            flags.add(Flag.EMPTY_FILE)
        if not media.ok:
            flags.add(Flag.DAMAGED_MEDIA)
        if copied.changed:
            flags.add(Flag.CHANGED_DURING_COPY)
        if rec is None:
            flags.add(Flag.UNREGISTERED_RECORDER)
        deadlines = policy.deadlines(recorded_end=recorded.end, stored_at=now,
                                     windows=self.windows)
        keep = policy.retention(recorded_end=recorded.end, stored_at=now, has_case=False,
                                categories=(), hold=False,
                                policy=self.settings.retention.policy())
        officer = rec.officer if rec else ""
        stored = custody.record(
            tx, kind=EventKind.STORED, actor=session.dock.actor, item=sha,
            data={"size": size, "recorder": session.serial, "officer": officer,
                  "officer_id": rec.officer_id if rec else "",
                  "recorded_start": format_time(recorded.start),
                  "recorded_end": format_time(recorded.end), "time_source": recorded.source,
                  "media": media.as_dict(), "original_name": src.display,
                  "retention": retention_data(keep)},
            at=now,
        )
        tx.insert_item(Item(
            sha256=sha, size=size, stored_at=now, station=self.station.name,
            recorder=session.serial, officer=officer, original_name=src.display,
            recorded_start=recorded.start, recorded_end=recorded.end,
            time_source=recorded.source, duration=media.duration, media=media.as_dict(),
            ingest_deadline=deadlines.ingest, label_deadline=deadlines.label,
            replication_deadline=deadlines.replication, retention_class=keep.cls,
            retain_until=keep.until, hold=False, local_present=True, ledger_seq=stored.seq,
        ))
        for flag in sorted(flags):
            set_flag(self.station, tx, sha, flag, at=now, actor=session.dock.actor,
                     detail=_flag_detail(flag, recorded, deadlines.ingest, media,
                                         session.docked_at))
        return recorded


class _Batch:
    """One session's files, handed out in walk order to its file threads, and what became of
    each."""

    def __init__(self, files: list[SourceFile], cancel: threading.Event | None) -> None:
        self.results: list[FileResult | None] = [None] * len(files)
        self.failures: list[BaseException] = []
        self.halt = threading.Event()  # stop handing out files: something ended the session
        self.stopped = False  # a stop was asked for with files left
        self._cancel = cancel
        self._next = iter(enumerate(files))
        self._lock = threading.Lock()

    def take(self) -> tuple[int, SourceFile] | None:
        with self._lock:
            if self.halt.is_set():
                return None
            taken = next(self._next, None)
            if taken is not None and self._cancel is not None and self._cancel.is_set():
                self.stopped = True
                return None
            return taken

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self.failures.append(exc)
            self.halt.set()

    def report_into(self, report: IngestReport) -> None:
        for result in self.results:
            if result is None:
                continue
            if result.state == AcquisitionState.FAILED:
                report.errors.append({"path": result.path, "error": result.error})
            else:
                report.items.append(result)


def _unchanged(fd: int, before: os.stat_result, digest: Digest) -> bool:
    """Did the open source keep its size and times while ``digest`` was read from it? The
    change time too: a writer can put the modification time back (``touch -d``, ``utime``),
    but no one can set the change time, which any write moves."""
    after = os.fstat(fd)
    return (before.st_size == after.st_size == digest.size
            and before.st_mtime_ns == after.st_mtime_ns
            and before.st_ctime_ns == after.st_ctime_ns)


class _SourceCheck:
    """Is what was read from the open source the file as it is? Asked of a read once it is
    complete (before its copy enters the store) and again after; answered once per read.

    The file must have kept its size and times (:func:`_unchanged`). With ``again``
    (``[ingest] verify_source``), it is also read a second time, from the device (its cached
    pages dropped; a large one is read with ``O_DIRECT`` as before), and both reads must hash
    alike: the read-back proves the store holds what was read, and this, that what was read
    is what the recorder holds (a recorder or a cable that gives a wrong byte once, without
    an error, is caught)."""

    def __init__(self, fd: int, before: os.stat_result, *, again: bool,
                 buffer_size: int) -> None:
        self.fd, self.before, self.again, self.buffer_size = fd, before, again, buffer_size
        self.read_differently = False
        self._answers: dict[Digest, bool] = {}

    def __call__(self, digest: Digest) -> bool:
        if digest not in self._answers:
            self._answers[digest] = self._answer(digest)
        return self._answers[digest]

    def _answer(self, digest: Digest) -> bool:
        if self.again:
            drop_cache(self.fd)
            # A failure is the recorder's (pulled, a bad sector), not the store's.
            try:
                second = hash_fd(self.fd, buffer_size=self.buffer_size)
            except OSError as exc:
                raise SourceReadError("reading it a second time: "
                                      + source_read_error(self.fd, exc).message) from exc
            except SourceReadError as exc:
                raise SourceReadError(f"reading it a second time: {exc.message}") from exc
            if second != digest:
                self.read_differently = _unchanged(self.fd, self.before, digest)
                return False
        return _unchanged(self.fd, self.before, digest)


def _keep_copy(check: _SourceCheck, digest: Digest, *, last: bool) -> bool:
    return last or check(digest)


def _flag_detail(flag: Flag, recorded: RecordedTime, ingest_deadline: datetime,
                 media: MediaInfo, docked_at: datetime) -> str:
    if flag == Flag.LATE_INGEST:
        return (f"recording ended {format_time(recorded.end)}, "
                f"deadline {format_time(ingest_deadline)}")
    if flag == Flag.DAMAGED_MEDIA:
        return media.error
    if flag in (Flag.CLOCK_UNSET, Flag.CLOCK_SKEW):
        return (f"recorded time {format_time(recorded.start)} ({recorded.source}), "
                f"docked {format_time(docked_at)}")
    return REASONS[flag]

