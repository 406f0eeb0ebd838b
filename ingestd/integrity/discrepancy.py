"""What the checks find: typed discrepancies, every kind in one enum.

A discrepancy is a frozen value: its kind, what it concerns (a ledger entry, a catalog row, a
stored object) and the words for a person. Each family is a class that admits only its own
kinds, and its named constructors write the words, so code tells one discrepancy from
another by its class or its kind, never by reading the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar


class DiscrepancyKind(StrEnum):
    """Every kind of discrepancy a check reports."""

    # the chain
    MISSING = "missing"
    OUT_OF_ORDER = "out_of_order"
    TIME_WENT_BACK = "time_went_back"  # an entry dated before the entry before it
    EDITED = "edited"
    BROKEN_LINK = "broken_link"
    ENTRY_UNREADABLE = "entry_unreadable"  # a catalog entry whose fields cannot be read
    # the keys
    UNKNOWN_KEY = "unknown_key"  # signed by a key the chain does not vouch for
    BAD_SIGNATURE = "bad_signature"
    RETIRED_KEY = "retired_key"  # signed by a key after the entry that retired it
    UNVOUCHED_KEY = "unvouched_key"  # a key brought in other than by genesis or rotation
    PIN_MISMATCH = "pin_mismatch"  # the first key is not the one pinned outside the catalog
    NOT_PINNED = "not_pinned"  # no pinned fingerprint to prove the first key against
    WRONG_KEY = "wrong_key"  # a catalog key row whose id does not match its public key
    # the catalog itself
    CATALOG_DAMAGED = "catalog_damaged"  # its file fails the database's own integrity check
    # the mirror
    MIRROR_UNREADABLE = "mirror_unreadable"
    MIRROR_OUT_OF_ORDER = "mirror_out_of_order"
    MIRROR_DIFFERS = "mirror_differs"
    MISSING_IN_CATALOG = "missing_in_catalog"
    MISSING_IN_MIRROR = "missing_in_mirror"
    # catalog rows against the entries
    UNBACKED_ROW = "unbacked_row"  # a row whose entry is missing or of another kind
    ROW_DIFFERS = "row_differs"  # a row that says other than its entry
    MISSING_ROW = "missing_row"  # an entry whose row is gone
    UNBACKED_RETENTION = "unbacked_retention"  # an item's retention no entry states
    # off-site checkpoints
    OFFSITE_UNREACHABLE = "offsite_unreachable"
    CHECKPOINT_UNREADABLE = "checkpoint_unreadable"
    CHECKPOINT_BAD_SIGNATURE = "checkpoint_bad_signature"
    CHECKPOINT_MISNAMED = "checkpoint_misnamed"  # a body whose seq is not its name's
    CHECKPOINT_MISSING = "checkpoint_missing"  # a checkpoint once seen on a target is gone
    LEDGER_TRUNCATED = "ledger_truncated"  # a checkpoint vouches for entries this ledger lacks
    LEDGER_REWRITTEN = "ledger_rewritten"  # a checkpoint's head differs from this ledger's
    # stored objects (audit, verify)
    OBJECT_MISSING = "object_missing"  # an item's object is not in the store
    OBJECT_UNREADABLE = "object_unreadable"  # it is there but cannot be read or looked at
    CHECKSUM_MISMATCH = "checksum_mismatch"  # its bytes no longer hash to its name
    SIZE_MISMATCH = "size_mismatch"  # its size is not the item's: truncated or grown
    UNEXPECTED_OBJECT = "unexpected_object"  # an object no item names (an orphan)
    DOES_NOT_PLAY = "does_not_play"  # intact bytes that do not decode end to end
    # off-site copies (audit --offsite)
    REPLICA_MISMATCH = "replica_mismatch"  # a copy that does not hold the item's bytes
    REPLICA_NOT_CHECKED = "replica_not_checked"  # its target cannot be used now
    # checkpoints against the ledger's Merkle tree, their records and time-stamp tokens
    CHECKPOINT_ROOT_MISMATCH = "checkpoint_root_mismatch"  # its tree is not the ledger's
    CHECKPOINT_RECORD_INVALID = "checkpoint_record_invalid"  # a checkpointed entry's checkpoint
    TIMESTAMP_INVALID = "timestamp_invalid"  # a token not from a trusted TSA over its checkpoint
    TIMESTAMP_MISSING = "timestamp_missing"  # a token the ledger records sent is not off-site
    # a court package (verify-export)
    BAG_INVALID = "bag_invalid"  # the BagIt structure itself (bagit.txt, manifests) is wrong
    PAYLOAD_MISMATCH = "payload_mismatch"  # a payload file does not hash as its manifest says
    PACKAGE_FILE_MISSING = "package_file_missing"  # a file a manifest or the package names
    PACKAGE_FILE_UNEXPECTED = "package_file_unexpected"  # a file no manifest names
    TAG_FILE_MISMATCH = "tag_file_mismatch"  # a tag file differs from its tag manifest
    UNSAFE_PATH = "unsafe_path"  # a path that would escape the package
    NOT_A_REGULAR_FILE = "not_a_regular_file"  # a symlink, device, FIFO or socket: not read
    FILE_TOO_LARGE = "file_too_large"  # a tag file larger than any the package could need
    PACKAGE_UNREADABLE = "package_unreadable"  # a package file that cannot be parsed
    ITEM_MISMATCH = "item_mismatch"  # payload, manifest and export entry disagree on an item
    PROOF_INVALID = "proof_invalid"  # an inclusion proof that does not lead to the root
    CHECKPOINT_INCONSISTENT = "checkpoint_inconsistent"  # not an extension of the published
    EXPORT_NOT_RECORDED = "export_not_recorded"  # no signed export entry for this package
    BAG_INFO_DIFFERS = "bag_info_differs"  # bag-info.txt says other than the export entry
    TAG_MANIFEST_UNSIGNED = "tag_manifest_unsigned"  # its tag manifest not signed by the station


K = DiscrepancyKind


@dataclass(frozen=True, kw_only=True)
class Discrepancy:
    """One thing a check found wrong. ``seq`` is the ledger entry it concerns (None: no one
    entry); ``detail`` says it for a person. Only the families below are made: each admits
    the kinds it lists, and every kind is in exactly one family. A family that adds no field
    is a plain subclass of the dataclass above it: it inherits its methods (its fields
    frozen, compared only with its own family's, shown by its own name) and costs no second
    build of them when the module loads."""

    kinds: ClassVar[frozenset[DiscrepancyKind]] = frozenset()

    kind: DiscrepancyKind
    seq: int | None = None
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in self.kinds:
            raise ValueError(f"{type(self).__name__} is not of kind {self.kind}")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "seq": self.seq, "detail": self.detail}


# -- the ledger ------------------------------------------------------------------------------


class ChainBroken(Discrepancy):
    """The chain itself: an entry missing, out of order, edited, unlinked, or dated back."""

    kinds = frozenset({K.MISSING, K.OUT_OF_ORDER, K.TIME_WENT_BACK, K.EDITED, K.BROKEN_LINK,
                       K.ENTRY_UNREADABLE})


class BadSignature(Discrepancy):
    """A signature, or a key, that the ledger does not prove."""

    kinds = frozenset({K.UNKNOWN_KEY, K.BAD_SIGNATURE, K.RETIRED_KEY, K.UNVOUCHED_KEY,
                       K.PIN_MISMATCH, K.NOT_PINNED, K.WRONG_KEY})


class CatalogDamaged(Discrepancy):
    """The catalog's file fails the database's own check of its pages."""

    kinds = frozenset({K.CATALOG_DAMAGED})


class MirrorMismatch(Discrepancy):
    """The JSON-lines mirror and the catalog's entries disagree."""

    kinds = frozenset({K.MIRROR_UNREADABLE, K.MIRROR_OUT_OF_ORDER, K.MIRROR_DIFFERS,
                       K.MISSING_IN_CATALOG, K.MISSING_IN_MIRROR})


@dataclass(frozen=True, kw_only=True)
class UnbackedRow(Discrepancy):
    """A catalog row (``table``, named ``key``) that no entry of the right kind backs."""

    kinds = frozenset({K.UNBACKED_ROW, K.UNBACKED_RETENTION})

    table: str
    key: str

    @classmethod
    def wrong_entry(cls, *, table: str, key: str, seq: int | None, entry_kind: str,
                    ) -> UnbackedRow:
        return cls(kind=K.UNBACKED_ROW, seq=seq, table=table, key=key,
                   detail=f"{table} row {key} is not backed by a {entry_kind} entry")


@dataclass(frozen=True, kw_only=True)
class RowDiffers(Discrepancy):
    """A catalog row that says other than its entry: ``found`` in the row, ``expected`` in
    the entry (the ledger is the record)."""

    kinds = frozenset({K.ROW_DIFFERS})

    table: str
    key: str
    field: str
    expected: Any = None
    found: Any = None

    @classmethod
    def of(cls, *, table: str, key: str, seq: int | None, field: str, expected: Any,
           found: Any) -> RowDiffers:
        return cls(kind=K.ROW_DIFFERS, seq=seq, table=table, key=key, field=field,
                   expected=expected, found=found,
                   detail=f"{table} row {key}: {field} is {found!r} but the ledger says "
                          f"{expected!r}")


@dataclass(frozen=True, kw_only=True)
class MissingRow(Discrepancy):
    """An entry whose catalog row (in ``table``) is gone."""

    kinds = frozenset({K.MISSING_ROW})

    table: str


class CheckpointProblem(Discrepancy):
    """The ledger against the signed checkpoints its targets hold."""

    kinds = frozenset({K.OFFSITE_UNREACHABLE, K.CHECKPOINT_UNREADABLE,
                       K.CHECKPOINT_BAD_SIGNATURE, K.CHECKPOINT_MISNAMED,
                       K.CHECKPOINT_MISSING, K.LEDGER_TRUNCATED, K.LEDGER_REWRITTEN})


# -- stored objects --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ObjectDiscrepancy(Discrepancy):
    """What is wrong with the object stored under ``item`` (a SHA-256)."""

    item: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "sha256": self.item, "problem": self.detail}


