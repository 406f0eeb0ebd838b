"""Docking: many recorders at once, each in its own session, unattended.

A recorder arrives from a source (a folder under the watched mount root, or a udev block
device), is checked against the registry, measured (space, file system, battery, clock),
ingested, optionally wiped as policy allows, and let go. Up to ``max_parallel_recorders``
run at the same time, each on its own thread, so a slow or huge recorder does not hold the
others back; more wait their turn in arrival order. One recorder is never ingested twice at
once: a dock event for a busy recorder is remembered and served when it finishes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..docks import mounts, wipe
from ..docks.udev import wait_ready
from ..docks.watch import FolderDock, WatchDockSource, clean_serial, read_identity
from ..domain import policy, text
from ..domain.docks import DockEvent
from ..domain.models import EventKind
from ..domain.policy import FsCheck, WipeBar, WipeMode
from ..domain.records import Acquisition, AcquisitionState, DockSource, SessionState
from ..errors import IngestdError, RecorderError, RecorderNotRegistered, RecorderRefused
from ..integrity.hashing import hash_fd
from ..ports import CatalogTx
from ..station import Station
from ..targets.factory import target_locations
from .ingest import DockContext, Ingestor, IngestReport

log = logging.getLogger(__name__)


class _NoLongerEligible(Exception):
    """A file found eligible for a wipe is not, once the catalog is in hand."""

LOW_BATTERY = 20  # percent
LOW_SPACE = 0.05  # fraction of the recorder's storage still free


@dataclass(kw_only=True)
class Outcome:
    serial: str
    state: SessionState
    report: IngestReport | None = None
    error: str = ""
    wiped: int = 0


@dataclass(kw_only=True)
class _Job:
    key: str  # what makes two docks "the same recorder"
    serial: str
    run: Callable[[], Outcome]
    again: bool = False
    done: list[Outcome] = field(default_factory=list)


def folder_health(path: Path) -> dict[str, Any]:
    health: dict[str, Any] = {}
    try:
        use = mounts.usage(path)
        health.update(total_bytes=use.total_bytes, free_bytes=use.free_bytes)
    except RecorderError as exc:
        health["faults"] = [exc.message]
    entry = _mount_holding(path)
    if entry is not None:
        health["fs_type"] = entry.fs_type
    return health


def _mount_holding(path: Path) -> mounts.MountEntry | None:
    """The mount whose file system holds ``path``: the recorder's own mount when the OS mounted
    it at the folder, else the one the folder lives on (the topmost, if stacked)."""
    target = os.path.realpath(path)
    found: mounts.MountEntry | None = None
    for entry in mounts.mount_entries():
        point = entry.mount_point
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and (found is None or len(point) >= len(found.mount_point)):
            found = entry
    return found


def identity_mismatch(station: Station, path: Path, serial: str) -> str:
    """Why the recorder at ``path`` may not be taken as ``serial`` ("" when its names agree).

    A recorder is named by its folder (or device), and may also carry an identity file; a
    folder named after one registered recorder holding another's files must not be taken
    silently as either: the officer it would be filed under could be the wrong one."""
    identity_file = station.settings.docks.identity_file
    try:
        claimed: str | None = read_identity(path, identity_file)
    except FileNotFoundError:
        claimed = None
    except OSError as exc:
        return f"its {identity_file} cannot be read: {exc.strerror}"
    if claimed is not None and claimed != serial:
        return (f"its {identity_file} names recorder {claimed or '(none)'!r}, "
                f"but it docked as {serial!r}")
    name = path.name
    if name != serial and clean_serial(name) == name:
        with station.catalog.read() as tx:
            other = tx.recorder(name)
        if other is not None:
            return f"its folder is named after recorder {name!r}, but it docked as {serial!r}"
    return ""


@contextlib.contextmanager
def serving(station: Station, serial: str, path: Path) -> Iterator[None]:
    """Hold ``serial`` for one session, across every ingestd process of this station.

    A lock file per serial in the runtime folder (``flock``, so a killed holder lets go);
    :class:`RecorderRefused` if another session holds it. The file is removed while still
    locked, and a lock taken on a file no longer at its name is taken again."""
    runtime = station.settings.runtime_dir
    lock = runtime / f".{mounts.mount_point_for(runtime, serial).name}.serving"
    runtime.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode("utf-8", "replace").strip()
            os.close(fd)
            raise RecorderRefused(
                f"recorder {serial} is being served already ({holder or 'by another session'})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            if os.fstat(fd).st_ino == os.stat(lock, follow_symlinks=False).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # its holder removed it as we locked it: try the new one
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"process {os.getpid()} from {path}".encode())
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def faults_of(health: dict[str, Any]) -> list[str]:
    faults = list(health.get("faults", []))
    battery = health.get("battery_percent")
    if isinstance(battery, int) and battery < LOW_BATTERY:
        faults.append(f"battery low: {battery}%")
    total, free = health.get("total_bytes"), health.get("free_bytes")
    if isinstance(total, int) and isinstance(free, int) and total and free / total < LOW_SPACE:
        faults.append(f"storage nearly full: {free} of {total} bytes free")
    check = health.get("fs_check")
    if isinstance(check, dict) and not check.get("clean", True):
        faults.append(f"file system errors: {check.get('message', '')[:200]}")
    if health.get("wipe_blocked"):
        faults.append(f"not wiped: {health['wipe_blocked']}")
    if health.get("read_errors"):
        faults.append(f"{health['read_errors']} files could not be read")
    ahead = health.get("clock_ahead_seconds")
    if isinstance(ahead, (int, float)) and ahead > 0:
        faults.append(f"recorder clock ahead of the station by about {ahead:.0f}s")
    return faults


class DockCoordinator:
    def __init__(self, station: Station, *, stop: threading.Event | None = None,
                 abort: threading.Event | None = None) -> None:
        self.station = station
        self.settings = station.settings
        self.ingestor = Ingestor(station)
        self.stop = stop or threading.Event()
        self.abort = abort or threading.Event()
        self._pool = ThreadPoolExecutor(
            max_workers=self.settings.docks.max_parallel_recorders,
            thread_name_prefix="ingestd-dock",
        )
        self._lock = threading.Lock()
        self._active: dict[str, _Job] = {}
        self._futures: set[Future[None]] = set()
        self._plugged: set[str] = set()
        self.outcomes: list[Outcome] = []
        self._idle = threading.Condition(self._lock)
        #: called after each session ends (the daemon evaluates its alerts then)
        self.after_session: Callable[[], None] | None = None

    # -- intake --------------------------------------------------------------------------

    def folder(self, dock: FolderDock) -> None:
        """A folder under the watched root appeared or changed (and settled), or went away."""
        if dock.action == "remove":
            log.info("recorder folder %s is gone", dock.path)
            return
        key = f"watch:{dock.path}"
        self._submit(_Job(key=key, serial=dock.serial,
                          run=lambda: self._ingest_folder(dock)))

    def device(self, event: DockEvent) -> None:
        """A udev block device was added (or became readable) or removed."""
        dev = event.device
        plug = f"udev:{dev.devnode}:{dev.serial}:{dev.fs_uuid}"
        if event.action == "remove":
            with self._lock:
                self._plugged.discard(plug)
            log.warning("recorder %s (%s) removed", dev.serial or "?", dev.devnode,
                        extra={"event": "recorder_removed"})
            return
        if event.action != "add":
            return
        with self._lock:
            if plug in self._plugged:
                return  # announced twice (enumeration and event): served once per plug
            self._plugged.add(plug)
        self._submit(_Job(key=f"udev:{dev.devnode}", serial=dev.serial,
                          run=lambda: self._ingest_device(event)))

    def _submit(self, job: _Job) -> None:
        with self._lock:
            if self.stop.is_set():
                log.warning("not starting %s: stopping", job.key)
                return
            running = self._active.get(job.key)
            if running is not None:
                # Served once the running session ends, as what was docked last: the same
                # device node may now hold another recorder.
                running.run, running.serial, running.again = job.run, job.serial, True
                return
            self._active[job.key] = job
            future = self._pool.submit(self._drive, job)
            self._futures.add(future)
            future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)
            self._idle.notify_all()

    def _drive(self, job: _Job) -> None:
        try:
            while True:
                try:
                    outcome = job.run()
                except Exception as exc:  # one recorder's failure must not stop the station
                    log.exception("dock %s failed", job.key)
                    outcome = Outcome(serial=job.serial, state=SessionState.FAILED,
                                      error=str(exc))
                with self._lock:
                    self.outcomes.append(outcome)
                    again = job.again and not self.stop.is_set()
                    job.again = False
                self._session_ended()
                if not again:
                    return
        except BaseException:  # an abort (second stop signal): the session says interrupted
            with self._lock:
                self.outcomes.append(Outcome(serial=job.serial, state=SessionState.INTERRUPTED,
                                             error="aborted"))
            raise
        finally:
            with self._lock:
                self._active.pop(job.key, None)

    def _session_ended(self) -> None:
        if self.after_session is not None:
            try:
                self.after_session()
            except Exception:  # news of a dock must not fail the dock
                log.exception("after a dock session")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no recorder is being served (for ``--once`` runs and tests)."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._futures and not self._active, timeout)

    def busy(self) -> list[str]:
        with self._lock:
            return sorted(job.serial or job.key for job in self._active.values())

    def shutdown(self, *, wait: bool = True) -> None:
        self.stop.set()
        self._pool.shutdown(wait=wait, cancel_futures=True)

    # -- one recorder: watched folder ----------------------------------------------------

    def _ingest_folder(self, dock: FolderDock) -> Outcome:
        path = dock.path
        ctx = DockContext(source=DockSource.WATCH, actor="ingestd", health=folder_health(path),
                          present=path.is_dir, abort=self.abort)
        if not dock.serial:
            self.ingestor.refuse("", mountpoint=path, ctx=ctx, reason=dock.problem)
            return Outcome(serial="", state=SessionState.REFUSED, error=dock.problem)
        return self._session(dock.serial, path, ctx, writable=contextlib.nullcontext)

    # -- one recorder: udev block device -------------------------------------------------

    def _ingest_device(self, event: DockEvent) -> Outcome:
        dev = event.device
        serial = dev.serial
        base_health: dict[str, Any] = {
            "devnode": dev.devnode, "fs_type": dev.fs_type, "vendor": dev.vendor,
            "model": dev.model, "fs_uuid": dev.fs_uuid, "fs_label": dev.fs_label,
        }
        if dev.battery_percent is not None:
            base_health["battery_percent"] = dev.battery_percent
        where = mounts.mount_point_for(self.settings.runtime_dir, serial or dev.devnode,
                                       partition=dev.fs_uuid or dev.devnode)
        probe_ctx = DockContext(source=DockSource.UDEV, health=base_health)
        if not serial:
            self.ingestor.refuse("", mountpoint=where, ctx=probe_ctx,
                                 reason=f"{dev.devnode} reports no USB serial number")
            return Outcome(serial="", state=SessionState.REFUSED, error="no serial")
        # A serial is the device's own word: one that cannot be stored as it is (too long, or
        # with control characters) is refused, shown escaped and cut short, never stored.
        problem = text.text_problem("its USB serial number", serial, limit=text.SERIAL_MAX)
        if problem:
            shown = text.printable(serial[:text.SERIAL_MAX])
            self.ingestor.refuse("", mountpoint=where, ctx=probe_ctx,
                                 reason=f"{dev.devnode}: {problem} ({shown})")
            return Outcome(serial="", state=SessionState.REFUSED, error=problem)
        try:
            self.ingestor.admit(serial, mountpoint=where, ctx=probe_ctx)
        except RecorderNotRegistered as exc:  # recorded already; never mounted
            return Outcome(serial=serial, state=SessionState.REFUSED, error=exc.message)
        try:
            mount = self._prepare_device(dev.devnode, dev.fs_type, where, base_health)
        except RecorderError as exc:
            self.ingestor.dock_failed(serial, mountpoint=where, ctx=probe_ctx, reason=exc.message)
            return Outcome(serial=serial, state=SessionState.FAILED, error=exc.message)
        with mount:
            use = mounts.usage(mount.path)
            base_health.update(total_bytes=use.total_bytes, free_bytes=use.free_bytes)
            blocked = self._wipe_blocked(base_health, mount)
            if blocked:
                base_health["wipe_blocked"] = blocked
            ctx = DockContext(source=DockSource.UDEV, health=base_health,
                              present=lambda: os.path.exists(dev.devnode) and mount.mounted,
                              abort=self.abort)

            @contextlib.contextmanager
            def rw() -> Iterator[object]:
                with mounts.writable(mount):
                    yield mount

            return self._session(serial, mount.path, ctx, writable=rw)

    def _wipe_blocked(self, health: dict[str, Any], mount: mounts.Mount) -> str:
        """Why this recorder must not be made writable for a wipe ("" if nothing forbids it,
        or if it is never wiped), as ``policy.recorder_wipe_bar`` says, in the words its
        session's health keeps."""
        check = health.get("fs_check")
        if isinstance(check, dict):
            fs_check = FsCheck.CLEAN if check.get("clean") else FsCheck.ERRORS
            tool = check.get("tool", "the check")
        else:
            fs_check, tool = FsCheck.NOT_RUN, ""
        bar = policy.recorder_wipe_bar(mode=self._wipe_mode, fs_check=fs_check,
                                       fusefat=mount.driver == "fusefat",
                                       fusefat_write=self.settings.docks.fusefat_write)
        if bar is WipeBar.FS_NOT_CHECKED:
            return "its file system was not checked (docks.fs_check = false)"
        if bar is WipeBar.FS_ERRORS:
            return f"{tool} found file system errors"
        if bar is WipeBar.FUSEFAT_WRITE_OFF:
            return "FAT through fusefat is written only with docks.fusefat_write = true"
        return ""  # nothing forbids it, or it is never wiped: no fault of the recorder

    def _prepare_device(self, devnode: str, fs_type: str, where: Path,
                        health: dict[str, Any]) -> mounts.Mount:
        """Wait until the device reads, check its file system (read-only), mount it."""
        wait_ready(devnode, self.settings.docks.ready_timeout.total_seconds())
        if self.settings.docks.fs_check:
            check = mounts.fs_check(devnode, fs_type)
            health["fs_check"] = {"clean": check.clean, "tool": check.tool,
                                  "message": check.message[-500:]}
        return mounts.mount_readonly(devnode, fs_type, where)

    # -- the session, whatever the source ------------------------------------------------

    def _session(self, serial: str, path: Path, ctx: DockContext,
                 writable: Callable[[], contextlib.AbstractContextManager[object]]) -> Outcome:
        reason = identity_mismatch(self.station, path, serial)
        try:
            if reason:
                raise RecorderRefused(reason)
            with serving(self.station, serial, path):
                return self._serve(serial, path, ctx, writable)
        except RecorderRefused as exc:
            self.ingestor.refuse(serial, mountpoint=path, ctx=ctx, reason=exc.message)
            return Outcome(serial=serial, state=SessionState.REFUSED, error=exc.message)

    def _serve(self, serial: str, path: Path, ctx: DockContext,
               writable: Callable[[], contextlib.AbstractContextManager[object]]) -> Outcome:
        started = time.monotonic()
        outcome = self._serve_files(serial, path, ctx, writable)
        if outcome.report is not None:
            self._log_served(outcome, time.monotonic() - started)
        return outcome

    def _log_served(self, outcome: Outcome, seconds: float) -> None:
        """One INFO line a dock served: whose recorder, what its files became, how long it
        took, and where it stands. The officer by id: names stay out of the log."""
        report = outcome.report
        assert report is not None
        with self.station.catalog.read() as tx:
            rec = tx.recorder(outcome.serial)
        officer = rec.officer_id if rec is not None else "unassigned"
        new = sum(1 for i in report.items if i.new)
        flagged = sum(1 for i in report.items if i.flags)
        fields = {"serial": outcome.serial, "officer_id": officer,
                  "session": report.session_id, "state": str(outcome.state),
                  "files_new": new, "files_known": len(report.items) - new,
                  "files_skipped": len(report.skipped), "files_failed": len(report.errors),
                  "bytes": report.bytes_copied, "seconds": round(seconds, 3),
                  "flagged": flagged, "wiped": outcome.wiped}
        stands = str(outcome.state)
        if flagged:
            stands += f", {flagged} flagged"
        if outcome.wiped:
            stands += f", {outcome.wiped} wiped from the recorder"
        log.info("recorder %s (officer %s) served in %.1f s: %d new, %d known, %d skipped, "
                 "%d failed, %.1f MiB copied; session %s %s", outcome.serial, officer,
                 seconds, new, len(report.items) - new, len(report.skipped),
                 len(report.errors), report.bytes_copied / 2**20, report.session_id, stands,
                 extra={"event": "dock_served", "fields": fields})

    def _serve_files(self, serial: str, path: Path, ctx: DockContext,
                     writable: Callable[[], contextlib.AbstractContextManager[object]]
                     ) -> Outcome:
        finished: dict[str, Any] = {}

        def health_after(report: IngestReport) -> dict[str, Any]:
            health = dict(ctx.health)
            health["read_errors"] = len(report.errors)
            ahead = self._clock_ahead(report)
            if ahead is not None:
                health["clock_ahead_seconds"] = ahead
            health["faults"] = faults_of(health)
            finished.update(health)
            return health

        ctx = dataclasses.replace(ctx, health_after=health_after)
        try:
            report = self.ingestor.ingest(path, serial=serial, ctx=ctx, cancel=self.stop)
        except RecorderNotRegistered as exc:
            return Outcome(serial=serial, state=SessionState.REFUSED, error=exc.message)
        except IngestdError as exc:
            log.error("recorder %s: %s", serial, exc.message, extra={"event": "ingest_failed"})
            return Outcome(serial=serial, state=SessionState.FAILED, error=exc.message)
        for fault in finished.get("faults", []):
            log.warning("recorder %s fault: %s", serial, fault, extra={"event": "recorder_fault"})
        outcome = Outcome(serial=serial, state=report.state, report=report)
        if report.state != SessionState.DONE:
            return outcome  # a session cut short wipes nothing
        blocked = ctx.health.get("wipe_blocked")
        if blocked:
            log.warning("recorder %s: nothing wiped: %s", serial, blocked,
                        extra={"event": "wipe_blocked"})
            return outcome
        outcome.wiped = self.wipe(report, path, writable)
        return outcome

    def _clock_ahead(self, report: IngestReport) -> float | None:
        """How far the recorder's newest recording lies in the station's future, if it does."""
        if report.session_id is None:
            return None
        with self.station.catalog.read() as tx:
            session = tx.session(report.session_id)
        if session is None or not report.items:
            return None
        newest = max((i.recorded_at for i in report.items if i.recorded_at is not None),
                     default=None)
        if newest is None:
            return None
        ahead = policy.clock_ahead(recorded_start=newest, docked_at=session.docked_at,
                                   tolerance=self.settings.ingest.clock_tolerance)
        return None if ahead is None else ahead.total_seconds()

    # -- wipe ----------------------------------------------------------------------------

    @property
    def _wipe_mode(self) -> WipeMode:
        return WipeMode(self.settings.docks.wipe)

    def wipe(self, report: IngestReport, path: Path,
             writable: Callable[[], contextlib.AbstractContextManager[object]]) -> int:
        """Delete from the recorder only files whose bytes hash again to a verified item, as
        ``policy.file_wipe_bar`` allows."""
        bar = policy.wipe_bar(mode=self._wipe_mode, required=self._required())
        if bar is WipeBar.NO_REQUIRED_TARGET:
            log.error("wipe = after-offsite-verify but no required target is configured; "
                      "nothing wiped")
        if bar is not None:
            return 0
        assert report.session_id is not None
        with self.station.catalog.read() as tx:
            eligible = [acq for acq in tx.wipe_candidates(report.session_id)
                        if self._wipe_bar(tx, acq) is None]
        if not eligible:
            return 0
        wiped = 0
        with writable():
            for candidate in eligible:
                if self.stop.is_set():
                    break
                wiped += self._wipe_one(path, candidate)
        log.info("wiped %d files from recorder %s", wiped, report.serial)
        return wiped

    def _required(self) -> set[str]:
        return {t.name for t in self.settings.targets if t.required}

    def _wipe_bar(self, tx: CatalogTx, acq: Acquisition) -> WipeBar | None:
        """Why the file of acquisition ``acq`` must not be deleted now (None: it may)."""
        assert acq.item is not None  # a wipe candidate's bytes are stored
        mode = self._wipe_mode
        proven = (tx.proven_targets(acq.item, target_locations(self.settings))
                  if mode.needs_offsite_proof else set())
        worm_failed = tx.worm_failed_targets() if mode.needs_offsite_proof else set()
        return policy.file_wipe_bar(
            mode=mode, required=self._required(), proven=proven, worm_failed=worm_failed,
            verified=acq.state in (AcquisitionState.STORED, AcquisitionState.KNOWN))

    def _wipe_one(self, root: Path, acq: Acquisition) -> int:
        """Delete one file if what is there still hashes to its verified item.

        The file is renamed aside first and only the file at the aside name is hashed and
        deleted (see :mod:`ingestd.docks.wipe`): a file replaced or appended to after ingest,
        or reached through a folder swapped for a symbolic link, is never the one deleted."""
        assert acq.item is not None
        try:
            self.station.store.verify(acq.item)
            with wipe.folder_of(os.fsencode(root), acq.raw_path) as (dir_fd, name):
                return self._wipe_in(dir_fd, name, acq)
        except wipe.WipeRefused as exc:
            log.warning("not wiping %s: %s", acq.path, exc)
        except (OSError, IngestdError) as exc:
            log.error("not wiping %s: %s", acq.path, exc)
        return 0

    def _wipe_in(self, dir_fd: int, name: bytes, acq: Acquisition) -> int:
        sha = acq.item
        assert sha is not None
        facts = {"serial": acq.serial, "path": acq.path, "size": acq.size}
        try:
            aside = wipe.set_aside(dir_fd, name)
        except FileNotFoundError:
            log.warning("not wiping %s: it is no longer on the recorder", acq.path)
            return 0
        except OSError as exc:  # the recorder refuses changes (write-protected, read-only)
            self._wipe_failed(acq, facts, str(exc.strerror or exc))
            return 0
        try:
            fd = wipe.open_file(dir_fd, aside)
            try:
                before = os.fstat(fd)
                digest = hash_fd(fd, buffer_size=self.station.store.buffer_size)
                after = os.fstat(fd)
            finally:
                os.close(fd)
            unchanged = (digest.sha256 == sha and after.st_size == acq.size
                         and wipe.same_file(before, after))
        except BaseException:
            self._put_back(dir_fd, aside, name, acq)
            raise
        if not unchanged:
            self._put_back(dir_fd, aside, name, acq)
            log.warning("not wiping %s: its bytes changed since ingest", acq.path)
            return 0
        # The ledger says so before the file goes: a stop between the two leaves a file that
        # the ledger calls wiped but that is still there (at its aside name, taken again at the
        # next dock), never a file gone from the recorder without an entry.
        try:
            with self.station.custody.transaction() as tx:
                # Decided again under the write lock: an audit may have found an off-site copy
                # bad (or a repair made it unproven) since the list of files was drawn up.
                if self._wipe_bar(tx, acq) is not None:
                    raise _NoLongerEligible
                wiped = self.station.custody.record(
                    tx, kind=EventKind.WIPED, actor="ingestd", item=sha,
                    data={**facts, "policy": self.settings.docks.wipe})
                tx.acquisition_wiped(acq.id, wiped.at)
        except BaseException as exc:
            self._put_back(dir_fd, aside, name, acq)
            if isinstance(exc, _NoLongerEligible):
                log.warning("not wiping %s: its off-site copy is no longer proven", acq.path)
                return 0
            raise
        try:
            current = os.stat(aside, dir_fd=dir_fd, follow_symlinks=False)
            if not wipe.same_file(current, after):
                raise OSError(errno.ESTALE, "the file changed while it was being wiped")
            wipe.unlink(dir_fd, aside)
        except OSError as exc:
            self._put_back(dir_fd, aside, name, acq)
            self._wipe_failed(acq, facts, str(exc.strerror or exc))
            return 0
        return 1

    def _put_back(self, dir_fd: int, aside: bytes, name: bytes, acq: Acquisition) -> None:
        try:
            if wipe.put_back(dir_fd, aside, name):
                return
            log.error("recorder file %s stays at %s: its name was taken meanwhile", acq.path,
                      os.fsdecode(aside))
        except OSError as exc:
            log.error("recorder file %s stays at %s: %s", acq.path, os.fsdecode(aside), exc)

    def _wipe_failed(self, acq: Acquisition, facts: dict[str, Any], error: str) -> None:
        log.error("could not wipe %s: %s", acq.path, error)
        with self.station.custody.transaction() as tx:
            self.station.custody.record(
                tx, kind=EventKind.WIPE_FAILED, actor="ingestd", item=acq.item,
                data={**facts, "error": error})
            tx.acquisition_wiped(acq.id, None)


def scan_once(station: Station, *, root: Path | None = None) -> list[Outcome]:
    """Serve every recorder folder under the watched root once, then return (``--once``)."""
    root = root or station.settings.watch_root
    if root is None:
        return []
    source = WatchDockSource(root, identity=station.settings.docks.identity,
                             identity_file=station.settings.docks.identity_file)
    coordinator = DockCoordinator(station)
    try:
        for dock in source.enumerate():
            coordinator.folder(dock)
        coordinator.wait_idle()
    finally:
        coordinator.shutdown()
    return coordinator.outcomes

