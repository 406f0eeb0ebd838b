"""Signed checkpoints of the ledger: the head, and the root of the Merkle tree over every entry.

A checkpoint is what the station publishes off-site and what a court package carries: with it,
an inclusion proof shows that an entry is the ledger's, unchanged, without the whole ledger.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..domain import text
from ..domain.canonical import canonical_bytes, format_time, parse_time
from ..domain.models import EventKind, LedgerEntry
from ..errors import IntegrityError, TimestampError
from ..integrity import merkle
from ..integrity.discrepancy import CheckpointRecordProblem, Discrepancy, DiscrepancyKind
from ..integrity.ledger import KeyChain
from ..ports import CatalogTx
from ..station import Station

log = logging.getLogger(__name__)

# 2: carries the pinned fingerprint of the ledger's first key; 3: the Merkle tree's size and root
CHECKPOINT_VERSION = 3


@dataclass(frozen=True, kw_only=True)
class SignedCheckpoint:
    """A checkpoint body, the station's signature over its canonical bytes, and the key."""

    body: dict[str, Any]
    signature: str
    public_key: str

    @property
    def seq(self) -> int:
        return int(self.body["seq"])

    @property
    def head_hash(self) -> str | None:
        head = self.body["head_hash"]
        return str(head) if head is not None else None

    def signed_bytes(self) -> bytes:
        """The bytes the signature covers."""
        return canonical_bytes(self.body)

    def to_bytes(self) -> bytes:
        """The checkpoint as it is published: body, signature and public key, canonical JSON."""
        return canonical_bytes({"checkpoint": self.body, "signature": self.signature,
                                "public_key": self.public_key})


def ledger_leaves(tx: CatalogTx, upto: int) -> Iterator[bytes]:
    """The Merkle leaf hash of each entry from 1 to ``upto``; a gap in the sequence is an
    integrity error (the tree's leaf ``i`` must be entry ``i + 1``)."""
    expected = 1
    for seq, entry_hash in tx.entry_hashes(upto=upto):
        if seq != expected:
            raise IntegrityError(f"the ledger has no entry {expected} (next is {seq}): "
                                 "run `ingestd ledger verify`")
        expected += 1
        yield merkle.leaf_hash(bytes.fromhex(entry_hash))
    if expected != upto + 1:
        raise IntegrityError(f"the ledger ends at entry {expected - 1}, not {upto}")


def sign_checkpoint(station: Station) -> SignedCheckpoint:
    """Sign the ledger's head as it is now, with the root of the tree over all its entries."""
    station.custody.check_signing_key()
    with station.catalog.read(snapshot=True) as tx:
        seq, head = tx.ledger_head()
        size, root = merkle.root(ledger_leaves(tx, seq))
    body = {"version": CHECKPOINT_VERSION, "station": station.name, "seq": seq,
            "head_hash": head, "at": format_time(station.clock()),
            "key_id": station.key.key_id, "genesis_fingerprint": station.custody.pin,
            "tree_size": size, "merkle_root": root.hex()}
    return SignedCheckpoint(body=body, signature=station.key.sign(canonical_bytes(body)),
                            public_key=station.key.public.hex)


def checkpoint_name(station: str, seq: int) -> str:
    """The name a station's checkpoint of entry ``seq`` is published under."""
    return f"{station}-{seq:012d}.json"


# -- trusted time ------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Timestamp:
    """An RFC 3161 time-stamp of a checkpoint's published bytes.

    ``token`` is the DER TimeStampResp the authority answered (a ``.tsr``: ``openssl ts
    -verify -data CHECKPOINT -in TOKEN -CAfile CA`` checks it), ``sha256`` the hex of the
    imprint it carries (the SHA-256 of ``SignedCheckpoint.to_bytes()``), ``gen_time`` when the
    authority says it saw that hash, ``tsa`` its URL, redacted."""

    token: bytes
    gen_time: datetime
    tsa: str
    sha256: str


def timestamp_checkpoint(station: Station, signed: SignedCheckpoint) -> Timestamp | None:
    """Have ``[timestamping] url`` time-stamp ``signed``'s published bytes; None when no
    authority is configured. Raises TimestampError when it cannot be had or trusted."""
    settings = station.settings.timestamping
    if settings.url is None or settings.ca_file is None:
        return None
    from ..timestamping import request_stamp  # its client only where a stamp is asked for

    stamp = request_stamp(settings.url, signed.to_bytes(),
                          ca_file=station.settings.path(settings.ca_file),
                          timeout=settings.timeout.total_seconds(), policy=settings.policy)
    return Timestamp(token=stamp.response, gen_time=stamp.gen_time,
                     tsa=text.redact_url(settings.url), sha256=stamp.sha256)