class FileMissing(ObjectDiscrepancy):
    kinds = frozenset({K.OBJECT_MISSING})

    @classmethod
    def of(cls, item: str, *, where: object) -> FileMissing:
        return cls(kind=K.OBJECT_MISSING, item=item,
                   detail=f"object {item} is missing from {where}")


class ObjectUnreadable(ObjectDiscrepancy):
    kinds = frozenset({K.OBJECT_UNREADABLE})

    @classmethod
    def of(cls, item: str, *, why: str) -> ObjectUnreadable:
        return cls(kind=K.OBJECT_UNREADABLE, item=item,
                   detail=f"object {item} cannot be read: {why}")


@dataclass(frozen=True, kw_only=True)
class ChecksumMismatch(ObjectDiscrepancy):
    """Re-hashed from disk: ``found`` is what its bytes hash to now (``size`` of them)."""

    kinds = frozenset({K.CHECKSUM_MISMATCH})

    expected: str
    found: str
    size: int

    @classmethod
    def of(cls, item: str, *, found: str, size: int) -> ChecksumMismatch:
        return cls(kind=K.CHECKSUM_MISMATCH, item=item, expected=item, found=found, size=size,
                   detail=f"object {item} is damaged: it now hashes to {found} ({size} bytes)")

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "expected": self.expected, "found": self.found,
                "size": self.size}


