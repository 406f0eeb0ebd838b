"""Export items as a court package: a BagIt bag (RFC 8493) anyone can check without ingestd.

The payload is each item's original bytes under a readable name; beside it, as tag files: each
item's signed manifest, every ledger entry about the items (with each signed body's canonical
bytes and raw signature as files), the keys that signed them as PEM with the entries that prove
them, a checkpoint signed after the export's own ``exported`` entry, an RFC 9162 inclusion
proof of every entry against it, and, when the station published a checkpoint off-site before,
that checkpoint and the consistency proof from it. ``VERIFY.txt`` says how to check it all with
standard tools; ``verify_package.py`` does it with Python's standard library and ``openssl``.

The package is built in a hidden sibling folder and renamed into place at the end: a failed
export leaves nothing behind. Items are streamed, never held in memory; one the local store no
longer holds is read back from a target that holds a verified copy, and hashed on the way.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import bagit

from ..domain import text
from ..domain.canonical import canonical_bytes, format_time, parse_time
from ..domain.models import EventKind, LedgerEntry, body_of
from ..domain.names import item_file_name, unique_names
from ..domain.records import Item, ItemFilter
from ..errors import (
    IngestdError,
    NotFound,
    ObjectDamaged,
    ReplicaMismatch,
    TargetError,
    TargetUnreachable,
    TimestampError,
    UsageError,
)
from ..integrity import merkle
from ..integrity import verify_package as layout
from ..integrity.hashing import fsync_dir
from ..integrity.ledger import KEY_KINDS, to_json
from ..integrity.signing import PublicKey
from ..station import Station
from ..targets import Sink, Target
from ..targets.factory import build_targets
from .checkpoints import (
    SignedCheckpoint,
    ledger_leaves,
    published_checkpoints,
    sign_checkpoint,
    timestamp_checkpoint,
)
from .replicate import Replicator

log = logging.getLogger(__name__)

#: Why a package is made (the ``--purpose`` choices).
PURPOSES = ("court", "copy-request", "review", "archive")

#: (what is being done, bytes done, bytes in all)
Progress = Callable[[str, int, int], None]

_CHUNK = 1 << 20


@dataclass(frozen=True, kw_only=True)
class ExportedItem:
    sha256: str
    size: int
    file: str  # its path in the package (data/...)
    source: str  # "local", or the target it was read back from

    def as_dict(self) -> dict[str, Any]:
        return {"sha256": self.sha256, "size": self.size, "file": self.file,
                "source": self.source}


@dataclass(frozen=True, kw_only=True)
class ExportResult:
    package_id: str
    path: Path
    items: list[ExportedItem]
    entry_seq: int  # the ``exported`` entry
    checkpoint_seq: int
    entries: int  # ledger entries carried
    published_seq: int | None  # the off-site checkpoint it is proven consistent with
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return sum(i.size for i in self.items)

    def as_dict(self) -> dict[str, Any]:
        return {"package_id": self.package_id, "path": str(self.path),
                "items": [i.as_dict() for i in self.items], "bytes": self.size,
                "exported_entry": self.entry_seq, "checkpoint_seq": self.checkpoint_seq,
                "entries": self.entries, "published_checkpoint_seq": self.published_seq,
                "notes": self.notes}


def case_items(station: Station, case: str) -> list[str]:
    """The items whose current label names ``case``, in recorded order."""
    with station.catalog.read() as tx:
        found = [listed.item.sha256 for listed in tx.search_items(ItemFilter(case=case))]
    if not found:
        raise NotFound(f"no item is labelled with case {case!r}")
    return found


def _check_text(option: str, value: str | None, limit: int, *, required: bool) -> str | None:
    if value is None or (not required and not value.strip()):
        if required:
            raise UsageError(f"{option} is required: an export must name who approved it "
                             "and why")
        return None
    problem = text.text_problem(option, value, limit=limit)
    if problem:
        raise UsageError(problem)
    return value.strip()


def _check_out(out: Path) -> None:
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise UsageError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        raise UsageError(f"--out {out} is not empty: a package is written only into a new or "
                         "empty folder")
    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: its parent folder does not exist")
    if out.is_dir() and out.stat().st_dev != out.parent.stat().st_dev:
        # the package is made beside --out and renamed into place: not across file systems
        raise UsageError(f"--out {out} is a mounted file system of its own: give a new folder "
                         f"in it (for example {out / 'package'})")


def export_items(
    station: Station,
    *,
    items: Sequence[str],
    out: Path,
    approved_by: str,
    reason: str,
    requested_by: str | None = None,
    purpose: str = "court",
    case: str | None = None,
    actor: str = "ingestd",
    progress: Progress | None = None,
    targets: list[Target] | None = None,
) -> ExportResult:
    """Write the package of ``items`` (full SHA-256s) to ``out``, which must not exist or be
    empty. The export is an ``exported`` entry, signed before the package's checkpoint so the
    package proves its own export. Callable from a job: it prints nothing, and ``progress``
    (if given) hears of every megabyte."""
    approved = _check_text("--approved-by", approved_by, text.ACTOR_MAX, required=True)
    why = _check_text("--reason", reason, text.REASON_MAX, required=True)
    requester = _check_text("--requested-by", requested_by, text.ACTOR_MAX, required=False)
    if purpose not in PURPOSES:
        raise UsageError(f"--purpose must be one of {', '.join(PURPOSES)}")
    shas = list(dict.fromkeys(items))
    if not shas:
        raise UsageError("nothing to export: give --case or items")
    out = out.absolute()
    _check_out(out)
    station.custody.check_signing_key()
    records = _items(station, shas)
    _check_room(out.parent, sum(r.item.size for r in records))
    work = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:12]}"
    work.mkdir(mode=0o700)
    recorded: list[int] = []  # the export entry, once it is
    try:
        result = _build(station, work, records, out=out, approved_by=approved or "",
                        reason=why or "", requested_by=requester, purpose=purpose, case=case,
                        actor=actor, progress=progress, targets=targets, recorded=recorded)
        try:
            if out.is_dir():
                out.rmdir()  # empty, as checked: the finished package takes its place
            os.rename(work, out)
            fsync_dir(out.parent)
        except OSError as exc:
            raise IngestdError(f"--out {out}: cannot put the package in place: "
                             f"{exc.strerror or exc}") from exc
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, IngestdError):
            raise _unfinished(exc, out, recorded) from exc
        raise
    log.info("exported %d items as package %s to %s", len(records), result.package_id, out,
             extra={"event": "exported"})
    return result


def _unfinished(exc: IngestdError, out: Path, recorded: list[int]) -> IngestdError:
    """The same error, saying that no package was left (and, if the export entry was
    already signed, which one records an export that did not finish)."""
    said = f"{exc.message} (no package was written: nothing is left at {out}"
    said += (f"; the export had been recorded as entry {recorded[0]}, which names no package "
             "that exists)" if recorded else ")")
    try:
        return type(exc)(said)
    except TypeError:
        return IngestdError(said)


def _check_room(folder: Path, size: int) -> None:
    """Refuse before anything is written when the package cannot fit (its payload, plus room
    for the ledger files)."""
    free = shutil.disk_usage(folder).free
    needed = size + (64 << 20)
    if free < needed:
        raise UsageError(f"--out: {folder} has {free} bytes free, the package needs about "
                         f"{needed}")


@dataclass(frozen=True, kw_only=True)
class _Record:
    item: Item
    case: str | None
    party: str | None
    officer: str


def _items(station: Station, shas: Sequence[str]) -> list[_Record]:
    out = []
    with station.catalog.read() as tx:
        for sha in shas:
            item = tx.item(sha)
            if item is None:
                raise NotFound(f"no item {sha}")
            label = tx.current_label(sha)
            out.append(_Record(item=item, case=label.case if label else None,
                               party=label.party if label else None,
                               officer=(label.officer if label and label.officer
                                        else item.officer)))
    return out


def _build(station: Station, work: Path, records: list[_Record], *, out: Path,
           approved_by: str, reason: str, requested_by: str | None, purpose: str,
           case: str | None, actor: str, progress: Progress | None,
           targets: list[Target] | None, recorded: list[int]) -> ExportResult:
    package_id = str(uuid.uuid4())
    names = unique_names(item_file_name(officer=r.officer, recorded=r.item.recorded_start,
                                        original=r.item.original_name) for r in records)
    total = sum(r.item.size for r in records)
    done = 0
    exported: list[ExportedItem] = []
    notes: list[str] = []
    fetcher = _Fetcher(station, targets)
    # 1. the payload, hashed on the way in: a damaged copy never enters a package
    for record, name in zip(records, names, strict=True):
        def step(n: int, name: str = name) -> None:
            nonlocal done
            done += n
            if progress is not None:
                progress(name, done, total)
        source = _copy_item(station, record.item, work / name, step, fetcher, notes)
        exported.append(ExportedItem(sha256=record.item.sha256, size=record.item.size,
                                     file=f"data/{name}", source=source))
    # 2. the bag, with both payload manifests (bagit reads the payload once more)
    if progress is not None:
        progress("manifests", done, total)
    now = station.clock()
    info = _bag_info(station, records, package_id=package_id, approved_by=approved_by,
                     reason=reason, requested_by=requested_by, purpose=purpose, case=case,
                     at=now)
    bag = bagit.make_bag(str(work), info, checksums=list(layout.ALGORITHMS))
    # 3. the export entry, then a checkpoint that covers it
    shas = [r.item.sha256 for r in records]
    data: dict[str, Any] = {"package": package_id, "items": shas, "approved_by": approved_by,
                            "requested_by": requested_by, "purpose": purpose,
                            "reason": reason, "case": case, "bytes": total}
    with station.custody.transaction() as tx:
        entry = station.custody.record(tx, kind=EventKind.EXPORTED, actor=actor, data=data)
    recorded.append(entry.seq)
    signed = sign_checkpoint(station)
    try:
        stamp = timestamp_checkpoint(station, signed)
    except TimestampError as exc:
        stamp = None
        notes.append(f"the package's checkpoint has no time-stamp: {exc.message}")
    # 4. the tag files
    carried = _write_ledger(station, work, shas, signed, notes)
    if stamp is not None:
        _write(work / (layout.CHECKPOINT + layout.TOKEN_SUFFIX), stamp.token)
    stamped = [stem for stem in (layout.CHECKPOINT, layout.PUBLISHED)
               if (work / (stem + layout.TOKEN_SUFFIX)).is_file()]
    ca_file = station.settings.timestamping.ca_file
    if stamped and ca_file is not None:
        _write(work / layout.TSA_CA, station.settings.path(ca_file).read_bytes())
    manifests = Replicator(station, targets=[])
    for sha in shas:
        _write_signed(work / layout.manifest_path(sha, ""), manifests.manifest(sha),
                      "manifest")
    package = {"format": layout.PACKAGE_FORMAT, "version": layout.PACKAGE_VERSION,
               "package_id": package_id, "station": station.name, "created_at":
               format_time(now), "case": case, "export_entry": entry.seq,
               "checkpoint": layout.CHECKPOINT + ".json",
               "published_checkpoint": layout.PUBLISHED + ".json" if carried.published
               else None,
               "items": [{**e.as_dict(), "manifest": layout.manifest_path(e.sha256),
                          "officer": r.officer, "case": r.case, "party": r.party,
                          "recorded_start": format_time(r.item.recorded_start),
                          "original_name": r.item.original_name}
                         for e, r in zip(exported, records, strict=True)]}
    _write(work / layout.PACKAGE_JSON, json.dumps(package, ensure_ascii=False, indent=2,
                                                  sort_keys=True).encode("utf-8") + b"\n")
    _write(work / "verify_package.py", _verifier_source())
    _write(work / "VERIFY.txt", verify_text(
        checkpoint_key=str(signed.body["key_id"]), entry=entry, items=shas,
        manifest_keys={sha: station.key.key_id for sha in shas}, first_key=carried.first_key,
        fingerprint=station.custody.pin, stamped=stamped,
        ca_carried=(work / layout.TSA_CA).is_file()).encode("utf-8"))
    custody_report(work, package=package, records=records, station=station, export=data,
                   signed=signed)
    bag.info["Export-Entry"] = str(entry.seq)
    bag.save()
    # the station vouches for every file beside the payload: it signs the tag manifest
    _write(work / layout.TAG_SIGNATURE, bytes.fromhex(
        station.key.sign((work / layout.TAG_MANIFEST).read_bytes())))
    _fsync_tree(work)
    return ExportResult(package_id=package_id, path=out, items=exported, entry_seq=entry.seq,
                        checkpoint_seq=signed.seq, entries=carried.entries,
                        published_seq=carried.published, notes=notes)


#: Where the custody report goes in a package (tag files, so the tag manifests cover it).
REPORT_DIR = "report"


def custody_report(work: Path, *, package: dict[str, Any], records: Sequence[_Record],
                   station: Station, export: dict[str, Any],
                   signed: SignedCheckpoint) -> list[Path]:
    """The custody report of the package (HTML and PDF under ``REPORT_DIR``), written before
    the tag manifests so that they cover it: each item's custody timeline, read from the
    ledger with every signature checked, times in the station's zone."""
    from ..report.custody import PackageInfo, write_custody_report  # WeasyPrint: only here
    from .timeline import item_timelines

    tz = station.settings.station_tz
    cases = sorted({r.case for r in records if r.case})
    info = PackageInfo(
        package_id=str(package["package_id"]), created_at=parse_time(package["created_at"]),
        station=station.name, case=str(package["case"] or ", ".join(cases)),
        party=", ".join(sorted({r.party for r in records if r.party})),
        officers=tuple(sorted({r.officer for r in records if r.officer})),
        approver=str(export["approved_by"]), requester=str(export["requested_by"] or ""),
        purpose=str(export["purpose"]), reason=str(export["reason"]),
        checkpoint_seq=signed.seq, checkpoint_head=signed.head_hash,
        merkle_root=str(signed.body.get("merkle_root") or "") or None)
    folder = work / REPORT_DIR
    folder.mkdir(exist_ok=True)
    html, pdf = write_custody_report(
        folder, package=info, items=item_timelines(station, [r.item.sha256 for r in records],
                                                   tz=tz), tz=tz)
    return [html, pdf]


