"""The custody ledger: canonical entries, hash-chained and signed; the JSON-lines mirror; checks.

An entry's hash covers its canonical body (sequence, time, station, actor, kind, item, data,
previous hash, key id); the station key signs that same body. Verification reports every
discrepancy it finds, typed, never just the first.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from msgspec import structs

from ..domain.canonical import canonical_bytes, format_time, parse_time, sha256_hex
from ..domain.models import EventKind, LedgerEntry, UnreadableEntry, body_of

# The kinds and the base are re-exported: callers of the ledger's checks name them from here.
from .discrepancy import BadSignature, ChainBroken, MirrorMismatch
from .discrepancy import Discrepancy as Discrepancy
from .discrepancy import DiscrepancyKind as DiscrepancyKind
from .hashing import fsync_dir
from .signing import PublicKey, StationKey

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64


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
    return structs.replace(draft, entry_hash=sha256_hex(body), signature=key.sign(body))


def to_json(entry: LedgerEntry) -> dict[str, Any]:
    return {**body_of(entry), "entry_hash": entry.entry_hash, "signature": entry.signature}


def from_json(obj: Mapping[str, Any]) -> LedgerEntry:
    return LedgerEntry(
        seq=int(obj["seq"]), at=parse_time(obj["at"]), station=obj["station"],
        actor=obj["actor"], kind=obj["kind"], item=obj["item"], data=dict(obj["data"]),
        prev_hash=obj["prev_hash"], key_id=obj["key_id"], entry_hash=obj["entry_hash"],
        signature=obj["signature"],
    )


K = DiscrepancyKind

#: The entries that bring keys into the chain.
KEY_KINDS = (str(EventKind.GENESIS), str(EventKind.KEY_ROTATED))

#: In a genesis entry's data: this station dates no entry before the one it follows (a ledger
#: begun by an earlier release says so with a ``time_rule`` entry instead).
TIME_RULE_KEY = "time_rule"


# -- the keys the ledger vouches for ---------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProvenKey:
    """A key and the entries it may sign: those of ``station`` from ``since`` up to and
    including ``until``, the entry that retires it (None: still in use). ``station`` None is a
    key trusted from outside the ledger, for any station."""

    public: PublicKey
    station: str | None
    since: int
    until: int | None = None
    retired_at: datetime | None = None

    @property
    def key_id(self) -> str:
        return self.public.key_id

    def covers(self, entry: LedgerEntry) -> bool:
        return (self.station in (None, entry.station) and entry.seq >= self.since
                and (self.until is None or entry.seq <= self.until))


class KeyChain:
    """The keys the ledger itself proves, learnt entry by entry in sequence order.

    A station's first key comes from its ``genesis`` entry, whose public key must have the
    fingerprint pinned outside the catalog (``pins``: station -> fingerprint); each later key
    from a ``key_rotated`` entry signed with the key before it, which it retires.
    """

    def __init__(self, *, pins: Mapping[str, str] | None = None,
                 trusted: Mapping[str, PublicKey] | None = None) -> None:
        self.pins = dict(pins or {})
        self.keys: dict[str, ProvenKey] = {
            kid: ProvenKey(public=pub, station=None, since=0)
            for kid, pub in (trusted or {}).items()}
        self.genesis: dict[str, PublicKey] = {}  # station -> the key its genesis entry carries
        self.started: set[str] = set()  # stations with a genesis entry, verified or not
        self._current: dict[str, str] = {}  # station -> key id in use

    def current(self, station: str) -> ProvenKey | None:
        kid = self._current.get(station)
        return self.keys[kid] if kid is not None else None

    def signature_problems(self, entry: LedgerEntry, body: bytes) -> list[Discrepancy]:
        """Why ``entry`` is not signed by a key vouched for it, every reason ([]: it is)."""
        key = self.keys.get(entry.key_id)
        if key is None or key.station not in (None, entry.station) or entry.seq < key.since:
            return [BadSignature(
                kind=K.UNKNOWN_KEY, seq=entry.seq,
                detail=f"signed with key {entry.key_id}, which the ledger does not vouch for "
                       f"at station {entry.station}")]
        problems: list[Discrepancy] = []
        if key.until is not None and entry.seq > key.until:
            problems.append(BadSignature(
                kind=K.RETIRED_KEY, seq=entry.seq,
                detail=f"signed with key {entry.key_id}, retired by entry {key.until}"))
        if not key.public.verify(entry.signature, body):
            problems.append(BadSignature(
                kind=K.BAD_SIGNATURE, seq=entry.seq,
                detail=f"signature does not verify with key {entry.key_id}"))
        return problems

    def admit(self, entry: LedgerEntry, body: bytes) -> list[Discrepancy]:
        """Check ``entry``'s signature and learn the key it brings in, if it brings one."""
        if entry.kind == EventKind.GENESIS:
            return self._genesis(entry, body)
        problems = self.signature_problems(entry, body)
        if problems:
            return problems
        if entry.kind == EventKind.KEY_ROTATED:
            try:
                new = PublicKey.from_hex(str(entry.data["new_public_key"]))
            except (KeyError, ValueError):
                return [BadSignature(kind=K.UNVOUCHED_KEY, seq=entry.seq,
                                     detail="key rotation entry carries no valid new public "
                                            "key")]
            old = self.keys[entry.key_id]
            self.keys[old.key_id] = replace(old, until=entry.seq, retired_at=entry.at)
            self.keys[new.key_id] = ProvenKey(public=new, station=entry.station,
                                              since=entry.seq + 1)
            self._current[entry.station] = new.key_id
        return []

    def _genesis(self, entry: LedgerEntry, body: bytes) -> list[Discrepancy]:
        station = entry.station
        first = station not in self.started
        self.started.add(station)
        try:
            pub = PublicKey.from_hex(str(entry.data["public_key"]))
        except (KeyError, ValueError):
            return [BadSignature(kind=K.UNKNOWN_KEY, seq=entry.seq,
                                 detail="genesis entry carries no valid public key")]
        problems: list[Discrepancy] = []
        if pub.key_id != entry.key_id or not pub.verify(entry.signature, body):
            problems.append(BadSignature(
                kind=K.BAD_SIGNATURE, seq=entry.seq,
                detail="genesis entry is not signed by the key it carries"))
        if not first:
            problems.append(BadSignature(
                kind=K.UNVOUCHED_KEY, seq=entry.seq,
                detail=f"a second genesis entry for station {station} brings in key "
                       f"{pub.key_id} outside a rotation"))
        if problems:
            return problems  # the key it carries is not learnt
        self.genesis[station] = pub
        pin = self.pins.get(station)
        if pin is not None and pub.fingerprint != pin:
            return [BadSignature(
                kind=K.PIN_MISMATCH, seq=entry.seq,
                detail=f"the genesis key of station {station} has fingerprint "
                       f"{pub.fingerprint}, not the pinned {pin}")]
        self.keys[pub.key_id] = ProvenKey(public=pub, station=station, since=entry.seq)
        self._current[station] = pub.key_id
        return []

    def unmet_pins(self) -> list[Discrepancy]:
        """Pinned stations whose genesis entry was never seen."""
        return [BadSignature(kind=K.PIN_MISMATCH, seq=None,
                             detail=f"no genesis entry of station {station} carries the "
                                    f"pinned key {pin}")
                for station, pin in sorted(self.pins.items()) if station not in self.genesis]


