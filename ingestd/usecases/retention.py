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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain import policy
from ..domain.canonical import format_time
from ..domain.models import EventKind
from ..domain.records import Item
from ..errors import ObjectDamaged
from ..station import Station
from ..targets.factory import target_locations

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
