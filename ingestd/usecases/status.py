"""A station's status in one read: its store, its items by state and flag, its recent docks,
the last run of each job and of each scheduled check, and each target's copies.

``status`` builds it and ``to_json`` gives the form ``ingestd status --json`` prints; the
terminal table is drawn from the same model. Nothing is written: a session whose process is
gone is shown interrupted (the next ingest records it so).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..domain.canonical import format_time
from ..domain.status import Counts, JobRun, ReplicaStats, SessionSummary, WormStanding
from ..station import Station
from .ingest import session_abandoned

#: The jobs that check what is kept: ``status`` shows the last run of each.
LEDGER_JOB = "ledger-verify"
AUDIT_JOB = "audit"
AUDIT_OFFSITE_JOB = "audit-offsite"

#: How many of the last dock sessions status shows.
RECENT_DOCKS = 10


@dataclass(frozen=True, kw_only=True)
class StoreStatus:
    """The local store: where it is, what it holds and the room left on its file system."""

    path: Path
    items: int
    bytes: int
    free: int
    total: int

    def to_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "items": self.items, "bytes": self.bytes,
                "free": self.free, "total": self.total}


@dataclass(frozen=True, kw_only=True)
class Dock:
    """A recent dock session as status shows it: one still marked running whose process is
    gone (``process_gone``) is shown interrupted."""

    session: SessionSummary
    process_gone: bool = False

    @property
    def state(self) -> str:
        return "interrupted" if self.process_gone else self.session.state

    @classmethod
    def of(cls, session: SessionSummary) -> Dock:
        gone = session.state == "running" and session_abandoned(session.pid, session.host)
        return cls(session=session, process_gone=gone)

    def to_json(self) -> dict[str, Any]:
        s = self.session
        return {"id": s.id, "serial": s.serial, "source": s.source, "state": self.state,
                "docked_at": format_time(s.docked_at),
                "finished_at": format_time(s.finished_at) if s.finished_at else None,
                "files_new": s.files_new, "files_known": s.files_known,
                "files_failed": s.files_failed, "files_skipped": s.files_skipped,
                "error": s.error, "skipped": dict(s.skipped), "process_gone": self.process_gone}


@dataclass(frozen=True, kw_only=True)
class Check:
    """The last run of a scheduled check: when it ended (or started, if it is running),
    whether all was intact (None: still running), and what it found."""

    job: str
    at: datetime
    ok: bool | None
    summary: str

    @classmethod
    def of(cls, run: JobRun) -> Check:
        return cls(job=run.job, at=run.at, ok=run.ok, summary=run.summary)

    def to_json(self) -> dict[str, Any]:
        return {"job": self.job, "at": format_time(self.at), "ok": self.ok,
                "summary": self.summary}


@dataclass(frozen=True, kw_only=True)
class Checks:
    """The last check of the ledger and the last audits, local and off-site, by the daemon on
    schedule (None: never run)."""

    ledger: Check | None
    audit: Check | None
    audit_offsite: Check | None

    @classmethod
    def of(cls, jobs: Sequence[JobRun]) -> Checks:
        by_name = {run.job: run for run in jobs}

        def last(name: str) -> Check | None:
            run = by_name.get(name)
            return None if run is None else Check.of(run)

        return cls(ledger=last(LEDGER_JOB), audit=last(AUDIT_JOB),
                   audit_offsite=last(AUDIT_OFFSITE_JOB))

    def named(self) -> Iterator[tuple[str, Check | None]]:
        """(key, check), in the order status shows them."""
        yield "ledger", self.ledger
        yield "audit", self.audit
        yield "audit_offsite", self.audit_offsite

    def to_json(self) -> dict[str, Any]:
        return {key: None if check is None else check.to_json() for key, check in self.named()}


@dataclass(frozen=True, kw_only=True)
class StationStatus:
    station: str
    store: StoreStatus
    counts: Counts
    #: recorders registered (and not removed)
    recorders: int
    #: the last dock sessions, the newest first
    docks: tuple[Dock, ...]
    #: the last run of each job, by job name
    jobs: tuple[JobRun, ...]
    checks: Checks
    #: by target, in the configuration's order
    targets: Mapping[str, ReplicaStats]
    #: each configured target's standing from its last WORM check (``targets check``), by
    #: name; one that failed is critical: its copies count as safe for nothing
    worm: Mapping[str, WormStanding] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        counts = self.counts
        return {
            "station": self.station,
            "store": self.store.to_json(),
            "items": {"total": counts.items, "bytes": counts.bytes,
                      "labelled": counts.labelled, "flags": dict(counts.flags)},
            "acquisitions": dict(counts.acquisitions),
            "recorders": self.recorders,
            "docks": [dock.to_json() for dock in self.docks],
            "jobs": [run.to_json() for run in self.jobs],
            "checks": self.checks.to_json(),
            "targets": {name: stats.to_json() for name, stats in self.targets.items()},
            "worm": {name: {**standing.to_json(), "critical": not standing.passed}
                     for name, standing in self.worm.items()},
        }


def status(station: Station) -> StationStatus:
    """The station's status, read in one catalog transaction and from its store's file
    system."""
    with station.catalog.read() as tx:
        counts = tx.counts(station=station.name)
        sessions = tx.recent_sessions(RECENT_DOCKS, station=station.name)
        jobs = tx.last_jobs(station=station.name)
        recorders = len(tx.list_recorders())
        targets = tx.replica_stats([t.name for t in station.settings.targets],
                                  station=station.name)
        configured = [t.name for t in station.settings.targets]
        standings = {s.target: s for s in tx.worm_standings()}
        worm = {name: standings[name] for name in configured if name in standings}
    disk = station.store.disk()
    return StationStatus(
        station=station.name,
        store=StoreStatus(path=station.store.root, items=counts.local_items,
                          bytes=counts.local_bytes, free=disk.free, total=disk.total),
        counts=counts,
        recorders=recorders,
        docks=tuple(Dock.of(session) for session in sessions),
        jobs=tuple(jobs),
        checks=Checks.of(jobs),
        targets=targets,
        worm=worm,
    )