def _stamp_data(stamp: Timestamp) -> dict[str, str]:
    return {"token": base64.b64encode(stamp.token).decode("ascii"),
            "gen_time": format_time(stamp.gen_time), "tsa": stamp.tsa, "sha256": stamp.sha256}


def record_checkpoint(station: Station, signed: SignedCheckpoint, stamp: Timestamp | None, *,
                      sent: list[str], stamp_error: str | None = None,
                      actor: str = "ingestd") -> LedgerEntry:
    """The ``checkpointed`` entry of a published checkpoint: its body, signature and public
    key, the SHA-256 of its published bytes, its time-stamp token (or why it has none) and
    the targets it was sent to."""
    data: dict[str, Any] = {
        "name": checkpoint_name(station.name, signed.seq), "checkpoint": signed.body,
        "signature": signed.signature, "public_key": signed.public_key,
        "sha256": hashlib.sha256(signed.to_bytes()).hexdigest(),
        "timestamp": _stamp_data(stamp) if stamp is not None else None,
        "sent": sorted(sent)}
    if stamp is None and stamp_error:
        data["timestamp_error"] = stamp_error[:2000]
    with station.custody.transaction() as tx:
        return station.custody.record(tx, kind=EventKind.CHECKPOINTED, actor=actor, data=data)


@dataclass(frozen=True, kw_only=True)
class PublishedCheckpoint:
    """A checkpoint as its ``checkpointed`` entry (number ``seq``, written ``at``) records it."""

    seq: int
    at: datetime
    name: str
    signed: SignedCheckpoint
    sha256: str  # of signed.to_bytes(), as recorded
    timestamp: Timestamp | None
    sent: tuple[str, ...]

    @property
    def body(self) -> dict[str, Any]:
        return self.signed.body

    @property
    def signature(self) -> str:
        return self.signed.signature

    @property
    def public_key(self) -> str:
        return self.signed.public_key

    @property
    def token(self) -> bytes | None:
        return self.timestamp.token if self.timestamp is not None else None


def _published(entry: LedgerEntry) -> PublishedCheckpoint:
    """Read a ``checkpointed`` entry; ValueError (KeyError, TypeError) when it cannot be."""
    data = entry.data
    body = data["checkpoint"]
    if not isinstance(body, dict):
        raise TypeError("checkpoint is not an object")
    signed = SignedCheckpoint(body=body, signature=str(data["signature"]),
                              public_key=str(data["public_key"]))
    raw = data.get("timestamp")
    stamp = None
    if raw is not None:
        stamp = Timestamp(token=base64.b64decode(str(raw["token"]), validate=True),
                          gen_time=parse_time(str(raw["gen_time"])), tsa=str(raw["tsa"]),
                          sha256=str(raw["sha256"]))
    return PublishedCheckpoint(seq=entry.seq, at=entry.at, name=str(data["name"]),
                               signed=signed, sha256=str(data["sha256"]), timestamp=stamp,
                               sent=tuple(str(t) for t in data.get("sent") or ()))


_UNREADABLE = (ValueError, KeyError, TypeError, binascii.Error)


def published_checkpoints(tx: CatalogTx, upto_seq: int | None = None, *,
                          station: str | None = None) -> list[PublishedCheckpoint]:
    """Every checkpoint the ledger records as published (by entries up to ``upto_seq``; of
    ``station`` only, when given: stations sharing a catalog share its ledger), oldest first.
    An entry that cannot be read is left out (``ledger verify`` names it)."""
    out: list[PublishedCheckpoint] = []
    for entry in tx.iter_entries(kinds=[EventKind.CHECKPOINTED], upto=upto_seq):
        if station is not None and entry.station != station:
            continue
        try:
            out.append(_published(entry))
        except _UNREADABLE as exc:
            log.warning("checkpointed entry %d cannot be read: %s", entry.seq, exc)
    return out


# -- checks ------------------------------------------------------------------------------------


