"""Alerts: the conditions found in the catalog's state, sent through every channel.

``evaluate`` reads what holds now (flags, the last runs of the checks, each recorder's last
dock, each target's copies and WORM standing, the store's free space), asks the domain
(``domain/alerts.plan``) what to send, sends it through the log and every ``[[alerts]]``
channel, and keeps each alert's state in the catalog, so that a restart sends nothing again
that was already sent. A channel that fails does not stop the others: its failure is logged,
and it is owed the notice, tried again at the next evaluation.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from msgspec import structs

from ..alerting import Channel, DeliveryFailed
from ..alerting.factory import build_channels
from ..docks.walk import SkipKind
from ..domain.alerts import (
    Alert,
    Condition,
    Finding,
    Notice,
    Severity,
    Step,
    plan,
    space_floor,
    stalled,
    test_alert,
)
from ..domain.canonical import format_time
from ..domain.flags import WINDOW_FLAGS, Flag
from ..domain.records import SessionState
from ..domain.status import JobRun, ReplicaStats, SessionSummary
from ..domain.text import plural
from ..station import Station
from .status import AUDIT_JOB, AUDIT_OFFSITE_JOB, LEDGER_JOB

log = logging.getLogger(__name__)

#: The scheduled checks whose last run failing is an alert, and how grave that is.
CHECK_JOBS: dict[str, Severity] = {
    LEDGER_JOB: Severity.CRITICAL,
    AUDIT_JOB: Severity.CRITICAL,
    AUDIT_OFFSITE_JOB: Severity.CRITICAL,
    "spotcheck": Severity.WARNING,
}

#: The conditions about one recorder, keyed ``condition:SERIAL``.
RECORDER_CONDITIONS = (Condition.UNKNOWN_RECORDER, Condition.RECORDER_CLOCK,
                       Condition.RECORDER_FAULT, Condition.DAMAGED_MEDIA,
                       Condition.SKIPPED_FILES)
_CLOCK_FLAGS = (Flag.CLOCK_UNSET, Flag.CLOCK_SKEW)
#: How many items or files an alert names (the count is always whole).
EXAMPLES = 5


@dataclass(kw_only=True)
class Found:
    """What holds now, and what could not be looked at (conditions or alert keys, left as
    they were)."""

    findings: list[Finding] = field(default_factory=list)
    unknown: set[str] = field(default_factory=set)


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


def _age(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds // 86400}d {seconds % 86400 // 3600}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 60}m {seconds % 60}s"


def _missed(late: dict[Flag, list[str]], least: int) -> list[Finding]:
    total = sum(len(v) for v in late.values())
    if total < least:
        return []
    shas = [sha for items in late.values() for sha in items]
    return [Finding.of(
        Condition.MISSED_WINDOW,
        summary=f"{total} {'item' if total == 1 else 'items'} missed a window and "
                "{} not justified".format("is" if total == 1 else "are"),
        items={str(flag): len(items) for flag, items in sorted(late.items())},
        examples=shas[:EXAMPLES])]


def _checks(jobs: Sequence[JobRun]) -> list[Finding]:
    out = []
    for run in jobs:
        severity = CHECK_JOBS.get(run.job)
        if severity is None or run.ok is not False:
            continue
        out.append(Finding.of(Condition.CHECK_FAILED, run.job, severity=severity,
                              summary=f"{run.job} failed: {run.summary[:300]}",
                              job=run.job, at=format_time(run.at), result=run.summary[:2000]))
    return out


#: The daemon's replication job: its last run, if it failed, names in its detail each target
#: it could not use at all (``JobRun.unusable_targets``).
REPLICATE_JOB = "replicate"


def _unusable(run: JobRun | None, targets: Iterable[str]) -> dict[str, str]:
    """The targets the failed run could not use, each with why. A run whose detail does not
    say (recorded before it was kept, or unreadable) is read as its summary names them, the
    way a target's error names it (``target 'nas': ...``): an alert is not dropped for it."""
    if run is None:
        return {}
    said = run.unusable_targets()
    if said is not None:
        return said
    return {name: run.summary for name in targets
            if f"target {name!r}:" in run.summary or f"target {name}:" in run.summary}


def _replication(station: Station, stats: dict[str, ReplicaStats],
                 waiting: dict[str, datetime], jobs: Sequence[JobRun],
                 now: datetime) -> list[Finding]:
    after = station.settings.alerting.replication_stalled_after
    run = next((j for j in jobs if j.job == REPLICATE_JOB and j.ok is False), None)
    unusable = _unusable(run, stats)
    out = []
    for name, stat in stats.items():
        error = stat.last_error
        if stat.failed or name in unusable:
            why = unusable.get(name) or (error.error if error else "")
            count = (f"{stat.failed} {'copy' if stat.failed == 1 else 'copies'} failed"
                     if stat.failed else "replication failed")
            out.append(Finding.of(
                Condition.REPLICATION_FAILING, name,
                summary=f"target {name}: {count}" + (f": {why[:300]}" if why else ""),
                target=name, failed=stat.failed,
                last_error=None if error is None else error.error[:2000],
                last_error_at=None if error is None else format_time(error.at),
                last_run=run.summary[:2000] if run is not None and name in unusable else None))
        since = waiting.get(name)
        if stalled(since, now=now, after=after):
            assert since is not None
            out.append(Finding.of(
                Condition.REPLICATION_STALLED, name,
                summary=f"target {name}: an item has waited {_age(now - since)} for its copy "
                        f"(more than {_age(after)})",
                target=name, waiting_since=format_time(since), queued=stat.queued,
                failed=stat.failed))
    return out


