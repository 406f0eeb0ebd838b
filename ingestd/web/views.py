"""What the page and the API show of items, read in one catalog transaction each, as JSON-ready
records: the page renders the same records the API returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..domain.canonical import format_time
from ..domain.models import UnreadableEntry
from ..domain.records import DockedAcquisition, ItemFilter, ListedItem, Replica
from ..station import Station

#: The most items one page of ``/api/items`` holds.
PAGE_MAX = 500


def _stamp(moment: Any) -> str | None:
    return format_time(moment) if moment is not None else None


def listed_record(listed: ListedItem, flags: list[str]) -> dict[str, Any]:
    """An item as ``ingestd items --json`` lists it (the same keys)."""
    item = listed.item
    return {
        "sha256": item.sha256, "size": item.size, "recorder": item.recorder,
        "officer": listed.officer, "case": listed.case, "party": listed.party,
        "recorded_at": format_time(item.recorded_start),
        "stored_at": format_time(item.stored_at), "name": item.original_name,
        "flags": flags, "retention_class": str(item.retention_class),
        "local": item.local_present, "station": item.station,
    }


@dataclass(frozen=True, kw_only=True)
class ItemPage:
    """One page of a listing, and the item the next one starts after (None: the last)."""

    items: list[dict[str, Any]]
    next_after: str | None

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "next_after": self.next_after}


def item_page(station: Station, wanted: ItemFilter, *, after: str | None,
              limit: int) -> ItemPage:
    """``limit`` items after item ``after``, in the order ``ingestd items`` lists them: one
    more is read to tell whether a next page exists."""
    with station.catalog.read() as tx:
        found = tx.item_page(wanted, after=after, limit=limit + 1)
        shown = found[:limit]
        flags = tx.flags_by_item([r.item.sha256 for r in shown]) if shown else {}
    records = [listed_record(r, [str(f) for f in flags.get(r.item.sha256, [])]) for r in shown]
    more = len(found) > limit
    return ItemPage(items=records, next_after=records[-1]["sha256"] if more else None)


def _replica(r: Replica) -> dict[str, Any]:
    return {"target": r.target, "state": str(r.state), "key": r.key,
            "retain_until": _stamp(r.retain_until), "hold": r.hold,
            "verified_at": _stamp(r.verified_at), "proven_at": _stamp(r.proven_at),
            "last_error": r.last_error, "updated_at": _stamp(r.updated_at)}


def _acquisition(d: DockedAcquisition) -> dict[str, Any]:
    a = d.acquisition
    return {"serial": a.serial, "path": a.path, "size": a.size, "state": str(a.state),
            "station": d.station, "docked_at": format_time(d.docked_at),
            "started_at": format_time(a.started_at), "finished_at": _stamp(a.finished_at),
            "wiped_at": _stamp(a.wiped_at), "error": a.error}


def item_view(station: Station, ref: str) -> dict[str, Any]:
    """An item (a SHA-256 or 8+ hex digits of one) with its labels, flags, copies, dockings
    and custody timeline, its ledger entries in order. Raises ``NotFound`` or
    ``Ambiguous``."""
    with station.catalog.read() as tx:
        sha = tx.resolve(ref)
        item = tx.item(sha)
        assert item is not None
        labels = tx.label_history(sha)
        flags = tx.item_flags(sha)
        justifications = tx.justifications_of(sha)
        replicas = tx.replicas_of(sha)
        acquisitions = tx.acquisitions_of(sha)
        entries = list(tx.entries_to_check(item=sha))
    current = labels[-1] if labels else None
    timeline: list[dict[str, Any]] = []
    for e in entries:
        if isinstance(e, UnreadableEntry):
            timeline.append({"seq": e.seq, "at": None, "kind": "unreadable", "actor": "",
                             "station": e.station, "data": {"why": e.why}})
        else:
            timeline.append({"seq": e.seq, "at": format_time(e.at), "kind": e.kind,
                             "actor": e.actor, "station": e.station, "data": e.data})
    return {
        "sha256": sha, "size": item.size, "recorder": item.recorder,
        "officer": current.officer if current else item.officer,
        "case": current.case if current else None,
        "party": current.party if current else None,
        "original_name": item.original_name, "station": item.station,
        "recorded_start": format_time(item.recorded_start),
        "recorded_end": format_time(item.recorded_end), "time_source": str(item.time_source),
        "stored_at": format_time(item.stored_at), "duration": item.duration,
        "retention_class": str(item.retention_class), "retain_until": _stamp(item.retain_until),
        "hold": item.hold, "local": item.local_present,
        "deadlines": {"ingest": format_time(item.ingest_deadline),
                      "label": format_time(item.label_deadline),
                      "replication": format_time(item.replication_deadline)},
        "labels": [{"case": la.case, "party": la.party, "officer": la.officer,
                    "categories": list(la.categories), "case_type": la.case_type,
                    "by": la.by, "at": format_time(la.at), "ledger_seq": la.ledger_seq}
                   for la in labels],
        "flags": [{"flag": str(f.flag), "set_at": format_time(f.set_at), "detail": f.detail,
                   "ledger_seq": f.ledger_seq} for f in flags],
        "justifications": [{"flag": str(j.flag), "reason": j.reason, "by": j.by,
                            "at": format_time(j.at)} for j in justifications],
        "replicas": [_replica(r) for r in replicas.values()],
        "acquisitions": [_acquisition(a) for a in acquisitions],
        "custody": timeline,
    }
