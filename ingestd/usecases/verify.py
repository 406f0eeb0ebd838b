"""``verify``: is this file, or this SHA-256, our evidence, intact and signed?

The item's stored bytes are re-read where they are (this station's store, else a target that
holds a verified copy), and every ledger entry of the item is checked against the keys the
chain proves. Targets are built only when an item's bytes are not here: a station's usual
answer (its own store) loads no S3 client.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..docks.walk import open_regular
from ..domain.canonical import canonical_bytes, sha256_hex
from ..domain.models import EventKind, LedgerEntry, UnreadableEntry, body_of, is_sha256
from ..errors import NotRegularFile, TargetError, UsageError
from ..integrity.hashing import hash_fd
from ..station import Station
from .describe import describe_item

if TYPE_CHECKING:
    from ..targets import Target

#: The targets to read an item's bytes from when they are not here, built when first needed.
Targets = Callable[[], Sequence["Target"]]


def no_targets() -> Sequence[Target]:
    return ()


class BytesChecked(StrEnum):
    """Where ``verify`` re-read the item's stored bytes."""

    HERE = "here"  # this station's local store
    OFFSITE = "offsite"  # a target holding a verified copy, read back in full
    NOT_HERE = "not-checked-here"  # neither is within reach: nothing said about the bytes


@dataclass(kw_only=True)
class Verdict:
    path: str | None
    sha256: str
    match: bool = False
    item: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    #: Where the stored bytes are (the station that stored the item, the targets holding
    #: verified copies) and where they were checked.
    held: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "match": self.match,
                "item": self.item, "problems": self.problems, "held": self.held,
                "notes": self.notes}


def _signature_problems(station: Station, sha: str) -> list[str]:
    problems = []
    with station.catalog.read(snapshot=True) as tx:
        keys = station.custody.trusted_keys(tx)  # proven by the chain, not the catalog
        read = list(tx.entries_to_check(item=sha))
    entries = [e for e in read if isinstance(e, LedgerEntry)]
    if not any(e.kind == EventKind.STORED for e in entries):
        problems.append("no signed 'stored' entry in the ledger")
    for bad in read:
        if isinstance(bad, UnreadableEntry):  # and the others are still checked
            problems.append(f"ledger entry {bad.seq} cannot be read: {bad.why}")
    for entry in entries:
        body = canonical_bytes(body_of(entry))
        if sha256_hex(body) != entry.entry_hash:
            problems.append(f"ledger entry {entry.seq} ({entry.kind}) was altered")
            continue
        for wrong in keys.signature_problems(entry, body):
            problems.append(f"ledger entry {entry.seq} ({entry.kind}) has no valid signature: "
                            f"{wrong.detail}")
    return problems


def verify_digest(station: Station, sha: str, *, path: str | None = None,
                  size: int | None = None, targets: Targets = no_targets) -> Verdict:
    """Is ``sha`` our evidence, intact and signed? Its stored bytes are re-read where they
    are: this station's store when it holds them, else a target holding a verified copy (of
    ``targets()``, called only then); where neither can be reached, the verdict says so and
    claims nothing."""
    verdict = Verdict(path=path, sha256=sha)
    verdict.item = describe_item(station, sha)
    if verdict.item is None:
        verdict.problems.append("not evidence held by this catalog (no item has this SHA-256)")
        return verdict
    if size is not None and size != verdict.item["size"]:
        verdict.problems.append(f"size {size} differs from the item's {verdict.item['size']}")
    with station.catalog.read() as tx:
        copies = sorted(tx.verified_targets(sha))
    stored_by = str(verdict.item["station"])
    here = stored_by == station.name and bool(verdict.item["local"])
    verdict.held = {"station": stored_by, "local": bool(verdict.item["local"]),
                    "targets": copies, "checked": str(BytesChecked.HERE)}
    if here:
        _, damage = station.store.examine(sha, verdict.item["size"])
        if damage is not None:
            verdict.problems.append(f"the stored copy is damaged: {damage.detail}")
    else:
        _check_elsewhere(verdict, station, sha, copies, targets)
    verdict.problems.extend(_signature_problems(station, sha))
    verdict.match = not verdict.problems
    return verdict


def _check_elsewhere(verdict: Verdict, station: Station, sha: str, copies: Sequence[str],
                     targets: Targets) -> None:
    """The stored bytes are not in this station's store: re-read a verified off-site copy,
    or say plainly that they cannot be checked from here."""
    assert verdict.held is not None
    stored_by = verdict.held["station"]
    if stored_by != station.name:
        verdict.notes.append(f"stored at station {stored_by}, which holds its bytes; this "
                             f"station ({station.name}) does not")
    else:
        verdict.notes.append("no longer in this station's local store (kept off-site)")
    reach: Sequence[Target] = ()
    if copies:
        verdict.notes.append("verified copies on " + ", ".join(copies))
        try:
            reach = targets()
        except TargetError as exc:  # a target that cannot even be set up (its credentials)
            verdict.notes.append(f"cannot use the targets: {exc.message}")
    for target in reach:
        if target.name not in copies:
            continue
        try:
            remote = target.rehash_item(sha)
        except TargetError as exc:
            verdict.notes.append(f"cannot read the copy on {target.name}: {exc.message}")
            continue
        verdict.held["checked"] = f"{BytesChecked.OFFSITE}:{target.name}"
        if remote == sha:
            verdict.notes.append(f"the copy on {target.name} was read back in full: intact")
        else:
            verdict.problems.append(f"the off-site copy on {target.name} is damaged: it "
                                    f"hashes to {remote}")
        return
    verdict.held["checked"] = str(BytesChecked.NOT_HERE)
    verdict.notes.append("its stored bytes cannot be checked from this station"
                         + (f" (check them at station {stored_by})"
                            if stored_by != station.name else ""))


def verify_files(station: Station, paths: Sequence[Path],
                 targets: Targets = no_targets) -> list[Verdict]:
    out = []
    for path in paths:
        try:
            fd = open_regular(path)
        except NotRegularFile as exc:
            out.append(Verdict(path=str(path), sha256="", problems=[exc.message]))
            continue
        except OSError as exc:
            out.append(Verdict(path=str(path), sha256="",
                               problems=[f"cannot read {path}: {exc.strerror or exc}"]))
            continue
        try:
            digest = hash_fd(fd, buffer_size=station.store.buffer_size)
        except OSError as exc:
            out.append(Verdict(path=str(path), sha256="",
                               problems=[f"cannot read {path}: {exc.strerror or exc}"]))
            continue
        finally:
            os.close(fd)
        out.append(verify_digest(station, digest.sha256, path=str(path), size=digest.size,
                                 targets=targets))
    return out


def verify_hash(station: Station, text: str, targets: Targets = no_targets) -> Verdict:
    sha = text.strip().lower()
    if not is_sha256(sha):
        raise UsageError(f"--hash needs a full SHA-256 (64 hex digits), not {text!r}")
    return verify_digest(station, sha, targets=targets)
