"""The retention sweep: the local store is a cache of what is safe off-site.

An item leaves the local store only when every required target holds a proven copy (its bytes
read back and hashed to the item, at upload with ``readback`` or by an off-site audit since, at
the location the target has now), it was stored longer ago than ``retention.local_keep``, and
it is not on legal hold. A copy only counted as sent (the server's word) is not enough, nor
one on a target whose last WORM check failed (``usecases/worm``).
Off-site copies are never deleted by ingestd: their WORM lock runs out on its own at the
retain-until date.
Each eviction is a signed ledger event; ``verify`` and ``show`` still find the item, and the
manifest off-site still describes it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..domain import policy
from ..domain.canonical import format_time
from ..domain.models import EventKind, RetentionClass
from ..domain.policy import RetentionReason, RetentionRule
from ..domain.records import Item, Label
from ..errors import ObjectDamaged
from ..ports import CatalogTx
from ..station import Station
from ..targets.factory import target_locations
from .redating import STATING_KINDS

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class SweepReport:
    evicted: list[dict[str, Any]] = field(default_factory=list)
    kept: int = 0
    dry_run: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"evicted": self.evicted, "kept": self.kept, "dry_run": self.dry_run}


def _may_evict(station: Station, item: Item, *, required: set[str],
               proven: set[str], worm_failed: set[str], now: datetime) -> bool:
    """The domain's answer for one item (see the module's docstring)."""
    return policy.may_evict(
        required=required, proven=proven, worm_failed=worm_failed, stored_at=item.stored_at,
        now=now, local_keep=station.settings.retention.local_keep, hold=item.hold,
        local_present=item.local_present, ours=item.station == station.name)


def sweep(station: Station, *, dry_run: bool = False, actor: str = "ingestd") -> SweepReport:
    report = SweepReport(dry_run=dry_run)
    required = {t.name for t in station.settings.targets if t.required}
    with station.catalog.read() as tx:
        rows = [listed.item for listed in tx.search_items() if listed.item.local_present]
    if not required:
        report.kept = len(rows)  # nothing is safe off-site (policy.may_evict): none is looked at
        return report
    now = station.clock()
    keep_for = station.settings.retention.local_keep
    locations = target_locations(station.settings)
    for item in rows:
        sha = item.sha256
        with station.catalog.read() as tx:
            held_offsite = tx.proven_targets(sha, locations)
            worm_failed = tx.worm_failed_targets()
        if not _may_evict(station, item, required=required, proven=held_offsite,
                          worm_failed=worm_failed, now=now):
            report.kept += 1
            continue
        entry = {"sha256": sha, "size": item.size, "targets": sorted(held_offsite)}
        if not dry_run:
            try:
                station.store.verify(sha, item.size)
            except ObjectDamaged as exc:
                # A damaged local copy is not evicted silently: the audit will flag it.
                log.error("not evicting %s: %s", sha[:12], exc.message)
                report.kept += 1
                continue
            with station.custody.transaction() as tx:
                # Decided again under the write lock: a hold set, or a copy found bad, while
                # the object was being re-hashed keeps it here.
                now_item = tx.item(sha)
                if now_item is None or not _may_evict(
                        station, now_item, required=required,
                        proven=tx.proven_targets(sha, locations),
                        worm_failed=tx.worm_failed_targets(), now=now):
                    report.kept += 1
                    continue
                station.custody.record(
                    tx, kind=EventKind.EVICTED, actor=actor, item=sha,
                    data={"targets": sorted(held_offsite),
                          "stored_at": format_time(item.stored_at),
                          "local_keep": keep_for.total_seconds()},
                )
                tx.set_local_present(sha, False)
                # Inside the transaction, so an ingest recording the same bytes at this moment
                # sees either the object and local_present, or neither.
                station.store.remove(sha)
            log.info("evicted %s from the local store (proven on %s)", sha[:12],
                     ", ".join(sorted(held_offsite)), extra={"event": "evicted"})
        entry["at"] = format_time(now)
        report.evicted.append(entry)
    return report


# -- what decided each item's retention (``retention list``) ---------------------------------


def _period(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    return f"{seconds // 86400}d" if seconds % 86400 == 0 else f"{seconds}s"


def _why(reason: RetentionReason, label: Label | None, stated_by: int | None,
         hold_by: int | None) -> str:
    where = (f"label {label.id} (entry {label.ledger_seq}, case {label.case})"
             if label is not None else "")
    if reason.rule is RetentionRule.ROUTINE:
        why = "not labelled: the routine period"
    elif reason.rule is RetentionRule.EVIDENCE:
        why = f"{where}: the evidence period"
    elif reason.rule is RetentionRule.CASE_TYPE:
        why = f"{where}: case type {reason.case_type}"
    elif reason.rule is RetentionRule.CATEGORY:
        why = f"{where}: category {reason.category}, never expires"
    else:
        why = (f"granted by entry {stated_by}, kept (a retention is never shortened)"
               if stated_by is not None else "granted earlier, kept")
    if reason.period is not None:
        why += f", {_period(reason.period)} from {format_time(reason.since)}"
    if hold_by is not None:
        why += f"; on legal hold (entry {hold_by}): nothing is deleted until it is released"
    return why


def _explained(station: Station, tx: CatalogTx, item: Item) -> dict[str, Any]:
    sha = item.sha256
    label = tx.current_label(sha)
    stated_by: int | None = None
    hold_by: int | None = None
    for entry in tx.iter_entries(item=sha, kinds=sorted(STATING_KINDS)):
        # A retention entry naming a target records a lock extension, not the item's.
        if isinstance(entry.data.get("retention"), dict) and "target" not in entry.data:
            stated_by = entry.seq
        if entry.kind == EventKind.HELD:
            hold_by = entry.seq
    reason = policy.retention_reason(
        granted=item.retention, recorded_end=item.recorded_end, stored_at=item.stored_at,
        labelled=label is not None, categories=label.categories if label else (),
        case_type=label.case_type if label else None,
        policy=station.settings.retention.policy())
    return {
        "sha256": item.sha256, "station": item.station,
        "retention_class": str(item.retention_class),
        "retain_until": format_time(item.retain_until) if item.retain_until else None,
        "hold": item.hold, "rule": str(reason.rule),
        "period_seconds": (int(reason.period.total_seconds()) if reason.period is not None
                           else None),
        "since": format_time(reason.since),
        "label": None if label is None else {
            "id": label.id, "seq": label.ledger_seq, "case": label.case,
            "categories": list(label.categories), "case_type": label.case_type},
        "category": reason.category, "case_type": reason.case_type,
        "stated_by": stated_by, "hold_entry": hold_by if item.hold else None,
        "why": _why(reason, label, stated_by, hold_by if item.hold else None),
    }


def explain(station: Station, tx: CatalogTx, *, item: str | None = None,
            cls: RetentionClass | None = None) -> Iterator[list[dict[str, Any]]]:
    """Each item's retention class, retain-until date and what decided them (the label,
    category, case type or earlier grant; a hold beside), a batch at a time in listing
    order: one item (``item``, a SHA-256), or every item (of class ``cls``)."""
    if item is not None:
        found = tx.item(item)
        if found is not None and (cls is None or found.retention_class == cls):
            yield [_explained(station, tx, found)]
        return
    for page in tx.iter_item_batches():
        kept = [_explained(station, tx, listed.item) for listed in page
                if cls is None or listed.item.retention_class == cls]
        if kept:  # an empty page would set the table's widths to its header's
            yield kept
