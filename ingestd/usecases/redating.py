"""Bringing retention dates forward when the rule that computes them grows.

A retention period runs from the later of the recording's end and the storage time. Homes
made before that rule counted from the recorder's clock, so an item from a recorder whose clock
was behind (or unset) may carry a date already past. ``redate`` recomputes every item of this
station from what its ledger says (the ``stored`` entry's recorded end and time, the labels
with the case type each names, the holds), never from catalog rows that could have been
edited, and records a signed ``retention`` entry for each item whose date grows. It only ever
extends; the next replication then extends the off-site locks. A case type's period is the one
configured now (a longer one lengthens; one no longer configured keeps what was granted).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..domain import policy
from ..domain.canonical import parse_time
from ..domain.models import EventKind, LedgerEntry, RetentionClass
from ..domain.policy import Retention
from ..domain.records import retention_data

if TYPE_CHECKING:
    from ..station import Station

log = logging.getLogger(__name__)

REASON = "retention counted from the later of the recording's end and its storage"

#: The entries that state an item's retention in ``data["retention"]``.
STATING_KINDS = frozenset({EventKind.STORED, EventKind.LABELLED, EventKind.HELD,
                           EventKind.RELEASED, EventKind.RETENTION})


@dataclass(kw_only=True)
class _History:
    """What the ledger says of one item."""

    stored: LedgerEntry | None = None
    labelled: bool = False
    categories: list[str] = field(default_factory=list)
    case_type: str | None = None  # the current label's (each labelled entry names its own)
    hold: bool = False
    stated: dict[str, Any] | None = None  # the last data["retention"]

    def add(self, entry: LedgerEntry) -> None:
        kind = entry.kind
        if kind == EventKind.STORED and self.stored is None:
            self.stored = entry
        elif kind == EventKind.LABELLED:
            self.labelled = True
            self.categories = [str(c) for c in entry.data.get("categories") or []]
            named = entry.data.get("case_type")
            self.case_type = str(named) if named is not None else None
        elif kind in (EventKind.HELD, EventKind.RELEASED):
            self.hold = kind == EventKind.HELD
        # A retention entry naming a target records a lock extension, not the item's retention.
        stated = entry.data.get("retention")
        if kind in STATING_KINDS and isinstance(stated, dict) and "target" not in entry.data:
            self.stated = stated


def _histories(entries: Iterable[LedgerEntry], station: str) -> dict[str, _History]:
    out: dict[str, _History] = {}
    for entry in entries:
        if entry.item is None or entry.kind not in STATING_KINDS:
            continue
        out.setdefault(entry.item, _History()).add(entry)
    return {sha: h for sha, h in out.items()
            if h.stored is not None and h.stored.station == station}


def _due(history: _History, rule: policy.RetentionPolicy) -> Retention | None:
    """The retention the item must now state, or None when what it states is long enough."""
    stored = history.stored
    assert stored is not None
    keep = policy.retention(
        recorded_end=parse_time(str(stored.data["recorded_end"])), stored_at=stored.at,
        has_case=history.labelled, categories=history.categories, hold=history.hold,
        policy=rule, case_type=history.case_type)
    stated = history.stated
    if stated is not None:
        old = stated.get("retain_until")
        old_until = parse_time(str(old)) if old else None
        keep = policy.kept_retention(
            keep, granted_class=RetentionClass(stated.get("retention_class")
                                               or RetentionClass.ROUTINE),
            granted_until=old_until)
        if not policy.longer_retention(keep.until, old_until):
            return None
    return keep


def redate(station: Station, *, actor: str = "ingestd") -> list[dict[str, Any]]:
    """Record and apply every retention that the current rule makes longer."""
    rule = station.settings.retention.policy()
    done: list[dict[str, Any]] = []
    with station.custody.transaction() as tx:
        histories = _histories(tx.iter_entries(), station.name)
        for sha, history in sorted(histories.items()):
            retention = _due(history, rule)
            if retention is None:
                continue
            stated = retention_data(retention)
            station.custody.record(
                tx, kind=EventKind.RETENTION, actor=actor, item=sha,
                data={"retention": stated, "previous": history.stated or {},
                      "reason": REASON})
            tx.set_retention(sha, retention)
            done.append({"sha256": sha, "previous": history.stated, **stated})
    for d in done:
        log.info("retention of %s now until %s (was %s)", d["sha256"][:12],
                 d["retain_until"] or "never", (d["previous"] or {}).get("retain_until"),
                 extra={"event": "retention_redated"})
    return done
