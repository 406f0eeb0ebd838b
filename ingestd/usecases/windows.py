"""The window check: deadlines that run after storage (label, replication) become flags; and
the windows ahead, which will become flags unless met in time."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from ..domain import policy
from ..domain.canonical import format_time
from ..domain.flags import Flag
from ..domain.records import Item
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


@dataclass(frozen=True, kw_only=True)
class WindowAhead:
    """An item with the windows it will miss within the horizon asked for, unless done."""

    item: Item
    deadlines: dict[Flag, datetime]


def windows_ahead(station: Station, *, within: timedelta,
                  only: Flag | None = None) -> tuple[datetime, list[WindowAhead]]:
    """What will miss a window soon: this station's items whose label or replication window
    (``only``: just that flag's) closes within ``within`` and is not yet met, soonest first;
    with the time it was asked at (the window check's own, never earlier than the ledger)."""
    now = station.custody.now()
    required = {t.name for t in station.settings.targets if t.required}
    found: list[WindowAhead] = []
    with station.catalog.read() as tx:
        for row in tx.items_needing_window_check(station=station.name):
            horizon = now + within
            # Only an item with a deadline in reach is asked what its copies are.
            if not (now <= row.label_deadline <= horizon
                    or now <= row.replication_deadline <= horizon):
                continue
            sent = tx.verified_targets(row.sha256) if required else set()
            ahead = policy.windows_ahead(
                label_deadline=row.label_deadline,
                replication_deadline=row.replication_deadline, now=now, within=within,
                labelled=row.labelled,
                replicated=policy.replication_done(required=required, sent=sent),
                replication_required=bool(required))
            if only is not None:
                ahead = {f: d for f, d in ahead.items() if f == only}
            item = tx.item(row.sha256) if ahead else None
            if item is not None:
                found.append(WindowAhead(item=item, deadlines=ahead))
    found.sort(key=lambda w: (min(w.deadlines.values()), w.item.sha256))
    return now, found
