"""The daemon's periodic jobs on APScheduler 3.

Each job is also a CLI command, so an operator can do by hand what the daemon does on
schedule. Runs are recorded (``status`` shows the last of each); a job that fails is logged
and tried again at its next time. ``coalesce`` folds runs missed during a pause or clock jump
into one, and ``misfire_grace_time`` lets a late run still happen.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, JobExecutionEvent
from apscheduler.schedulers.background import BackgroundScheduler

from ..domain.text import plural
from ..errors import IngestdError, IntegrityError, TargetError
from ..station import Station
from ..targets import Target
from ..targets.factory import build_targets
from ..usecases.alerts import evaluate
from ..usecases.archive import archive_waiting
from ..usecases.audit import CycleReport, Throttle, audit_cycle
from ..usecases.cases import check_archives
from ..usecases.checkpoints import verify_checkpoint_records
from ..usecases.replicate import Replicator, verify_offsite
from ..usecases.retention import sweep
from ..usecases.spotcheck import run_spot_checks
from ..usecases.status import AUDIT_JOB, AUDIT_OFFSITE_JOB, LEDGER_JOB
from ..usecases.windows import check_windows
from ..usecases.worm import check_worm, promises_worm

log = logging.getLogger(__name__)

SPOTCHECK_JOB = "spotcheck"

@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a job returns when it has more to say than a line (a job that returns only its
    summary succeeded; one that raises failed): whether it succeeded, and ``detail``, kept
    with the run for the alerts to read."""

    summary: str
    ok: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


JobFunc = Callable[[Station], "str | Outcome"]


@dataclass(frozen=True, kw_only=True)
class Job:
    name: str
    every: timedelta
    func: JobFunc
    first_delay: timedelta = timedelta(seconds=5)