@dataclass(frozen=True, kw_only=True)
class SizeMismatch(ObjectDiscrepancy):
    """Looked at, not read: its size is ``found`` bytes, the item's ``expected``."""

    kinds = frozenset({K.SIZE_MISMATCH})

    expected: int
    found: int

    @classmethod
    def of(cls, item: str, *, expected: int, found: int) -> SizeMismatch:
        how = "cut short" if found < expected else "grown"
        return cls(kind=K.SIZE_MISMATCH, item=item, expected=expected, found=found,
                   detail=f"object {item} is damaged: it is {found} bytes, not the "
                          f"{expected} stored ({how})")

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "expected_size": self.expected,
                "found_size": self.found}


@dataclass(frozen=True, kw_only=True)
class UnexpectedObject(ObjectDiscrepancy):
    """An object in the store that no item names."""

    kinds = frozenset({K.UNEXPECTED_OBJECT})

    size: int

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "size": self.size}


@dataclass(frozen=True, kw_only=True)
class DoesNotPlay(ObjectDiscrepancy):
    """Intact bytes that do not decode end to end; ``errors``: the decoder's last words."""

    kinds = frozenset({K.DOES_NOT_PLAY})

    errors: tuple[str, ...] = ()

    @classmethod
    def of(cls, item: str, *, errors: tuple[str, ...]) -> DoesNotPlay:
        return cls(kind=K.DOES_NOT_PLAY, item=item, errors=errors,
                   detail=f"does not play back: {'; '.join(errors)}")


