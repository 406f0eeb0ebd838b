"""The window check: deadlines that run after storage (label, replication) become flags."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ..domain import policy
from ..domain.canonical import format_time
from ..domain.flags import Flag
from ..station import Station
from .flags import set_flag

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class WindowReport:
    checked: int = 0
    flagged: list[dict[str, str]] = field(default_factory=list)


def check_windows(station: Station, *, actor: str = "ingestd") -> WindowReport:
    # The later of the clock and the ledger's last entry: a clock set back hides no deadline.
    now = station.custody.now()
    required = [t.name for t in station.settings.targets if t.required]
    report = WindowReport()
    with station.catalog.read() as tx:
        # Another station sharing the catalog checks its own items, by its own targets.
        rows = tx.items_needing_window_check(station=station.name)
        done = tx.flags_by_item()
    for row in rows:
        report.checked += 1
        sha = row.sha256
        sent: set[str] = set()
        if required:
            with station.catalog.read() as tx:
                sent = tx.verified_targets(sha)
        wanted = policy.window_flags(
            label_deadline=row.label_deadline, replication_deadline=row.replication_deadline,
            now=now, labelled=row.labelled,
            replicated=policy.replication_done(required=set(required), sent=sent),
            replication_required=bool(required),
        ) - set(done.get(sha, []))
        if not wanted:
            continue
        with station.custody.transaction() as tx:
            for flag in sorted(wanted):
                deadline = (row.label_deadline if flag == Flag.LATE_LABEL
                            else row.replication_deadline)
                if set_flag(station, tx, sha, flag, at=now, actor=actor,
                            detail=f"deadline {format_time(deadline)} passed"):
                    report.flagged.append({"sha256": sha, "flag": str(flag)})
    return report