class _Host:
    """What one station's jobs share across their runs: the targets (each a client with its
    connections, built once rather than at every run: building them again and again grew the
    daemon's memory), the stop signal, and the runs in progress."""

    def __init__(self, station: Station) -> None:
        self.settings = station.settings  # not the station: the host leaves with it
        self.stopping = threading.Event()
        self._lock = threading.Condition()
        self._targets: list[Target] | None = None
        self._made_with: tuple[tuple[int, int] | None, ...] = ()
        self._running: dict[str, int] = {}

    def targets(self) -> list[Target]:
        """The station's targets, built again after a run that failed (credentials replaced,
        a server moved) or once a credentials file changed."""
        seen = self._credentials()
        with self._lock:
            if self._targets is None or seen != self._made_with:
                self._targets, self._made_with = build_targets(self.settings), seen
            return self._targets

    def forget_targets(self) -> None:
        with self._lock:
            self._targets = None

    def _credentials(self) -> tuple[tuple[int, int] | None, ...]:
        out: list[tuple[int, int] | None] = []
        for spec in self.settings.targets:
            path = getattr(spec, "credentials_file", None)
            try:
                found = os.stat(path) if path else None
            except OSError:
                found = None
            out.append((found.st_mtime_ns, found.st_size) if found else None)
        return tuple(out)

    def started(self, name: str) -> bool:
        with self._lock:
            if self.stopping.is_set():
                return False
            self._running[name] = self._running.get(name, 0) + 1
            return True

    def ended(self, name: str) -> None:
        with self._lock:
            self._running[name] -= 1
            if not self._running[name]:
                del self._running[name]
            self._lock.notify_all()

    def wait(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` s for the runs in progress; the names still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._running and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            return sorted(self._running)


#: Each station's host, by identity (a Station compares by value and has no hash); an entry
#: leaves with its station.
_HOSTS: dict[int, tuple[weakref.ref[Station], _Host]] = {}
_HOSTS_LOCK = threading.Lock()


def host(station: Station) -> _Host:
    key = id(station)
    with _HOSTS_LOCK:
        found = _HOSTS.get(key)
        if found is not None and found[0]() is station:
            return found[1]
        made = _Host(station)
        _HOSTS[key] = (weakref.ref(station, lambda _ref: _forget(key)), made)
        return made


def _forget(key: int) -> None:
    with _HOSTS_LOCK:
        entry = _HOSTS.get(key)
        if entry is not None and entry[0]() is None:
            del _HOSTS[key]


def stop_jobs(station: Station) -> None:
    """No job starts from now on; a replication in progress stops after its items in hand."""
    host(station).stopping.set()


def run_job(station: Station, job: Job) -> bool:
    """Run one job now and record the run. Returns whether it succeeded. Once the daemon is
    stopping, no job starts."""
    shared = host(station)
    if not shared.started(job.name):
        return False
    try:
        return _run_recorded(station, job, shared)
    finally:
        shared.ended(job.name)


def _run_recorded(station: Station, job: Job, shared: _Host) -> bool:
    with station.catalog.write() as tx:
        run = tx.job_started(job=job.name, station=station.name, at=station.clock())
    ok = False
    detail: Mapping[str, Any] = {}
    try:
        said = job.func(station)
        if isinstance(said, Outcome):
            summary, ok, detail = said.summary, said.ok, said.detail
        else:
            summary, ok = said, True
        if not ok:
            log.error("job %s failed: %s", job.name, summary, extra={"event": "job_failed"})
    except IngestdError as exc:
        summary = exc.message
        log.error("job %s failed: %s", job.name, summary, extra={"event": "job_failed"})
    except Exception as exc:  # a job's bug must not take the daemon down
        summary = f"{type(exc).__name__}: {exc}"
        log.exception("job %s crashed", job.name, extra={"event": "job_failed"})
    if not ok:
        shared.forget_targets()  # built again for the next run: what failed may be them
    with station.catalog.write() as tx:
        tx.job_finished(run, at=station.clock(), ok=ok, summary=summary[:2000], detail=detail)
    if ok:
        log.info("job %s: %s", job.name, summary, extra={"event": "job_done"})
    return ok


def _windows(st: Station) -> str:
    report = check_windows(st)
    return f"checked {plural(report.checked, 'item')}, {plural(len(report.flagged), 'new flag')}"


def _replicate(st: Station) -> Outcome:
    shared = host(st)
    report = Replicator(st, shared.targets(), cancel=shared.stopping).run()
    if report.ok:
        return Outcome(summary=report.summary(), ok=True)
    # every target that could not be used at all, by name (the alerts read ``unusable``);
    # else the first copy that failed
    why = "; ".join(report.unusable.values()) or report.failed[0]["error"]
    return Outcome(summary=f"{report.summary()}: {why}", ok=False,
                   detail={"unusable": {name: error[:2000]
                                        for name, error in report.unusable.items()}})


def _checkpoint(st: Station) -> str:
    result = Replicator(st, host(st).targets()).checkpoint()
    if result["errors"]:
        raise TargetError("; ".join(result["errors"]))
    if not result["sent"]:
        return f"ledger unchanged since the last checkpoint (entry {result['seq']})"
    stamped = (f", time-stamped {result['timestamp']['gen_time']}" if result["timestamp"]
               else ", without a time-stamp (the authority failed: see the log)"
               if result["timestamp_error"] else "")
    return f"checkpoint at entry {result['seq']} sent to {', '.join(result['sent'])}{stamped}"


def _throttle(st: Station) -> Throttle:
    return Throttle(st.settings.audit.max_rate)


def _overdue(report: CycleReport) -> str:
    if not report.overdue:
        return ""
    return f", {plural(len(report.overdue), 'copy', 'copies')} past their cycle (flagged)"


def _local_audit(st: Station) -> str:
    """The local audit cycle: the oldest re-hashes taken again (``audit.cycle``)."""
    sched = st.settings.scheduler
    report = audit_cycle(st, every=sched.audit, decode=1, at_least=sched.audit_sample,
                         throttle=_throttle(st))
    if not report.ok:
        raise IntegrityError(f"{len(report.failures)} of {report.checked} items failed "
                             f"their fixity check{_overdue(report)}")
    return (f"{report.checked} of {report.of} items re-hashed, {report.decoded} decoded: all "
            f"intact{_overdue(report)}")


def _ledger_check(st: Station) -> str:
    """What ``ledger verify`` checks (with ``--offsite`` when there are targets)."""
    report = st.custody.verify()
    report.problems.extend(verify_checkpoint_records(st))
    where = "the ledger"
    if st.settings.targets:
        report.problems.extend(verify_offsite(st, host(st).targets()))
        where = "the ledger and the off-site checkpoints"
    if not report.ok:
        shown = "; ".join(f"{p.kind}: {p.detail}" for p in report.problems[:3])
        raise IntegrityError(f"{plural(len(report.problems), 'problem')} in {where}: {shown}")
    return (f"{where}: intact, {plural(report.entries, 'entry', 'entries')}, head "
            f"{report.head_seq} "
            f"{report.head_hash[:16]}")


def _offsite_audit(st: Station) -> str:
    """The off-site audit cycle (``audit.offsite_cycle``): copies read back in full and
    hashed, every one not yet read back first, then the longest unproven."""
    sched = st.settings.scheduler
    report = audit_cycle(st, every=sched.audit_offsite, targets=host(st).targets(),
                         at_least=sched.audit_offsite_sample, throttle=_throttle(st))
    if not report.ok:
        shown = "; ".join(f"{f['sha256'][:12]}: {f['problem']}" for f in report.failures[:3])
        raise IntegrityError(f"{plural(len(report.failures), 'problem')} in "
                             f"{plural(report.checked, 'item')} "
                             f"audited off-site: {shown}{_overdue(report)}")
    return (f"{plural(report.checked, 'item')} re-read from every target that holds them: all "
            f"intact{_overdue(report)}")


def _retention(st: Station) -> str:
    report = sweep(st)
    return f"{plural(len(report.evicted), 'item')} left the local store, {report.kept} kept"


def _spot_sample(st: Station) -> str:
    """What ``spotcheck run`` does: this period's sample re-hashed, decoded and recorded."""
    report = run_spot_checks(st)
    if not report.ok:
        raise IntegrityError(report.summary())
    return report.summary()


def _worm_check(st: Station) -> str:
    """What ``targets check`` does: every target with Object Lock must show it holds."""
    report = check_worm(st)
    if not report.ok:
        raise IntegrityError(f"WORM check: {report.summary()}")
    return f"WORM check: {report.summary()}"


def _case_archives(st: Station) -> str:
    """What ``case archive`` does for each closed case not yet archived, then what ``case
    check`` does: the cases still past their window flagged. A case that could not be
    archived fails the run (each is logged, and tried again at the next)."""
    run = archive_waiting(st)
    report = check_archives(st)
    said = (f"{run.summary()}; {plural(len(report.overdue), 'case')} past their archive "
            f"window, {plural(len(report.flagged), 'new flag')}")
    if not run.ok:
        raise IngestdError(said)
    return said


def standard_jobs(station: Station) -> list[Job]:
    """The jobs this station runs, the window check first."""
    sched = station.settings.scheduler
    jobs = [Job(name="check-windows", every=sched.window_check, func=_windows,
                first_delay=timedelta(seconds=1))]
    if station.settings.targets:
        jobs.append(Job(name="replicate", every=sched.replication, func=_replicate))
        jobs.append(Job(name="retention", every=sched.retention, func=_retention,
                        first_delay=timedelta(minutes=10)))
        jobs.append(Job(name="checkpoint", every=sched.checkpoint, func=_checkpoint,
                        first_delay=timedelta(minutes=1)))
        # Always: besides its sample, it reads back every copy not yet proven, and only a
        # proven copy lets the local one (or a recorder's file) go.
        jobs.append(Job(name=AUDIT_OFFSITE_JOB, every=sched.audit_offsite,
                        func=_offsite_audit, first_delay=timedelta(minutes=20)))
    if sched.audit_sample:
        jobs.append(Job(name=AUDIT_JOB, every=sched.audit, func=_local_audit,
                        first_delay=timedelta(minutes=5)))
    spot = station.settings.spotcheck
    if spot.per_officer:
        # Each run tops up the period's sample, so it runs more often than a period: a daemon
        # stopped over a period boundary still takes each period's sample.
        jobs.append(Job(name=SPOTCHECK_JOB, every=min(spot.period, timedelta(hours=6)),
                        func=_spot_sample, first_delay=timedelta(minutes=15)))
    jobs.append(Job(name=LEDGER_JOB, every=sched.ledger_verify, func=_ledger_check,
                    first_delay=timedelta(minutes=2)))
    if promises_worm(station.settings) and sched.worm_check > timedelta(0):
        jobs.append(Job(name="worm-check", every=sched.worm_check, func=_worm_check,
                        first_delay=timedelta(minutes=3)))
    # Closed cases archived to [cases] archive; those past case_archive_window without an
    # archive: their items flagged.
    jobs.append(Job(name="check-archives", every=sched.window_check, func=_case_archives,
                    first_delay=timedelta(seconds=2)))
    jobs.append(alerts_job(station))
    return jobs


def build_scheduler(station: Station, jobs: list[Job]) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC", job_defaults={
        "coalesce": True, "max_instances": 1, "misfire_grace_time": 3600,
    })
    now = station.clock()
    for job in jobs:
        scheduler.add_job(run_job, "interval", args=(station, job), id=job.name, name=job.name,
                          seconds=job.every.total_seconds(), next_run_time=now + job.first_delay)
    alert_after_checks(scheduler, station)
    return scheduler


# -- alerts: every alerting.interval, and at once after a check or a dock --------------------

ALERTS_JOB = "alerts"
#: The jobs after whose every run the alerts are evaluated at once: what they found is news.
ALERT_AFTER = frozenset({AUDIT_JOB, AUDIT_OFFSITE_JOB, LEDGER_JOB, SPOTCHECK_JOB,
                         "worm-check", "replicate"})


def _alerts(st: Station) -> str:
    """What ``alerts check`` does: conditions evaluated, due notices sent."""
    report = evaluate(st)
    if not report.ok:  # each failed delivery is logged already, and owed to the next run
        raise IngestdError(f"alerts: {report.summary()}")
    return f"alerts: {report.summary()}"


def alerts_job(station: Station) -> Job:
    every = station.settings.alerting.interval
    return Job(name=ALERTS_JOB, every=every, func=_alerts,
               first_delay=min(every, timedelta(seconds=5)))


def evaluate_alerts_now(scheduler: BackgroundScheduler, station: Station) -> None:
    """Run the alerts job as soon as it can (once, however many ask meanwhile)."""
    job = scheduler.get_job(ALERTS_JOB)
    if job is not None:
        job.modify(next_run_time=station.clock())


def alert_after_checks(scheduler: BackgroundScheduler, station: Station) -> None:
    def after(event: JobExecutionEvent) -> None:
        if event.job_id in ALERT_AFTER:
            evaluate_alerts_now(scheduler, station)

    scheduler.add_listener(after, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
