"""Cases (R9): closing one when its enforcement ends, its archive window, the flag when the
window passes without an archive, the archive once made, and what a case holds.

A case is the case number of its items' labels; closing it is a signed ``case_closed`` entry
(the catalog's ``cases`` row is made by it), its archive a ``case_archived`` entry. A case
past its window without an archive has each of its items flagged ``archive_late`` (flags stay:
the flag records that the deadline passed) and is listed by ``overdue`` until its archive is
recorded.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..domain import policy, text
from ..domain.canonical import format_time
from ..domain.flags import Flag
from ..domain.models import EventKind, LedgerEntry
from ..domain.records import Case, FlagRecord, ItemFilter, ListedItem
from ..errors import NotFound, UsageError
from ..ports import CatalogTx
from ..station import Station
from .casework import require_text
from .flags import set_flag

log = logging.getLogger(__name__)

#: The ledger kind of an export (read by its word: the export writes it).
EXPORTED = "exported"


def _window(station: Station) -> timedelta:
    window: timedelta = station.settings.cases.case_archive_window
    return window


def deadline(station: Station, case: Case) -> datetime:
    """When ``case`` must be archived by."""
    return policy.archive_deadline(closed_at=case.closed_at, window=_window(station))


def _known(tx: CatalogTx, case: str) -> bool:
    return bool(tx.search_items(ItemFilter(case=case), limit=1))


def close_case(station: Station, case: str, *, actor: str,
               ended_at: datetime | None = None) -> Case:
    """Record that enforcement in ``case`` ended (at ``ended_at``, default now): its archive
    window runs from then. A case no item is labelled with, or one closed already, is
    refused; so is an end in the future."""
    case = require_text("case", case, limit=text.CASE_MAX)
    actor = require_text("--by", actor, limit=text.ACTOR_MAX)
    with station.custody.transaction() as tx:
        now = station.custody.now(tx)
        if ended_at is not None and ended_at > now:
            raise UsageError(f"--at {format_time(ended_at)} is in the future (now "
                             f"{format_time(now)}): enforcement has not ended then yet")
        if not _known(tx, case):
            raise NotFound(f"no item is labelled with case {case!r}: nothing to close")
        done = tx.case(case)
        if done is not None:
            raise UsageError(f"case {case!r} was closed already, at "
                             f"{format_time(done.closed_at)} by {done.closed_by} (entry "
                             f"{done.ledger_seq})")
        closed_at = ended_at or now
        window = _window(station)
        entry = station.custody.record(tx, kind=EventKind.CASE_CLOSED, actor=actor, data={
            "case": case, "closed_at": format_time(closed_at),
            "archive_by": format_time(policy.archive_deadline(closed_at=closed_at,
                                                              window=window))})
        tx.close_case(case, closed_at=closed_at, closed_by=actor, ledger_seq=entry.seq)
        closed = tx.case(case)
    assert closed is not None
    log.info("case %s closed (enforcement ended %s) by %s", case, format_time(closed_at),
             actor)
    return closed


def reopen_case(station: Station, case: str, *, actor: str, reason: str) -> Case:
    """Undo a close (closed by mistake, at the wrong time, or enforcement resumed): a signed
    ``case_reopened`` entry with its reason; the case is open again, its archive window no
    longer runs, and a later close starts a new one. Its items' flags stay. An archived case
    is not reopened: its package is the case file as it was formed. Returns the close
    undone."""
    case = require_text("case", case, limit=text.CASE_MAX)
    actor = require_text("--by", actor, limit=text.ACTOR_MAX)
    if not reason.strip():
        raise UsageError("a reopening needs --reason")
    reason = require_text("--reason", reason, limit=text.REASON_MAX)
    with station.custody.transaction() as tx:
        closed = tx.case(case)
        if closed is None:
            raise NotFound(f"case {case!r} is not closed: nothing to reopen")
        if closed.archived_at is not None:
            raise UsageError(f"case {case!r} was archived at {format_time(closed.archived_at)} "
                             f"as {closed.archive_package}: an archived case is not reopened")
        station.custody.record(tx, kind=EventKind.CASE_REOPENED, actor=actor, data={
            "case": case, "reason": reason, "closed_seq": closed.ledger_seq})
        tx.reopen_case(case)
    log.info("case %s reopened by %s", case, actor)
    return closed


def record_archive(station: Station, case: str, *, location: str, package: str,
                   actor: str = "ingestd", tx: CatalogTx | None = None,
                   details: Mapping[str, Any] | None = None) -> Case:
    """The closed case's items were archived as ``package`` at ``location``: a signed
    ``case_archived`` entry, and the case's archive in the catalog (``overdue`` no longer
    lists it; its items' ``archive_late`` flags, if any, stay). The archive job
    (``usecases/archive``) calls this once the package is written and verified at the
    archive destination, with ``details`` (its export entry, the tar's SHA-256 and size)
    added to the entry; ``tx``: inside a caller's own custody transaction."""
    if tx is None:
        with station.custody.transaction() as own:
            return record_archive(station, case, location=location, package=package,
                                  actor=actor, tx=own, details=details)
    closed = tx.case(case)
    if closed is None:
        raise NotFound(f"case {case!r} is not closed: close it before archiving it")
    if closed.archived_at is not None:
        raise UsageError(f"case {case!r} was archived already, at "
                         f"{format_time(closed.archived_at)} as {closed.archive_package}")
    window = _window(station)
    due = policy.archive_deadline(closed_at=closed.closed_at, window=window)
    entry = station.custody.record(tx, kind=EventKind.CASE_ARCHIVED, actor=actor, data={
        **(details or {}), "case": case, "location": location, "package": package,
        "archive_by": format_time(due), "closed_seq": closed.ledger_seq})
    tx.case_archived(case, at=entry.at, location=location, package=package,
                     ledger_seq=entry.seq)
    done = tx.case(case)
    assert done is not None
    late = policy.archived_late(closed_at=done.closed_at, archived_at=done.archived_at,
                                window=window)
    log.info("case %s archived as %s at %s%s", case, package, location,
             " (late)" if late else "")
    return done


@dataclass(kw_only=True)
class ArchiveCheck:
    """What one check of the archive windows found."""

    overdue: list[Case] = field(default_factory=list)
    flagged: list[dict[str, str]] = field(default_factory=list)


def check_archives(station: Station, *, actor: str = "ingestd") -> ArchiveCheck:
    """Flag ``archive_late`` every item of each closed case past its window without an
    archive (each flag once, with its entry naming the case and its deadline)."""
    now = station.custody.now()
    window = _window(station)
    report = ArchiveCheck()
    with station.catalog.read() as tx:
        waiting = tx.closed_cases(archived=False)
    for case in waiting:
        if not policy.archive_overdue(closed_at=case.closed_at, archived_at=None, now=now,
                                      window=window):
            continue
        report.overdue.append(case)
        due = policy.archive_deadline(closed_at=case.closed_at, window=window)
        detail = (f"case {case.case} closed {format_time(case.closed_at)}: not archived by "
                  f"{format_time(due)}")
        with station.catalog.read() as tx:
            shas = [r.item.sha256 for page in tx.iter_item_batches(ItemFilter(case=case.case))
                    for r in page]
        with station.custody.transaction() as tx:
            for sha in shas:
                if set_flag(station, tx, sha, Flag.ARCHIVE_LATE, at=now, actor=actor,
                            detail=detail):
                    report.flagged.append({"sha256": sha, "case": case.case})
    return report


def overdue_cases(station: Station) -> tuple[datetime, list[Case]]:
    """Closed cases past their archive window with no archive, the earliest deadline first,
    with the time asked at."""
    now = station.custody.now()
    window = _window(station)
    with station.catalog.read() as tx:
        found = [c for c in tx.closed_cases(archived=False)
                 if policy.archive_overdue(closed_at=c.closed_at, archived_at=None, now=now,
                                           window=window)]
    return now, found


def to_archive(station: Station) -> list[Case]:
    """Closed cases waiting for their archive, the earliest deadline first: what the archive
    job works through."""
    with station.catalog.read() as tx:
        return tx.closed_cases(archived=False)


@dataclass(frozen=True, kw_only=True)
class CaseItem:
    listed: ListedItem
    flags: list[FlagRecord]
    targets: list[str]  # the targets holding a copy counted as sent


@dataclass(frozen=True, kw_only=True)
class CaseView:
    """What ``case show`` tells of a case."""

    case: str
    closed: Case | None
    deadline: datetime | None
    now: datetime
    items: list[CaseItem]
    exports: list[LedgerEntry]


def _about(entry: LedgerEntry, case: str, shas: set[str]) -> bool:
    """Whether an ``exported`` entry is about the case: it names one of its items, or the
    case, or lists one of its items."""
    if entry.item in shas or entry.data.get("case") == case:
        return True
    listed = entry.data.get("items")
    return isinstance(listed, list) and any(str(x) in shas for x in listed)


def show_case(station: Station, case: str) -> CaseView:
    """A case's items (its current labels' case) with their state, its close, deadline and
    archive, and the exports of its items. An unknown case is NotFound."""
    now = station.custody.now()
    with station.catalog.read() as tx:
        closed = tx.case(case)
        items: list[CaseItem] = []
        for page in tx.iter_item_batches(ItemFilter(case=case)):
            for listed in page:
                sha = listed.item.sha256
                items.append(CaseItem(listed=listed, flags=tx.item_flags(sha),
                                      targets=sorted(tx.verified_targets(sha))))
        if not items and closed is None:
            raise NotFound(f"no item is labelled with case {case!r}, and no such case was "
                           "closed")
        shas = {i.listed.item.sha256 for i in items}
        exports = [e for e in tx.entries_of_kinds([EXPORTED]) if _about(e, case, shas)]
    return CaseView(case=case, closed=closed, now=now, items=items, exports=exports,
                    deadline=deadline(station, closed) if closed else None)
