"""The daemon: dock sources, the scheduler, signals, systemd notification, crash recovery.

The first SIGTERM (or SIGINT) is a warm stop: no new recorder is started and every running
session finishes the file it is copying, then stops. A second one is a cold stop: copies
stop between two buffers, and what was in flight is left ``interrupted`` (its temp files are
removed, and it is copied again at the next dock). At start, work a crash left behind is found:
temp files removed, running sessions and acquisitions marked interrupted, stale recorder
mounts unmounted, the ledger mirror caught up.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

import sdnotify

from ..docks import mounts
from ..docks.watch import WatchDockSource
from ..domain.docks import DockEvent
from ..errors import TargetUnreachable
from ..station import Station
from ..usecases.docking import DockCoordinator
from ..usecases.replicate import Replicator
from .jobs import build_scheduler, evaluate_alerts_now, host, standard_jobs, stop_jobs
from .signals import held_signals

if TYPE_CHECKING:
    from ..web.server import WebServer

log = logging.getLogger(__name__)


#: How long a warm stop waits for the jobs still running once the docks are served: long
#: enough for a replication to finish the items in hand, not for an audit of the store.
JOB_GRACE = 60.0


class Daemon:
    def __init__(self, station: Station) -> None:
        self.station = station
        self.settings = station.settings
        self.stop = threading.Event()
        self.abort = threading.Event()
        self.coordinator = DockCoordinator(station, stop=self.stop, abort=self.abort)
        self.notifier = sdnotify.SystemdNotifier()
        self._sources: list[Any] = []
        self._signals = 0

    # -- lifecycle -------------------------------------------------------------------------

    def recover(self) -> dict[str, int]:
        removed = self.station.store.clean_tmp()
        sessions, acqs = self.coordinator.ingestor.interrupt_abandoned()
        with self.station.catalog.write() as tx:
            uploads = tx.interrupt_uploads(self.station.clock())
        stale = mounts.unmount_stale(self.settings.runtime_dir) if \
            self.settings.runtime_dir.is_dir() else []
        mirrored = self.station.custody.sync_mirror()
        found = {"temp_files": len(removed), "sessions": sessions, "acquisitions": acqs,
                 "stale_mounts": len(stale), "uploads": uploads, "mirrored": mirrored}
        if any(found.values()):
            log.warning("recovered after an unclean stop: %s", found,
                        extra={"event": "recovered", "fields": found})
        return found

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        if self._signals == 1:
            log.warning("signal %d: finishing current files, then stopping", signum,
                        extra={"event": "stopping"})
            self.stop.set()
        else:
            log.warning("signal %d again: aborting copies in flight", signum,
                        extra={"event": "aborting"})
            self.abort.set()

    def install_signals(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        # A stop asked for while the daemon was still starting is a stop asked for now.
        for signum in held_signals:
            self._on_signal(signum, None)
        held_signals.clear()

    def start_sources(self) -> None:
        docks = self.settings.docks
        root = self.settings.watch_root
        if root is not None:
            watch = WatchDockSource(root, identity=docks.identity,
                                    identity_file=docks.identity_file,
                                    settle=docks.settle.total_seconds())
            watch.start(self.coordinator.folder)
            self._sources.append(watch)
            log.info("watching %s for recorder folders", root)
        if docks.udev:
            from ..docks.udev import UdevDockSource

            udev = UdevDockSource()
            # Listen first, then enumerate: a recorder plugged in between is not missed (the
            # coordinator serves a device once per plug, however many times it is announced).
            udev.start(self.coordinator.device)
            for device in udev.enumerate():
                self.coordinator.device(DockEvent.added(device))
            self._sources.append(udev)
            log.info("watching udev for USB recorders")

    def stop_sources(self) -> None:
        for source in self._sources:
            try:
                source.stop()
            except Exception:
                log.exception("stopping %s failed", source)

    def run(self) -> int:
        self.install_signals()
        if self.settings.targets:
            # A target that cannot serve (no Object Lock where one is required, another place
            # than the one first used) stops the daemon now, with the reason, not silently
            # later. One that cannot be reached now (its server down, the network out) does
            # not: recorders are still taken in, and replication tries at each run.
            try:
                Replicator(self.station).check()
            except TargetUnreachable as exc:
                log.error("%s; docking goes on, and replication tries again at each run",
                          exc.message, extra={"event": "target_unreachable"})
        self.recover()
        web = self._start_web()
        scheduler = build_scheduler(self.station, standard_jobs(self.station))
        # a dock that ended may have brought news (an unknown recorder, damaged files)
        self.coordinator.after_session = lambda: evaluate_alerts_now(scheduler, self.station)
        self.start_sources()
        scheduler.start()
        self.notifier.notify("READY=1")
        self.notifier.notify(f"STATUS=station {self.station.name} ready")
        log.info("ingestd %s running", self.station.name, extra={"event": "ready"})
        watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
        tick = min(5.0, watchdog_usec / 2e6) if watchdog_usec else 5.0
        try:
            while not self.stop.wait(tick):
                busy = self.coordinator.busy()
                self.notifier.notify(
                    "STATUS=" + (f"ingesting {', '.join(busy)}" if busy else "idle"))
                if watchdog_usec:
                    self.notifier.notify("WATCHDOG=1")
        finally:
            self.notifier.notify("STOPPING=1")
            self.stop_sources()
            stop_jobs(self.station)  # none starts now; a replication ends with its items in hand
            scheduler.shutdown(wait=False)
            self._drain(watchdog_usec)
            self._finish_jobs(watchdog_usec)
            self.station.custody.sync_mirror()
            if web is not None:
                web.stop()
        log.info("ingestd stopped", extra={"event": "stopped"})
        return 0

    def _start_web(self) -> WebServer | None:
        """The status page, when ``[web] listen`` is set: on a thread of this process, which
        reads the catalog read-only (``web/server``); stopped after the last session."""
        if self.settings.web.listen is None:
            return None
        from ..web.server import WebServer  # the web stack is loaded only when it is served

        web = WebServer(self.settings)
        web.start()
        return web

    def _finish_jobs(self, watchdog_usec: int) -> None:
        """Wait (up to ``JOB_GRACE``, or until a second signal) for the jobs still running, so
        that none is cut off by the process's end in the middle of a write to a target."""
        shared = host(self.station)
        deadline = time.monotonic() + JOB_GRACE
        running = shared.wait(0)
        while running and not self.abort.is_set() and (left := deadline - time.monotonic()) > 0:
            self.notifier.notify(f"STATUS=stopping: finishing {', '.join(running)}")
            if watchdog_usec:
                self.notifier.notify("WATCHDOG=1")
            running = shared.wait(min(left, 1.0))
        if running:
            log.warning("stopping with jobs still running, cut off: %s (each runs again at "
                        "the next start)", ", ".join(running), extra={"event": "jobs_cut_off"})

    def _drain(self, watchdog_usec: int) -> None:
        """Wait for running sessions to finish their current file (pinging the watchdog)."""
        waiter = threading.Thread(target=self.coordinator.shutdown, kwargs={"wait": True},
                                  name="ingestd-drain", daemon=True)
        waiter.start()
        while waiter.is_alive():
            waiter.join(1.0)
            if watchdog_usec:
                self.notifier.notify("WATCHDOG=1")
            busy = self.coordinator.busy()
            if busy:
                self.notifier.notify(f"STATUS=stopping: finishing {', '.join(busy)}")