class LedgerTree:
    """What checkpoints are compared with: the ledger's entry hashes at some entries and the
    roots of its Merkle tree at some sizes, all from one pass over its entries."""

    def __init__(self, tx: CatalogTx, *, seqs: set[int], sizes: set[int]) -> None:
        self.head, _ = tx.ledger_head()
        self.hashes: dict[int, str] = {}
        self.roots: dict[int, bytes] = {}
        self.whole = True  # False: the ledger has a gap, so no root can be trusted
        upto = min(max(seqs | sizes, default=0), self.head)

        def leaves() -> Iterator[bytes]:
            expected = 1
            for seq, entry_hash in tx.entry_hashes(upto=upto) if upto > 0 else ():
                if seq != expected:
                    raise IntegrityError(f"the ledger has no entry {expected}")
                expected += 1
                if seq in seqs:
                    self.hashes[seq] = entry_hash
                yield merkle.leaf_hash(bytes.fromhex(entry_hash))

        each = leaves()
        try:
            self.roots = merkle.roots_at(each, sizes)
            for _ in each:  # the entries after the largest size, for their hashes
                pass
        except IntegrityError:
            self.whole = False  # the chain check names the gap

    @classmethod
    def of(cls, tx: CatalogTx, bodies: Iterable[Mapping[str, Any]]) -> LedgerTree:
        """The tree for checking ``bodies`` (checkpoint bodies) against the ledger."""
        seqs: set[int] = set()
        listed = list(bodies)
        for body in listed:
            try:
                seqs.add(int(body["seq"]))
            except (KeyError, TypeError, ValueError):
                pass
        return cls(tx, seqs=seqs, sizes=tree_sizes(listed))

    def tree_problem(self, body: Mapping[str, Any], where: str,
                     seq: int | None) -> Discrepancy | None:
        """Why a version-3 checkpoint's tree is not this ledger's, or None."""
        return tree_problem(body, self.roots, where, seq) if self.whole else None


def tree_problem(body: Mapping[str, Any], roots: Mapping[int, bytes], where: str,
                 seq: int | None) -> Discrepancy | None:
    """Why the tree a version-3 checkpoint ``body`` gives is not the ledger's (``roots``: the
    ledger's root at each size asked), or None; earlier versions carry no tree."""
    try:
        if int(body.get("version") or 0) < 3:
            return None
        size, root = int(body["tree_size"]), str(body["merkle_root"])
        checkpoint_seq = int(body["seq"])
    except (KeyError, TypeError, ValueError):
        return CheckpointRecordProblem(
            kind=DiscrepancyKind.CHECKPOINT_ROOT_MISMATCH, seq=seq,
            detail=f"{where} is a version-3 checkpoint without a readable tree")
    ours = roots.get(size)
    if size != checkpoint_seq or ours is None or ours.hex() != root:
        return CheckpointRecordProblem(
            kind=DiscrepancyKind.CHECKPOINT_ROOT_MISMATCH, seq=seq,
            detail=f"{where} gives the tree of {size} entries (checkpoint of entry "
                   f"{checkpoint_seq}) the root {root}; the ledger's is "
                   f"{ours.hex() if ours else 'none (it is shorter)'}")
    return None


def tree_sizes(bodies: Iterable[Mapping[str, Any]]) -> set[int]:
    """The tree sizes the version-3 checkpoints among ``bodies`` give."""
    sizes: set[int] = set()
    for body in bodies:
        try:
            if int(body.get("version") or 0) >= 3:
                sizes.add(int(body["tree_size"]))
        except (KeyError, TypeError, ValueError):
            pass
    return sizes


def signature_problem(signed: SignedCheckpoint, keys: KeyChain, station: str) -> str | None:
    """Why ``signed`` is not this station's signature by a key the ledger vouches for."""
    key = keys.keys.get(str(signed.body.get("key_id")))
    if key is None or key.station not in (None, station):
        return f"signed with key {signed.body.get('key_id')}, which the ledger does not vouch for"
    if key.public.hex != signed.public_key:
        return "carries another public key than the key it names"
    if not key.public.verify(signed.signature, signed.signed_bytes()):
        return "its signature does not verify"
    return None


