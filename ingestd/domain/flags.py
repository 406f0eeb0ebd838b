"""Flags: facts about an item that people must see. A flag, once set, stays."""

from __future__ import annotations

from enum import StrEnum


class Flag(StrEnum):
    DAMAGED_MEDIA = "damaged_media"  # ffprobe cannot read it; kept all the same
    EMPTY_FILE = "empty_file"
    LATE_INGEST = "late_ingest"  # stored after end of recording + ingest_window
    LATE_LABEL = "late_label"  # no case/party label within label_window of storage
    LATE_REPLICATION = "late_replication"  # not replicated within replication_window
    CLOCK_UNSET = "clock_unset"  # recorded time before 2000: the recorder clock was never set
    CLOCK_SKEW = "clock_skew"  # recorded time later than the dock time beyond tolerance
    CHANGED_DURING_COPY = "changed_during_copy"  # the source kept changing; last stable read kept
    UNREGISTERED_RECORDER = "unregistered_recorder"  # taken in unassigned
    FIXITY_FAILED = "fixity_failed"  # a later re-hash did not match
    REPLICA_MISMATCH = "replica_mismatch"  # an off-site copy does not hash to the item
    AUDIT_OVERDUE = "audit_overdue"  # a copy went unproven longer than its audit cycle
    ARCHIVE_LATE = "archive_late"  # its case was closed and not archived within the window


#: Flags that mean a deadline was missed (shown by ``overdue``).
WINDOW_FLAGS = frozenset({Flag.LATE_INGEST, Flag.LATE_LABEL, Flag.LATE_REPLICATION})

REASONS: dict[Flag, str] = {
    Flag.DAMAGED_MEDIA: "the file cannot be read as media",
    Flag.EMPTY_FILE: "the file is empty",
    Flag.LATE_INGEST: "stored after the ingest window",
    Flag.LATE_LABEL: "no case and party label within the label window",
    Flag.LATE_REPLICATION: "not replicated off-site within the replication window",
    Flag.CLOCK_UNSET: "the recorder clock was not set (time before 2000)",
    Flag.CLOCK_SKEW: "the recorded time is later than the dock time",
    Flag.CHANGED_DURING_COPY: "the file changed on the recorder while it was copied",
    Flag.UNREGISTERED_RECORDER: "taken from a recorder that is not registered",
    Flag.FIXITY_FAILED: "the stored copy no longer matches its hash",
    Flag.REPLICA_MISMATCH: "an off-site copy does not match its hash",
    Flag.AUDIT_OVERDUE: "a copy was not re-hashed or read back within its audit cycle",
    Flag.ARCHIVE_LATE: "its case was not archived within the case archive window",
}
