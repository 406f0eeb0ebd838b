"""Value objects. Frozen, keyword-only; named constructors where there is more than one way in."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Any

from msgspec import Struct

from .canonical import format_time

SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
PREFIX_RE = re.compile(r"^[0-9a-f]{8,64}$")


def item_prefix(ref: str) -> str | None:
    """An item reference as the catalog looks it up (a SHA-256, or 8 or more of its leading
    hex digits, in lower case), or None when ``ref`` is not one."""
    ref = ref.strip().lower()
    return ref if PREFIX_RE.match(ref) else None


def is_sha256(text: str) -> bool:
    return bool(SHA256_RE.match(text))


class EventKind(StrEnum):
    """Every kind of custody ledger entry."""

    ACQUIRED = "acquired"  # a file was read off a recorder (new bytes or known bytes)
    STORED = "stored"  # an item's bytes were verified in the local store for the first time
    FLAGGED = "flagged"
    LABELLED = "labelled"
    HELD = "held"
    RELEASED = "released"
    JUSTIFIED = "justified"
    REPLICATED = "replicated"
    AUDITED = "audited"
    EXPORTED = "exported"
    WIPED = "wiped"  # recorded before the file is deleted from the recorder
    WIPE_FAILED = "wipe_failed"  # the deletion a ``wiped`` entry announced did not happen
    RETENTION = "retention"
    EVICTED = "evicted"  # left the local cache after verified off-site copies
    RECORDER_REFUSED = "recorder_refused"
    DOCKED = "docked"  # a dock session with device health
    SKIPPED = "skipped"  # what a dock session's walk saw and did not take, counted by kind
    ORPHAN = "orphan"  # an object in the store that no item names, kept or quarantined
    REPAIRED = "repaired"  # a damaged stored object replaced by intact bytes, the bad ones kept
    REGISTRY = "registry"  # recorder registry changed
    KEY_ROTATED = "key_rotated"
    GENESIS = "genesis"
    #: From here on this station dates no entry before the one it follows (a ledger begun by
    #: an earlier release took some times before its writes, a little out of order).
    TIME_RULE = "time_rule"
    SPOT_CHECKED = "spot_checked"  # sampled: re-hashed and decoded end to end
    SPOT_REVIEWED = "spot_reviewed"  # a supervisor played a spot-checked item back
    WORM_CHECKED = "worm_checked"  # a target's WORM check: what was tried, what happened
    CASE_CLOSED = "case_closed"  # enforcement in a case ended: its archive window runs
    CASE_ARCHIVED = "case_archived"  # a closed case's items were archived as one package
    CASE_REOPENED = "case_reopened"  # a close undone (a mistake, or enforcement resumed)
    CHECKPOINTED = "checkpointed"  # a signed checkpoint published off-site, with its time-stamp


class RetentionClass(StrEnum):
    ROUTINE = "routine"
    EVIDENCE = "evidence"
    LONG_TERM = "long-term"


class Recorder(Struct, frozen=True, kw_only=True):
    serial: str
    officer: str
    officer_id: str
    unit: str = ""
    vendor: str = ""
    model: str = ""
    added_at: datetime | None = None  # set by the catalog when it is first registered
    active: bool = True  # False: taken out of the registry (its history stays)
    ledger_seq: int | None = None  # the registry entry that backs the catalog's row


class MediaInfo(Struct, frozen=True, kw_only=True):
    """What ffprobe tells of a file. ``ok`` is False when it cannot be read as media."""

    ok: bool
    duration: float | None = None
    creation_time: datetime | None = None
    format_name: str = ""
    video_codec: str = ""
    audio_codec: str = ""
    width: int | None = None
    height: int | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "duration": self.duration,
            "creation_time": self.creation_time.isoformat() if self.creation_time else None,
            "format": self.format_name,
            "video_codec": self.video_codec,
            "audio_codec": self.audio_codec,
            "width": self.width,
            "height": self.height,
            "error": self.error,
        }


class TimeSource(StrEnum):
    MEDIA = "media"
    FILENAME = "filename"
    FILE_TIME = "file_time"


class RecordedTime(Struct, frozen=True, kw_only=True):
    start: datetime
    end: datetime
    source: TimeSource


class LedgerEntry(Struct, frozen=True, kw_only=True):
    """One custody event. :func:`body_of` is what is hashed; ``signature`` signs ``entry_hash``."""

    seq: int
    at: datetime
    station: str
    actor: str
    kind: str
    item: str | None
    data: dict[str, Any]
    prev_hash: str
    key_id: str
    entry_hash: str = ""
    signature: str = ""


def body_of(entry: LedgerEntry) -> dict[str, Any]:
    """What an entry's hash covers and its signature signs: every field but those two, its
    time in the canonical form."""
    return {
        "seq": entry.seq,
        "at": format_time(entry.at),
        "station": entry.station,
        "actor": entry.actor,
        "kind": entry.kind,
        "item": entry.item,
        "data": entry.data,
        "prev_hash": entry.prev_hash,
        "key_id": entry.key_id,
    }


class UnreadableEntry(Struct, frozen=True, kw_only=True):
    """A stored entry whose fields cannot be read as an entry (a time or data that does not
    parse): what of it can be read, and why the rest cannot."""

    seq: int
    station: str
    prev_hash: str
    entry_hash: str
    why: str
