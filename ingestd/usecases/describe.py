"""What ``verify`` and ``show`` say of an item: read from the catalog alone, so that ``show``
asks it without importing the audit and the adapters it reads copies with."""

from __future__ import annotations

from typing import Any

from ..domain.canonical import format_time
from ..station import Station


def describe_item(station: Station, sha: str) -> dict[str, Any] | None:
    """What ``verify`` and ``show`` say of an item (None: no item has this SHA-256)."""
    with station.catalog.read() as tx:
        item = tx.item(sha)
        if item is None:
            return None
        current = tx.current_label(sha)
        flags = [str(f.flag) for f in tx.item_flags(sha)]
    return {
        "sha256": sha, "size": item.size, "recorder": item.recorder,
        "officer": current.officer if current else item.officer,
        "case": current.case if current else None,
        "party": current.party if current else None,
        "recorded_start": format_time(item.recorded_start),
        "recorded_end": format_time(item.recorded_end),
        "stored_at": format_time(item.stored_at), "station": item.station,
        "original_name": item.original_name, "retention_class": str(item.retention_class),
        "retain_until": format_time(item.retain_until) if item.retain_until else None,
        "hold": item.hold, "local": item.local_present, "flags": flags,
    }