@dataclass(frozen=True, kw_only=True)
class ReplicaProblem(ObjectDiscrepancy):
    """The item's copy on ``target``: found bad, or not checked (its target cannot be used
    now, which says nothing of the copy)."""

    kinds = frozenset({K.REPLICA_MISMATCH, K.REPLICA_NOT_CHECKED})

    target: str


class CheckpointRecordProblem(Discrepancy):
    """A signed checkpoint (off-site or recorded in a ``checkpointed`` entry) whose Merkle
    tree is not the ledger's, whose record does not hold up, or whose time-stamp token is not
    a trusted authority's over its bytes."""

    kinds = frozenset({K.CHECKPOINT_ROOT_MISMATCH, K.CHECKPOINT_RECORD_INVALID,
                       K.TIMESTAMP_INVALID, K.TIMESTAMP_MISSING})


# -- a court package ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PackageProblem(Discrepancy):
    """What is wrong in an exported package; ``path`` is the file it concerns, relative to the
    package (None: the package as a whole)."""

    kinds = frozenset({K.BAG_INVALID, K.PAYLOAD_MISMATCH, K.PACKAGE_FILE_MISSING,
                       K.PACKAGE_FILE_UNEXPECTED, K.TAG_FILE_MISMATCH, K.UNSAFE_PATH,
                       K.NOT_A_REGULAR_FILE, K.FILE_TOO_LARGE, K.PACKAGE_UNREADABLE,
                       K.ITEM_MISMATCH, K.PROOF_INVALID, K.CHECKPOINT_INCONSISTENT,
                       K.EXPORT_NOT_RECORDED, K.BAG_INFO_DIFFERS, K.TAG_MANIFEST_UNSIGNED})

    path: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**super().as_dict(), "path": self.path}


#: Every family, for whoever must tell them apart (and for the test that every kind has one).
FAMILIES: tuple[type[Discrepancy], ...] = (
    ChainBroken, BadSignature, CatalogDamaged, MirrorMismatch, UnbackedRow, RowDiffers,
    MissingRow, CheckpointProblem, FileMissing, ObjectUnreadable, ChecksumMismatch,
    SizeMismatch, UnexpectedObject, DoesNotPlay, ReplicaProblem, CheckpointRecordProblem,
    PackageProblem)


def family_of(kind: DiscrepancyKind) -> type[Discrepancy]:
    """The one family a kind belongs to."""
    (family,) = (f for f in FAMILIES if kind in f.kinds)
    return family