class ChainCheck:
    """Checks hashes, links, sequence and signatures one entry at a time, in sequence order,
    holding nothing of the entries but the last one's hash: a ledger of any length is checked
    in constant memory."""

    def __init__(self, keys: KeyChain) -> None:
        self.keys = keys
        self.problems: list[Discrepancy] = []
        self.count = 0
        self.head = GENESIS_HASH
        self._expected = 1
        self._last_at: datetime | None = None
        self._ruled: set[str] = set()  # stations whose entries are dated in order from here

    def step(self, entry: LedgerEntry) -> None:
        self.count += 1
        body = canonical_bytes(body_of(entry))
        self._sequence(entry.seq)
        if sha256_hex(body) != entry.entry_hash:
            self.problems.append(ChainBroken(
                kind=K.EDITED, seq=entry.seq,
                detail="the entry's content does not match its recorded hash"))
        self._link(entry.seq, entry.prev_hash)
        if entry.kind == EventKind.TIME_RULE or (
                entry.kind == EventKind.GENESIS and entry.data.get(TIME_RULE_KEY)):
            self._ruled.add(entry.station)
        elif (entry.station in self._ruled and self._last_at is not None
              and entry.at < self._last_at):
            # ingestd never dates an entry before the one it follows (see Custody.now): a
            # clock set back, or entries written by something else, show here.
            self.problems.append(ChainBroken(
                kind=K.TIME_WENT_BACK, seq=entry.seq,
                detail=f"entry {entry.seq} is dated {format_time(entry.at)}, before the entry "
                       f"it follows ({format_time(self._last_at)})"))
        self._last_at = entry.at if self._last_at is None else max(self._last_at, entry.at)
        self.problems.extend(self.keys.admit(entry, body))
        self._expected = max(self._expected, entry.seq) + 1
        self.head = entry.entry_hash

    def step_unreadable(self, entry: UnreadableEntry) -> None:
        """An entry whose fields cannot be read: it is reported, its place in the sequence
        and its link still checked, and the walk goes on from its hash."""
        self.count += 1
        self._sequence(entry.seq)
        self.problems.append(ChainBroken(kind=K.ENTRY_UNREADABLE, seq=entry.seq,
                                         detail=f"entry {entry.seq} cannot be read: "
                                                f"{entry.why}"))
        self._link(entry.seq, entry.prev_hash)
        self._expected = max(self._expected, entry.seq) + 1
        self.head = entry.entry_hash

    def _sequence(self, seq: int) -> None:
        if seq > self._expected:
            self.problems.append(ChainBroken(
                kind=K.MISSING, seq=self._expected,
                detail=f"entries {self._expected}..{seq - 1} are missing"))
        elif seq < self._expected:
            self.problems.append(ChainBroken(
                kind=K.OUT_OF_ORDER, seq=seq, detail=f"entry {seq} comes after "
                                                     f"{self._expected - 1}"))

    def _link(self, seq: int, prev_hash: str) -> None:
        if prev_hash != self.head:
            self.problems.append(ChainBroken(
                kind=K.BROKEN_LINK, seq=seq,
                detail="previous-hash link does not match the entry before it"))