def _recorder(session: SessionSummary, registered: bool,
              flagged: dict[Flag, list[str]], station: Station) -> list[Finding]:
    cfg = station.settings.alerting
    serial = session.serial
    about: dict[str, Any] = {"serial": serial, "session": session.id,
             "docked_at": format_time(session.docked_at)}
    out = []
    if not registered:
        taken = session.state != SessionState.REFUSED
        out.append(Finding.of(
            Condition.UNKNOWN_RECORDER, serial,
            summary=f"recorder {serial} is not registered; its last dock was "
                    + ("taken as unassigned" if taken else "refused"),
            state=str(session.state), reason=session.error[:500], **about))
    clock = [name for flag in _CLOCK_FLAGS for name in flagged.get(flag, [])]
    if len(clock) >= cfg.clock_items_min:
        out.append(Finding.of(
            Condition.RECORDER_CLOCK, serial,
            summary=f"recorder {serial}: {_files(len(clock))} of its last dock "
                    f"{'has' if len(clock) == 1 else 'have'} a doubtful time (clock unset or "
                    "ahead)",
            files=clock[:EXAMPLES],
            flags={str(f): len(flagged[f]) for f in _CLOCK_FLAGS if f in flagged}, **about))
    if session.state == SessionState.FAILED or session.files_failed:
        what = (f"{_files(session.files_failed)} could not be read" if session.files_failed
                else "the dock failed")
        out.append(Finding.of(
            Condition.RECORDER_FAULT, serial,
            summary=f"recorder {serial}: {what}"
                    + (f": {session.error[:300]}" if session.error else ""),
            state=str(session.state), files_failed=session.files_failed,
            error=session.error[:2000], **about))
    damaged = flagged.get(Flag.DAMAGED_MEDIA, [])
    if len(damaged) >= cfg.damaged_media_min:
        out.append(Finding.of(
            Condition.DAMAGED_MEDIA, serial,
            summary=f"recorder {serial}: {_files(len(damaged))} of its last dock cannot be read "
                    "as media",
            count=len(damaged), files=damaged[:EXAMPLES], **about))
    # the recorder's own files ([ingest] ignore) are left on it by design, not behind
    left = {kind: n for kind, n in session.skipped.items() if kind != SkipKind.IGNORED}
    if (count := sum(left.values())) >= cfg.skipped_files_min:
        out.append(Finding.of(
            Condition.SKIPPED_FILES, serial,
            summary=f"recorder {serial}: {_files(count)} left on it, not taken",
            count=count, kinds=left, **about))
    return out


def find(station: Station, now: datetime) -> Found:
    """Every condition that holds at ``now``, from the catalog and the store's disk."""
    cfg = station.settings.alerting
    name = station.name
    targets = [t.name for t in station.settings.targets]
    with station.catalog.read() as tx:
        late = tx.unjustified_flags(sorted(WINDOW_FLAGS), station=name)
        jobs = tx.last_jobs(station=name)
        stats = tx.replica_stats(targets, station=name) if targets else {}
        # when the item waiting longest for each target was stored: the one the status finds
        waiting = {t: item.stored_at for t, st in stats.items() if st.oldest_waiting
                   and (item := tx.item(st.oldest_waiting.sha256)) is not None}
        standings = {s.target: s for s in tx.worm_standings()}
        sessions = tx.last_session_by_recorder(station=name)
        registered = {r.serial for r in tx.list_recorders()}
        flagged = tx.session_flags([s.id for s in sessions],
                                   [*_CLOCK_FLAGS, Flag.DAMAGED_MEDIA])
    found = Found()
    found.findings += _missed(late, cfg.missed_windows_min)
    found.findings += _checks(jobs)
    found.findings += _replication(station, stats, waiting, jobs, now)
    for target in targets:
        standing = standings.get(target)
        if standing is not None and not standing.passed:
            found.findings.append(Finding.of(
                Condition.WORM_FAILED, target, severity=Severity.CRITICAL,
                summary=f"target {target} FAILED its WORM check: its copies no longer count "
                        "as safe off-site",
                target=target, location=standing.location,
                checked_at=format_time(standing.checked_at), ledger_seq=standing.ledger_seq))
    for session in sessions:
        if not session.serial:
            continue
        if session.state == SessionState.RUNNING:
            # not over yet: what its last dock said stands until this one ends
            found.unknown |= {f"{c}:{session.serial}" for c in RECORDER_CONDITIONS}
            continue
        found.findings += _recorder(session, session.serial in registered,
                                    flagged.get(session.id, {}), station)
    try:
        disk = station.store.disk()
    except OSError as exc:
        log.error("alerts: the store's free space cannot be read: %s", exc.strerror)
        found.unknown.add(str(Condition.LOW_FREE_SPACE))
    else:
        floor = space_floor(disk.total, min_bytes=cfg.free_space_bytes,
                            min_percent=cfg.free_space_percent)
        if disk.free < floor:
            found.findings.append(Finding.of(
                Condition.LOW_FREE_SPACE,
                summary=f"the store has {_size(disk.free)} free, below "
                        f"{cfg.free_space_min} ({_size(floor)})",
                path=str(station.store.root), free=disk.free, total=disk.total, floor=floor))
    disabled = set(cfg.disabled)
    found.findings = [f for f in found.findings if str(f.condition) not in disabled]
    return found