def _bag_info(station: Station, records: list[_Record], *, package_id: str, approved_by: str,
              reason: str, requested_by: str | None, purpose: str, case: str | None,
              at: datetime) -> dict[str, Any]:
    def distinct(values: Iterable[str | None]) -> list[str]:
        return sorted({v for v in values if v})

    info: dict[str, Any] = {
        "Package-Id": package_id,
        "Source-Organization": station.name,
        "Station": station.name,
        "Case": case or distinct(r.case for r in records) or "(none)",
        "Party": distinct(r.party for r in records) or "(none)",
        "Officer": distinct(r.officer for r in records),
        "Approved-By": approved_by,
        "Purpose": purpose,
        "Reason": reason,
        "Exported-At": format_time(at),
        "Bagging-Date": at.strftime("%Y-%m-%d"),
        "Bag-Software-Agent": f"ingestd {_version()}",
        "External-Description": "Evidence exported by ingestd with its custody ledger; "
                                "see VERIFY.txt / 证据导出包，核验方法见 VERIFY.txt",
    }
    if requested_by:
        info["Requested-By"] = requested_by
    if station.custody.pin:
        info["Station-Key-Fingerprint"] = station.custody.pin
    return info


def _version() -> str:
    try:
        return importlib.metadata.version("ingestd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


# -- the payload -------------------------------------------------------------------------------


class _Fetcher:
    """Reads an item back from the targets that hold a verified copy of it."""

    def __init__(self, station: Station, targets: list[Target] | None) -> None:
        self.station = station
        self._targets = targets

    @property
    def targets(self) -> list[Target]:
        if self._targets is None:
            self._targets = build_targets(self.station.settings)
        return self._targets

    def fetch(self, item: Item, sink: Sink, notes: list[str]) -> str:
        sha = item.sha256
        with self.station.catalog.read() as tx:
            holding = tx.verified_targets(sha)
        errors: list[str] = []
        damaged = False
        for target in self.targets:
            if target.name not in holding:
                continue
            try:
                got = target.read_item(sha, sink)
            except TargetError as exc:
                errors.append(exc.message)
                continue
            size = sink.tell()
            if got == sha and size == item.size:
                return target.name
            damaged = True
            errors.append(f"target {target.name}: its copy of {sha} is damaged ({size} bytes "
                          f"hashing to {got}): refused")
            notes.append(errors[-1])
            sink.seek(0)
            sink.truncate()
        if damaged:
            raise ReplicaMismatch("cannot export: " + "; ".join(errors))
        if errors:
            raise TargetUnreachable(f"cannot export {sha}: it is not in the local store and "
                                    "no target could give it back: " + "; ".join(errors))
        raise NotFound(f"cannot export {sha}: it is not in the local store and no target "
                       "holds a verified copy")


def _copy_item(station: Station, item: Item, dest: Path, step: Callable[[int], None],
               fetcher: _Fetcher, notes: list[str]) -> str:
    sha = item.sha256
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    with os.fdopen(fd, "wb") as sink:
        if station.store.has(sha):
            digest = hashlib.sha256()
            size = 0
            with station.store.path_of(sha).open("rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    sink.write(chunk)
                    size += len(chunk)
                    step(len(chunk))
            if digest.hexdigest() != sha or size != item.size:
                raise ObjectDamaged(f"cannot export: the local copy of {sha} is damaged "
                                    f"({size} bytes hashing to {digest.hexdigest()}); run "
                                    "`ingestd verify`")
            source = "local"
        else:
            counting = _Counting(sink, step)
            source = fetcher.fetch(item, counting, notes)
        sink.flush()
        os.fsync(sink.fileno())
    return source


class _Counting:
    """A file that tells ``step`` of every write (what a target writes back, counted)."""

    def __init__(self, sink: Sink, step: Callable[[int], None]) -> None:
        self._sink = sink
        self._step = step

    def write(self, data: bytes) -> int:
        self._step(len(data))
        return self._sink.write(data)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._sink.seek(offset, whence)

    def tell(self) -> int:
        return self._sink.tell()

    def truncate(self, size: int | None = None) -> int:
        return self._sink.truncate(size)


# -- the tag files -----------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_signed(stem: Path, document: bytes, body_key: str) -> None:
    """A signed document, and beside it its body's canonical bytes and its raw signature:
    what ``openssl pkeyutl -verify -rawin`` checks."""
    doc = json.loads(document)
    _write(stem.with_name(stem.name + ".json"), document)
    _write(stem.with_name(stem.name + ".body.json"), canonical_bytes(doc[body_key]))
    _write(stem.with_name(stem.name + ".sig"), bytes.fromhex(doc["signature"]))


@dataclass(frozen=True, kw_only=True)
class _Carried:
    """What the ledger part of a package holds."""

    entries: int
    published: int | None  # the size of the published checkpoint carried, if one is
    first_key: str | None  # the key id of the station's genesis key


def _write_ledger(station: Station, work: Path, shas: Sequence[str], signed: SignedCheckpoint,
                  notes: list[str]) -> _Carried:
    """The entries about ``shas`` and every key entry, each body and signature as files,
    their inclusion proofs, the keys, the checkpoint, and the published one before it with
    its consistency proof. Returns how many entries, and the published checkpoint's size."""
    upto = signed.seq
    wanted = set(shas)
    chosen: dict[int, LedgerEntry] = {}
    with station.catalog.read(snapshot=True) as tx:
        recorded = [p for p in published_checkpoints(tx, upto, station=station.name)
                    if int(p.body.get("version", 0)) >= 3 and "merkle_root" in p.body
                    and p.signed.seq <= upto]
        newest = recorded[-1] if recorded else None
        if newest is not None:  # the entry that records its publication, and its token
            chosen.update((e.seq, e) for e in tx.iter_entries(after=newest.seq - 1, batch=1,
                                                              upto=newest.seq))
        for sha in shas:
            for e in tx.iter_entries(item=sha, upto=upto):
                chosen[e.seq] = e
        for e in tx.iter_entries(kinds=KEY_KINDS, upto=upto):
            chosen[e.seq] = e
        for e in tx.export_entries(wanted, upto=upto):
            chosen[e.seq] = e
        leaves = list(ledger_leaves(tx, upto))
    size, root = merkle.root(leaves)
    if size != signed.body["tree_size"] or root.hex() != signed.body["merkle_root"]:
        raise IngestdError("the ledger changed under the export: its tree is not the one the "
                           "checkpoint signs; run `ingestd ledger verify`")
    proofs = merkle.inclusion_proofs(leaves, [seq - 1 for seq in chosen])
    keys, first = _write_entries(work, chosen, station.name)
    _write(work / layout.PROOFS, json.dumps(
        {"tree_size": size, "merkle_root": root.hex(),
         "proofs": {str(i + 1): [h.hex() for h in path] for i, path in sorted(proofs.items())}},
        indent=1, sort_keys=True).encode("utf-8"))
    for key_id, raw_key in sorted(keys.items()):
        _write(work / layout.key_path(key_id), layout.public_pem(raw_key))
    _write_signed(work / layout.CHECKPOINT, signed.to_bytes(), "checkpoint")
    published: dict[str, Any] | None
    if newest is not None:
        published = json.loads(newest.signed.to_bytes())
        if newest.token is not None:
            _write(work / (layout.PUBLISHED + layout.TOKEN_SUFFIX), newest.token)
    else:
        published = _published_checkpoint(station, upto, notes)
    if published is not None:
        old = int(published["checkpoint"]["tree_size"])
        proof = merkle.consistency_proof(leaves, old) if old < size else []
        _write_signed(work / layout.PUBLISHED, canonical_bytes(published), "checkpoint")
        _write(work / layout.CONSISTENCY, json.dumps(
            {"old_size": old, "new_size": size, "proof": [h.hex() for h in proof]},
            indent=1).encode("utf-8"))
        return _Carried(entries=len(chosen), published=old, first_key=first)
    return _Carried(entries=len(chosen), published=None, first_key=first)


def _write_entries(work: Path, chosen: dict[int, LedgerEntry],
                   station: str) -> tuple[dict[str, bytes], str | None]:
    """The entries, one a line, and each one's canonical body and raw signature as files.
    Returns the keys their key entries bring in, and the id of ``station``'s first one."""
    lines = []
    keys: dict[str, bytes] = {}
    first: str | None = None
    for seq in sorted(chosen):
        e = chosen[seq]
        lines.append(json.dumps(to_json(e), ensure_ascii=False, sort_keys=True))
        _write(work / layout.entry_body_path(seq), canonical_bytes(body_of(e)))
        _write(work / layout.entry_signature_path(seq), bytes.fromhex(e.signature))
        if e.kind == EventKind.GENESIS:
            raw = PublicKey.from_hex(str(e.data["public_key"]))
            keys[raw.key_id] = raw.raw
            if e.station == station:
                first = raw.key_id
        elif e.kind == EventKind.KEY_ROTATED:
            raw = PublicKey.from_hex(str(e.data["new_public_key"]))
            keys[raw.key_id] = raw.raw
    _write(work / layout.ENTRIES, ("\n".join(lines) + "\n").encode("utf-8"))
    return keys, first


def _published_checkpoint(station: Station, upto: int,
                          notes: list[str]) -> dict[str, Any] | None:
    """The newest checkpoint (version 3, with its tree) this station sent off-site at or
    before entry ``upto``, as the target holds it; None when there is none or no target can
    give it back now (said in ``notes``)."""
    names = [t.name for t in station.settings.targets]
    with station.catalog.read() as tx:
        sent = [c for c in (tx.last_checkpoint(n, station=station.name) for n in names)
                if c is not None and c.seq <= upto]
    if not sent:
        return None
    try:
        targets = build_targets(station.settings)
    except IngestdError as exc:
        notes.append(f"the targets cannot be used ({exc.message}): no consistency proof with "
                     "the checkpoint published before")
        return None
    for target in targets:
        for cp in sorted((c for c in sent if c.target == target.name), key=lambda c: -c.seq):
            try:
                doc = json.loads(target.get_checkpoint(cp.name))
                body = doc["checkpoint"]
                if int(body.get("version", 0)) < 3 or "merkle_root" not in body:
                    notes.append(f"the checkpoint {cp.name} published on {target.name} "
                                 "predates Merkle trees: no consistency proof")
                    continue
                return {"checkpoint": body, "signature": doc["signature"],
                        "public_key": doc.get("public_key")}
            except (TargetError, ValueError, KeyError, TypeError) as exc:
                notes.append(f"the checkpoint {cp.name} published on {target.name} could not "
                             f"be read back ({exc}): no consistency proof")
    return None


def _verifier_source() -> bytes:
    return (importlib.resources.files("ingestd.integrity") / "verify_package.py").read_bytes()


def _fsync_tree(root: Path) -> None:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


# -- VERIFY.txt --------------------------------------------------------------------------------

#: A command in VERIFY.txt is a line that starts with this (a test runs every one of them).
COMMAND_PREFIX = "    $ "


def _pkeyutl(key_id: str, body: str, sig: str) -> str:
    return (f"openssl pkeyutl -verify -pubin -inkey {layout.key_path(key_id)} -rawin "
            f"-in {body} -sigfile {sig}")


def verify_text(*, checkpoint_key: str, entry: LedgerEntry, items: Sequence[str],
                manifest_keys: dict[str, str], first_key: str | None,
                fingerprint: str | None, stamped: Sequence[str] = (),
                ca_carried: bool = False) -> str:
    """VERIFY.txt: how a clerk checks the package with standard tools, in Chinese and
    English. Every line that starts with ``COMMAND_PREFIX`` is a command to run from the
    package's folder."""
    p = COMMAND_PREFIX
    seq = entry.seq
    manifest_lines = [p + _pkeyutl(manifest_keys[sha], layout.manifest_path(sha, ".body.json"),
                                   layout.manifest_path(sha, ".sig")) for sha in items]
    anchor = [
        "0. 工作站密钥 / The station's key. 下面命令输出工作站首个公钥的指纹，应与工作站",
        "   管理方书面提供的指纹一致（bag-info.txt 的 Station-Key-Fingerprint 也写明了它，",
        "   但只有管理方提供的指纹才能证明密钥是真的）。",
        "   This prints the fingerprint of the station's first key. It must equal the",
        "   fingerprint the station's owner gives you in writing (bag-info.txt says it too, as",
        "   Station-Key-Fingerprint, but only the owner's copy proves the key is theirs):",
        p + f"openssl pkey -pubin -in {layout.key_path(first_key)} -outform DER "
            "| tail -c 32 | sha256sum",
        *([f"   应为 / expected: {fingerprint}"] if fingerprint else []),
        "",
    ] if first_key else []
    return "\n".join([
        "如何核验本证据包 / How to check this evidence package",
        "=" * 60,
        "",
        "在本文件所在的文件夹中打开终端，依次运行下列命令。每条命令都应报告 OK 或",
        "\"Signature Verified Successfully\"；任何其他结果都表示证据包已被改动。",
        "Open a terminal in the folder holding this file and run each command below. Each must",
        "answer OK or \"Signature Verified Successfully\"; anything else means the package was",
        "changed after it was made.",
        "",
        *anchor,
        "1. 证据文件完整 / The evidence files are intact (SHA-256 and SHA-512 of every file",
        "   under data/):",
        p + "sha256sum -c manifest-sha256.txt",
        p + "sha512sum -c manifest-sha512.txt",
        "",
        "2. 其余文件完整，且由工作站签名 / The other files (ledger, keys, proofs, report) are",
        "   intact, and their list is signed by the station:",
        p + "sha256sum -c tagmanifest-sha256.txt",
        p + _pkeyutl(checkpoint_key, layout.TAG_MANIFEST, layout.TAG_SIGNATURE),
        "",
        "3. 台账检查点由工作站签名 / The ledger checkpoint is signed by the station:",
        p + _pkeyutl(checkpoint_key, layout.CHECKPOINT + ".body.json",
                     layout.CHECKPOINT + ".sig"),
        "",
        f"4. 本次导出已记入台账（第 {seq} 条）/ This export is recorded in the ledger "
        f"(entry {seq}):",
        p + _pkeyutl(entry.key_id, layout.entry_body_path(seq),
                     layout.entry_signature_path(seq)),
        "",
        "   任何一条台账记录 N 都可以同样核验：签名文件 ledger/signatures/N.sig，",
        "   内容文件 ledger/bodies/N.json（N 为十二位序号），公钥为 keys/ 下与该记录",
        "   key_id 同名的 .pem 文件；sha256sum ledger/bodies/N.json 应等于该记录的",
        "   entry_hash（见 ledger/entries.jsonl）。",
        "   Any ledger entry N is checked the same way: ledger/bodies/N.json (N in twelve",
        "   digits) with ledger/signatures/N.sig and the key keys/<its key_id>.pem; and",
        "   `sha256sum ledger/bodies/N.json` must equal its entry_hash in",
        "   ledger/entries.jsonl.",
        "",
        "5. 每个证据文件的签名清单 / Each item's signed manifest:",
        *manifest_lines,
        "",
        *_stamp_lines(stamped, ca_carried),
        "",
        "7. 全部检查（台账记录属于台账的证明、密钥链、一致性证明）/ Every check at once,",
        "   including the proofs that each entry is in the signed ledger (RFC 9162) and the",
        "   chain of keys (needs only Python 3 and openssl):",
        p + "python3 verify_package.py .",
        "",
        "   若已从工作站管理方获得首个公钥的指纹，请加上 --fingerprint 指纹 再运行一次：",
        "   只有这样，才能排除整个证据包被换用另一把密钥重新签名。",
        "   With the fingerprint the station's owner gave you, run it again with",
        "   --fingerprint <that fingerprint>: only that rules out a package signed again, end",
        "   to end, with another key.",
        "",
        f"工作站当前公钥 / The station's key: {layout.key_path(checkpoint_key)}",
        "格式说明 / Formats: docs/LEDGER.md in ingestd's sources.",
        "",
    ])


def _stamp_lines(stamped: Sequence[str], ca_carried: bool) -> list[str]:
    p = COMMAND_PREFIX
    if not stamped or not ca_carried:
        return ["6. 时间戳 / Time-stamps: this package carries no RFC 3161 time-stamp token "
                "that can be checked;", "   本证据包不含可核验的 RFC 3161 时间戳。"]
    return [
        "6. 时间戳 / Time-stamps (RFC 3161). 时间戳机构证明检查点在其所示时间已经存在。",
        "   A time-stamping authority vouches that the checkpoint existed at the time it says.",
        "   下面用证据包所带的机构证书核验；更可靠的是用从时间戳机构直接取得的证书替换",
        f"   {layout.TSA_CA}。 The commands use the authority's CA certificates the station",
        "   trusts, carried in the package; better still, use the ones you get from the",
        f"   authority itself in place of {layout.TSA_CA}:",
        *(p + f"openssl ts -verify -data {stem}.json -in {stem}{layout.TOKEN_SUFFIX} "
              f"-CAfile {layout.TSA_CA}" for stem in stamped),
        f"   openssl ts -reply -in {stamped[0]}{layout.TOKEN_SUFFIX} -text  "
        "# shows the time / 显示时间",
    ]


def verify_commands(verify_txt: str) -> list[str]:
    """The commands VERIFY.txt gives, in order."""
    return [line[len(COMMAND_PREFIX):] for line in verify_txt.splitlines()
            if line.startswith(COMMAND_PREFIX)]