def verify_chain(
    entries: Iterable[LedgerEntry], trusted: Mapping[str, PublicKey] | None = None, *,
    keys: KeyChain | None = None,
) -> tuple[list[Discrepancy], int, str]:
    """Check hashes, links, sequence and signatures. Returns (problems, count, head
    hash).

    Signatures are checked against the keys the chain itself proves (``keys``, which the walk
    fills in; see :class:`KeyChain`), plus ``trusted``: keys vouched for from outside.
    """
    chain = keys if keys is not None else KeyChain(trusted=trusted)
    if keys is not None and trusted:
        chain.keys.update(KeyChain(trusted=trusted).keys)
    check = ChainCheck(chain)
    for entry in entries:
        check.step(entry)
    return check.problems, check.count, check.head


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
        """A crash mid-append can leave a last line without its newline. A line whole but for
        it (it parses, its hash matches, and it links to the line before as the next entry)
        is kept and given its newline; anything else is cut, and the cut is logged."""
        try:
            fh = self.path.open("r+b")
        except FileNotFoundError:
            return
        with fh:
            end = fh.seek(0, os.SEEK_END)
            if not end:
                return
            fh.seek(end - 1)
            if fh.read(1) == b"\n":
                return  # the usual case, after every commit: one byte read
            start, data = _tail(fh, end, 1)
            cut = start + data.rfind(b"\n") + 1
            fh.seek(cut)
            torn = fh.read(end - cut)
            seq = _next_entry(torn, _last_line(fh, cut))
            if seq is not None:
                fh.seek(end)
                fh.write(b"\n")
                log.warning("%s: entry %d was whole but for its newline; kept", self.path, seq)
            else:
                fh.truncate(cut)
                # The bytes may hold personal data: where and how much, never what.
                log.warning("%s: cut a torn last line of %d bytes at offset %d", self.path,
                            end - cut, cut, extra={"event": "mirror_tail_cut"})
            os.fsync(fh.fileno())

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def read(self, *, upto: int | None = None) -> Iterator[tuple[int, dict[str, Any] | None, str]]:
        """Every line, or those within the first ``upto`` bytes (what was there at a moment)."""
        if not self.path.exists():
            return
        with self.path.open("rb") as fh:
            lines: Iterable[bytes] = fh if upto is None else _lines_upto(fh, upto)
            for lineno, raw in enumerate(lines, start=1):
                try:
                    obj = json.loads(raw)
                    if not isinstance(obj, dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    yield lineno, None, f"line {lineno} is not a JSON object: {exc}"
                    continue
                yield lineno, obj, ""


def _last_line(fh: BinaryIO, end: int) -> bytes | None:
    """The last complete line before offset ``end`` (which follows a newline)."""
    if end == 0:
        return None
    start, data = _tail(fh, end, 2)
    lines = data.split(b"\n")[:-1]
    return lines[-1] if lines and (start == 0 or len(lines) > 1) else None


def _next_entry(raw: bytes, before: bytes | None) -> int | None:
    """The sequence number of the entry ``raw`` holds, if it is whole and follows ``before``
    (None when it is not)."""
    try:
        entry = from_json(json.loads(raw))
        prev = from_json(json.loads(before)) if before is not None else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if sha256_hex(canonical_bytes(body_of(entry))) != entry.entry_hash:
        return None
    expected = (1, GENESIS_HASH) if prev is None else (prev.seq + 1, prev.entry_hash)
    return entry.seq if (entry.seq, entry.prev_hash) == expected else None


def _lines_upto(fh: BinaryIO, upto: int) -> Iterator[bytes]:
    left = upto
    for raw in fh:
        if left <= 0:
            return
        yield raw[:left]
        left -= len(raw)


def _tail(fh: BinaryIO, end: int, newlines: int) -> tuple[int, bytes]:
    """The last bytes of a file up to ``end`` that hold ``newlines`` newlines (or the whole
    file), and the offset where they start: read backwards in growing chunks (the first
    holds a few entries: this runs after every commit)."""
    chunk = 1 << 13
    while True:
        start = max(0, end - chunk)
        fh.seek(start)
        data = fh.read(end - start)
        if not start or data.count(b"\n") >= newlines:
            return start, data
        chunk *= 4


def compare_mirror(
    db_entries: Mapping[int, LedgerEntry], mirror: Mirror, *, station: str | None = None,
    upto: int | None = None,
) -> list[Discrepancy]:
    """Every mirror line must equal the catalog's entry; every catalog entry must be mirrored.

    With ``station`` (many stations on one catalog), entries other stations appended after
    this mirror's last line are not yet expected in it: they are mirrored at this station's
    next write. This station's own entries must all be there. With ``upto``, only the first
    ``upto`` bytes of the mirror are read: what it held when the catalog was read."""
    return compare_mirror_in_step(
        (db_entries[seq] for seq in sorted(db_entries)), mirror, station=station, upto=upto,
        lookup=db_entries.get)


def compare_mirror_in_step(
    db_entries: Iterable[LedgerEntry | UnreadableEntry], mirror: Mirror, *,
    station: str | None = None, upto: int | None = None,
    lookup: Callable[[int], LedgerEntry | UnreadableEntry | None],
) -> list[Discrepancy]:
    """:func:`compare_mirror` over the catalog's entries in rising sequence order, read in
    step with the mirror's lines. Only catalog entries that a later mirror line has passed
    (missing from the mirror, or moved) are held; ``lookup`` fetches an entry again for a
    line that repeats or comes back after a later one. A catalog entry that cannot be read
    differs from its line, whatever the line says."""
    problems: list[Discrepancy] = []
    pending: dict[int, LedgerEntry | UnreadableEntry] = {}
    db = iter(db_entries)
    nxt = next(db, None)
    last = 0
    for lineno, entry in _mirror_entries(mirror, upto, problems):
        moved = entry.seq <= last
        if moved:
            # An append-only copy has rising sequence numbers; a line moved or repeated also
            # misleads the next append, which starts after the last line's number.
            problems.append(MirrorMismatch(
                kind=K.MIRROR_OUT_OF_ORDER, seq=entry.seq,
                detail=f"{mirror.path} line {lineno}: entry {entry.seq} comes after entry "
                       f"{last}"))
        last = max(last, entry.seq)
        while nxt is not None and nxt.seq <= entry.seq:
            pending[nxt.seq] = nxt
            nxt = next(db, None)
        ours = pending.pop(entry.seq, None)
        if ours is None and moved:
            ours = lookup(entry.seq)
        if ours is None:
            problems.append(MirrorMismatch(
                kind=K.MISSING_IN_CATALOG, seq=entry.seq,
                detail=f"entry {entry.seq} is in the mirror but not in the catalog"))
        elif isinstance(ours, UnreadableEntry) or to_json(ours) != to_json(entry):
            problems.append(MirrorMismatch(
                kind=K.MIRROR_DIFFERS, seq=entry.seq,
                detail=f"{mirror.path} line {lineno} differs from the catalog's entry"))
    for seq in sorted(pending):
        problems.append(_not_mirrored(seq, mirror))
    while nxt is not None:
        if station is None or nxt.station == station:
            problems.append(_not_mirrored(nxt.seq, mirror))
        nxt = next(db, None)
    return problems


def _not_mirrored(seq: int, mirror: Mirror) -> Discrepancy:
    return MirrorMismatch(kind=K.MISSING_IN_MIRROR, seq=seq,
                          detail=f"entry {seq} is in the catalog but not in {mirror.path}")


def _mirror_entries(mirror: Mirror, upto: int | None,
                    problems: list[Discrepancy]) -> Iterator[tuple[int, LedgerEntry]]:
    for lineno, obj, err in mirror.read(upto=upto):
        if obj is None:
            problems.append(MirrorMismatch(kind=K.MIRROR_UNREADABLE, seq=None,
                                           detail=f"{mirror.path}: {err}"))
            continue
        try:
            yield lineno, from_json(obj)
        except (KeyError, ValueError, TypeError) as exc:
            problems.append(MirrorMismatch(
                kind=K.MIRROR_UNREADABLE, seq=None,
                detail=f"{mirror.path} line {lineno}: missing or bad field {exc}"))