def token_problem(station: Station, token: bytes, published: bytes, where: str) -> str | None:
    """Why ``token`` is not a trusted time-stamp of ``published`` (the checkpoint's bytes),
    or None. Checked against ``[timestamping] ca_file`` when there is one, else only its hash."""
    settings = station.settings.timestamping
    ca = station.settings.path(settings.ca_file) if settings.ca_file is not None else None
    from ..timestamping import check_stamp  # its client only where a token is checked

    try:
        check_stamp(token, hashlib.sha256(published).digest(), ca_file=ca,
                    policy=settings.policy, where=where)
    except TimestampError as exc:
        return exc.message
    return None


def verify_checkpoint_records(station: Station) -> list[Discrepancy]:
    """Check every ``checkpointed`` entry: the checkpoint it records is signed by a key the
    ledger vouches for, its head and Merkle root are the ledger's at its entry, the recorded
    hash is its bytes', and its token (if any) time-stamps those bytes (against ``ca_file``
    when one is configured)."""
    problems: list[Discrepancy] = []
    with station.catalog.read(snapshot=True) as tx:
        keys = station.custody.trusted_keys(tx)
        records: list[tuple[str, PublishedCheckpoint]] = []  # (the entry's station, record)
        for entry in tx.iter_entries(kinds=[EventKind.CHECKPOINTED]):
            try:
                records.append((entry.station, _published(entry)))
            except _UNREADABLE as exc:
                problems.append(CheckpointRecordProblem(
                    kind=DiscrepancyKind.CHECKPOINT_RECORD_INVALID, seq=entry.seq,
                    detail=f"checkpointed entry {entry.seq} cannot be read: {exc!r}"))
        tree = LedgerTree.of(tx, (r.body for _, r in records))
    for by, record in records:
        problems.extend(_record_problems(station, by, record, keys, tree))
    return problems


def _record_problems(station: Station, by: str, record: PublishedCheckpoint, keys: KeyChain,
                     tree: LedgerTree) -> list[Discrepancy]:
    where = f"the checkpoint recorded by entry {record.seq}"

    def invalid(why: str) -> Discrepancy:
        return CheckpointRecordProblem(kind=DiscrepancyKind.CHECKPOINT_RECORD_INVALID,
                                       seq=record.seq, detail=f"{where} {why}")

    try:
        seq = record.signed.seq
    except (KeyError, TypeError, ValueError):
        return [invalid("has no entry number")]
    why = signature_problem(record.signed, keys, by)
    if why is None and record.body.get("station") != by:
        why = f"is station {record.body.get('station')}'s, recorded by station {by}"
    if why is not None:
        return [invalid(why)]
    problems: list[Discrepancy] = []
    published = record.signed.to_bytes()
    if hashlib.sha256(published).hexdigest() != record.sha256:
        problems.append(invalid(f"does not hash to the recorded {record.sha256}"))
    if not 0 <= seq < record.seq:
        return [*problems, invalid(f"vouches for entry {seq}, not one before it")]
    if seq and tree.whole and tree.hashes.get(seq) != record.signed.head_hash:
        problems.append(invalid(f"gives entry {seq} the hash {record.signed.head_hash}, the "
                                f"ledger's is {tree.hashes.get(seq)}"))
    elif (found := tree.tree_problem(record.body, where, record.seq)) is not None:
        problems.append(found)  # its head is the ledger's, its tree is not
    if record.timestamp is not None and (
            why := _recorded_token_problem(station, record, record.timestamp, where)):
        problems.append(CheckpointRecordProblem(
            kind=DiscrepancyKind.TIMESTAMP_INVALID, seq=record.seq, detail=why))
    return problems


def _recorded_token_problem(station: Station, record: PublishedCheckpoint, stamp: Timestamp,
                            where: str) -> str | None:
    why = token_problem(station, stamp.token, record.signed.to_bytes(), f"the token of {where}")
    if why is None and stamp.sha256 != record.sha256:
        why = (f"the token of {where} is recorded for {stamp.sha256}, not its bytes' "
               f"{record.sha256}")
    return why if why is not None else _gen_time_problem(stamp, where)


def _gen_time_problem(stamp: Timestamp, where: str) -> str | None:
    from ..timestamping import check_stamp

    try:
        said = check_stamp(stamp.token, bytes.fromhex(stamp.sha256), ca_file=None).gen_time
    except (TimestampError, ValueError):
        return None  # the checks before say what is wrong with it
    if said != stamp.gen_time:
        return (f"the token of {where} was made at {format_time(said)}, not at the recorded "
                f"{format_time(stamp.gen_time)}")
    return None