@dataclass(frozen=True, kw_only=True)
class Sent:
    """One notice: the alert as it stands, and the channels that failed to take it (why)."""

    alert: Alert
    repeat: bool
    failed: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        return {"alert": self.alert.key, "state": str(self.alert.state),
                "repeat": self.repeat, "summary": self.alert.summary,
                "failed": dict(self.failed)}


@dataclass(kw_only=True)
class AlertReport:
    at: datetime
    sent: list[Sent] = field(default_factory=list)
    firing: list[Alert] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every notice reached every channel."""
        return not any(s.failed for s in self.sent)

    def summary(self) -> str:
        failed = sorted({c for s in self.sent for c in s.failed})
        return (f"{len(self.firing)} firing, {plural(len(self.sent), 'notice')} sent"
                + (f"; undelivered through {', '.join(failed)}" if failed else ""))

    def to_json(self) -> dict[str, Any]:
        return {"at": format_time(self.at), "ok": self.ok,
                "sent": [s.to_json() for s in self.sent],
                "firing": [a.to_json() for a in self.firing]}


def deliver(notice: Notice, channels: Sequence[Channel], *, station: str) -> dict[str, str]:
    """Send ``notice`` through each channel it is for; the channels that failed, and why.
    One failing never keeps the notice from the others."""
    failed: dict[str, str] = {}
    for channel in channels:
        if not notice.wants(channel.name):
            continue
        try:
            channel.send(notice, station=station)
        except DeliveryFailed as exc:
            failed[channel.name] = str(exc)
        except Exception as exc:  # a channel's bug must not keep the others' notices back
            # its type only: the message of a library's error may quote a secret
            failed[channel.name] = f"the channel failed unexpectedly ({type(exc).__name__})"
    for name, why in failed.items():
        log.error("alert %s (%s) not delivered through %s: %s", notice.alert.key,
                  notice.alert.state, name, why,
                  extra={"event": "alert_undelivered",
                         "fields": {"alert": notice.alert.key, "channel": name}})
    return failed


def evaluate(station: Station, *, channels: Sequence[Channel] | None = None) -> AlertReport:
    """Find what holds now, send what is due, keep each alert's state. One evaluation at a
    time on a station (the daemon's and ``alerts check``): the second waits, then finds the
    first's notices sent, and sends them no more."""
    fd = os.open(station.settings.home / ".alerts.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC,
                 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        return _evaluate(station, channels)
    finally:
        os.close(fd)


def _evaluate(station: Station, channels: Sequence[Channel] | None) -> AlertReport:
    now = station.clock()
    channels = build_channels(station.settings) if channels is None else channels
    found = find(station, now)
    with station.catalog.read() as tx:
        known = tx.alerts(station=station.name)
    steps = plan(found.findings, known, now=now, repeat=station.settings.alerting.repeat,
                 unknown=found.unknown)
    report = AlertReport(at=now)
    quiet: list[Alert] = []
    for step in steps:
        if step.notice is None:
            quiet.append(step.alert)
            continue
        report.sent.append(_send(station, step, channels))
    with station.catalog.write() as tx:
        for alert in quiet:
            tx.keep_alert(alert, station=station.name)
    with station.catalog.read() as tx:
        report.firing = tx.alerts(station=station.name, firing_only=True)
    return report


def _send(station: Station, step: Step, channels: Sequence[Channel]) -> Sent:
    assert step.notice is not None
    failed = deliver(step.notice, channels, station=station.name)
    kept = structs.replace(step.alert, owed=frozenset(failed))
    # kept at once: a stop right after a send does not send it again at the next start
    with station.catalog.write() as tx:
        tx.keep_alert(kept, station=station.name)
    return Sent(alert=kept, repeat=step.notice.repeat, failed=failed)


def send_test(station: Station, *,
              channels: Sequence[Channel] | None = None) -> dict[str, str | None]:
    """A test alert through every channel: by channel, None when it was delivered, else
    why not. Nothing is kept."""
    channels = build_channels(station.settings) if channels is None else channels
    notice = Notice(alert=test_alert(station.clock()), at=station.clock())
    failed = deliver(notice, channels, station=station.name)
    return {c.name: failed.get(c.name) for c in channels}


def list_alerts(station: Station, *, include_resolved: bool = False) -> list[Alert]:
    """The alerts firing (and, asked, those resolved), the oldest first."""
    with station.catalog.read() as tx:
        return tx.alerts(station=station.name, firing_only=not include_resolved)
