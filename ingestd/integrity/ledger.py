"""The custody ledger: canonical entries, hash-chained and signed; the JSON-lines mirror; checks.

An entry's hash covers its canonical body (sequence, time, station, actor, kind, item, data,
previous hash, key id); the station key signs that same body. Verification reports every
discrepancy it finds, typed, never just the first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from ..domain.canonical import canonical_bytes, format_time, parse_time, sha256_hex
from ..domain.models import LedgerEntry
from .hashing import fsync_dir
from .signing import PublicKey, StationKey

GENESIS_HASH = "0" * 64


def body_of(entry: LedgerEntry) -> dict[str, Any]:
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


def seal(
    *,
    seq: int,
    at: datetime,
    station: str,
    actor: str,
    kind: str,
    item: str | None,
    data: Mapping[str, Any],
    prev_hash: str,
    key: StationKey,
) -> LedgerEntry:
    draft = LedgerEntry(
        seq=seq, at=at, station=station, actor=actor, kind=kind, item=item,
        data=dict(data), prev_hash=prev_hash, key_id=key.key_id,
    )
    body = canonical_bytes(body_of(draft))
    return LedgerEntry(
        **{**draft.__dict__, "entry_hash": sha256_hex(body), "signature": key.sign(body)}
    )


def to_json(entry: LedgerEntry) -> dict[str, Any]:
    return {**body_of(entry), "entry_hash": entry.entry_hash, "signature": entry.signature}


def from_json(obj: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        seq=int(obj["seq"]), at=parse_time(obj["at"]), station=obj["station"],
        actor=obj["actor"], kind=obj["kind"], item=obj["item"], data=dict(obj["data"]),
        prev_hash=obj["prev_hash"], key_id=obj["key_id"], entry_hash=obj["entry_hash"],
        signature=obj["signature"],
    )


# -- discrepancies ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Discrepancy:
    kind: str
    seq: int | None
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "seq": self.seq, "detail": self.detail}


def _d(kind: str, seq: int | None, detail: str) -> Discrepancy:
    return Discrepancy(kind=kind, seq=seq, detail=detail)


def verify_chain(
    entries: Iterable[LedgerEntry], trusted: Mapping[str, PublicKey]
) -> tuple[list[Discrepancy], int, str]:
    """Check hashes, links, sequence and signatures. Returns (problems, count, head hash).

    ``trusted`` maps key ids to public keys. A key introduced by a ``key_rotated`` entry that a
    trusted key signed becomes trusted from the next entry on.
    """
    problems: list[Discrepancy] = []
    keys = dict(trusted)
    expected_seq = 1
    prev_hash = GENESIS_HASH
    count = 0
    for entry in entries:
        count += 1
        body = canonical_bytes(body_of(entry))
        actual_hash = sha256_hex(body)
        if entry.seq != expected_seq:
            if entry.seq > expected_seq:
                problems.append(_d("missing", expected_seq,
                                   f"entries {expected_seq}..{entry.seq - 1} are missing"))
            else:
                problems.append(_d("out_of_order", entry.seq,
                                   f"entry {entry.seq} comes after {expected_seq - 1}"))
        if actual_hash != entry.entry_hash:
            problems.append(_d("edited", entry.seq,
                               "the entry's content does not match its recorded hash"))
        if entry.prev_hash != prev_hash:
            problems.append(_d("broken_link", entry.seq,
                               "previous-hash link does not match the entry before it"))
        key = keys.get(entry.key_id)
        if key is None:
            problems.append(_d("unknown_key", entry.seq,
                               f"signed with key {entry.key_id}, which is not trusted"))
        elif not key.verify(entry.signature, body):
            problems.append(_d("bad_signature", entry.seq,
                               f"signature does not verify with key {entry.key_id}"))
        elif entry.kind == "key_rotated" and "new_public_key" in entry.data:
            new = PublicKey.from_hex(str(entry.data["new_public_key"]))
            keys[new.key_id] = new
        expected_seq = max(expected_seq, entry.seq) + 1
        prev_hash = entry.entry_hash
    return problems, count, prev_hash


# -- the JSON-lines mirror -------------------------------------------------------------------


class Mirror:
    """An append-only JSON-lines copy of the ledger, one entry per line, fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, entries: Iterable[LedgerEntry]) -> int:
        lines = [json.dumps(to_json(e), ensure_ascii=False, sort_keys=True) + "\n" for e in entries]
        if not lines:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        try:
            os.write(fd, "".join(lines).encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        if new:
            fsync_dir(self.path.parent)
        return len(lines)

    def last_seq(self) -> int:
        """The sequence number on the last complete line (0 for none). Only the tail is read:
        this runs after every commit, and the mirror only grows."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            end = fh.seek(0, os.SEEK_END)
            lines = 2
            while True:
                start, data = _tail(fh, end, lines)
                complete = data.split(b"\n")[:-1]  # what follows the last newline is torn
                if start:
                    complete = complete[1:]  # the first line may start before the tail
                for raw in reversed(complete):
                    if raw.strip():
                        return int(json.loads(raw)["seq"])
                if not start:
                    return 0
                lines *= 4

    def truncate_partial_tail(self) -> None:
        """A crash mid-append can leave a last line without its newline: drop only that."""
        try:
            fh = self.path.open("r+b")
        except FileNotFoundError:
            return
        with fh:
            end = fh.seek(0, os.SEEK_END)
            start, data = _tail(fh, end, 1)
            if not data or data.endswith(b"\n"):
                return
            fh.truncate(start + data.rfind(b"\n") + 1)
            os.fsync(fh.fileno())

    def read(self) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            for lineno, raw in enumerate(fh, start=1):
                try:
                    obj = json.loads(raw)
                    if not isinstance(obj, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    yield lineno, None, f"line {lineno} is not a JSON object: {exc}"
                    continue
                yield lineno, obj, ""


def _tail(fh: BinaryIO, end: int, newlines: int) -> tuple[int, bytes]:
    """The last bytes of a file up to ``end`` that hold ``newlines`` newlines (or the whole
    file), and the offset where they start: read backwards in growing chunks."""
    chunk = 1 << 16
    while True:
        start = max(0, end - chunk)
        fh.seek(start)
        data = fh.read(end - start)
        if not start or data.count(b"\n") >= newlines:
            return start, data
        chunk *= 4


def compare_mirror(
    db_entries: Mapping[int, LedgerEntry], mirror: Mirror, *, station: str | None = None
) -> list[Discrepancy]:
    """Every mirror line must equal the catalog's entry; every catalog entry must be mirrored.

    With ``station`` (many stations on one catalog), entries other stations appended after
    this mirror's last line are not yet expected in it: they are mirrored at this station's
    next write. This station's own entries must all be there."""
    problems: list[Discrepancy] = []
    seen: set[int] = set()
    last = 0
    for lineno, obj, err in mirror.read():
        if obj is None:
            problems.append(_d("mirror_unreadable", None, f"{mirror.path}: {err}"))
            continue
        try:
            entry = from_json(obj)
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(_d("mirror_unreadable", None,
                               f"{mirror.path} line {lineno}: missing or bad field {exc}"))
            continue
        if entry.seq <= last:
            # An append-only copy has rising sequence numbers; a line moved or repeated also
            # misleads the next append, which starts after the last line's number.
            problems.append(_d("mirror_out_of_order", entry.seq,
                               f"{mirror.path} line {lineno}: entry {entry.seq} comes after "
                               f"entry {last}"))
        last = max(last, entry.seq)
        seen.add(entry.seq)
        ours = db_entries.get(entry.seq)
        if ours is None:
            problems.append(_d("missing_in_catalog", entry.seq,
                               f"entry {entry.seq} is in the mirror but not in the catalog"))
        elif to_json(ours) != to_json(entry):
            problems.append(_d("mirror_differs", entry.seq,
                               f"{mirror.path} line {lineno} differs from the catalog's entry"))
    for seq in sorted(set(db_entries) - seen):
        if station is not None and seq > last and db_entries[seq].station != station:
            continue
        problems.append(_d("missing_in_mirror", seq,
                           f"entry {seq} is in the catalog but not in {mirror.path}"))
    return problems
