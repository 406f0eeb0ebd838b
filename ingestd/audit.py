"""Proving evidence genuine: verify a file or hash against the catalog, the store and the
ledger; audit the store by re-hashing items from disk and decoding a sample end to end."""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .catalog import queries as q
from .domain.canonical import canonical_bytes, format_time, sha256_hex
from .domain.flags import Flag
from .domain.models import EventKind, is_sha256
from .errors import ObjectDamaged, TargetError, UsageError
from .ingest import set_flag
from .integrity.hashing import hash_file
from .integrity.ledger import body_of
from .media import decode_check
from .station import Station
from .targets import Target

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Verdict:
    path: str | None
    sha256: str
    match: bool = False
    item: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "sha256": self.sha256, "match": self.match,
                "item": self.item, "problems": self.problems}


def describe_item(station: Station, sha: str) -> dict[str, Any] | None:
    with station.catalog.read() as conn:
        row = q.item(conn, sha)
        if row is None:
            return None
        current = q.current_label(conn, sha)
        flags = [f["flag"] for f in q.item_flags(conn, sha)]
    return {
        "sha256": sha, "size": row["size"], "recorder": row["recorder"],
        "officer": current["officer"] if current else row["officer"],
        "case": current["case_no"] if current else None,
        "party": current["party"] if current else None,
        "recorded_start": row["recorded_start"], "recorded_end": row["recorded_end"],
        "stored_at": row["stored_at"], "station": row["station"],
        "original_name": row["original_name"], "retention_class": row["retention_class"],
        "retain_until": row["retain_until"], "hold": bool(row["hold"]),
        "local": bool(row["local_present"]), "flags": flags,
    }


def _signature_problems(station: Station, sha: str) -> list[str]:
    problems = []
    with station.catalog.read(snapshot=True) as conn:
        keys = station.custody.trusted_keys(conn)  # proven by the chain, not the catalog
        entries = list(q.iter_entries(conn, item=sha))
    if not any(e.kind == EventKind.STORED for e in entries):
        problems.append("no signed 'stored' entry in the ledger")
    for entry in entries:
        body = canonical_bytes(body_of(entry))
        if sha256_hex(body) != entry.entry_hash:
            problems.append(f"ledger entry {entry.seq} ({entry.kind}) was altered")
            continue
        wrong = keys.signature_problem(entry, body)
        if wrong is not None:
            problems.append(f"ledger entry {entry.seq} ({entry.kind}) has no valid signature: "
                            f"{wrong[1]}")
    return problems


def verify_digest(station: Station, sha: str, *, path: str | None = None,
                  size: int | None = None) -> Verdict:
    verdict = Verdict(path=path, sha256=sha)
    verdict.item = describe_item(station, sha)
    if verdict.item is None:
        verdict.problems.append("not evidence held by this catalog (no item has this SHA-256)")
        return verdict
    if size is not None and size != verdict.item["size"]:
        verdict.problems.append(f"size {size} differs from the item's {verdict.item['size']}")
    if verdict.item["local"]:
        try:
            station.store.verify(sha, verdict.item["size"])
        except ObjectDamaged as exc:
            verdict.problems.append(f"the stored copy is damaged: {exc.message}")
    verdict.problems.extend(_signature_problems(station, sha))
    verdict.match = not verdict.problems
    return verdict


def verify_files(station: Station, paths: Sequence[Path]) -> list[Verdict]:
    out = []
    for path in paths:
        try:
            digest = hash_file(path, buffer_size=station.store.buffer_size)
        except OSError as exc:
            out.append(Verdict(path=str(path), sha256="",
                               problems=[f"cannot read {path}: {exc.strerror or exc}"]))
            continue
        out.append(verify_digest(station, digest.sha256, path=str(path), size=digest.size))
    return out


def verify_hash(station: Station, text: str) -> Verdict:
    sha = text.strip().lower()
    if not is_sha256(sha):
        raise UsageError(f"--hash needs a full SHA-256 (64 hex digits), not {text!r}")
    return verify_digest(station, sha)


@dataclass(kw_only=True)
class AuditReport:
    checked: int = 0
    decoded: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "decoded": self.decoded,
                "failures": self.failures}


def audit(station: Station, *, sample: int | None, decode: int = 0,
          targets: Sequence[Target] = (), actor: str = "ingestd",
          rng: random.Random | None = None) -> AuditReport:
    """Re-hash items (all, or a random sample) from the local store and, with ``targets``,
    read their off-site copies back in full; decode ``decode`` of them end to end.

    A local copy that no longer hashes to its name is flagged ``fixity_failed``; an off-site
    copy that does not is flagged ``replica_mismatch`` and queued to be copied again.
    """
    with station.catalog.read() as conn:
        rows = [dict(r) for r in q.search_items(conn) if r["local_present"] or targets]
        damaged = {sha for sha, flags in q.flags_by_item(conn).items()
                   if Flag.DAMAGED_MEDIA in flags or Flag.EMPTY_FILE in flags}
    picked = rows if sample is None else (rng or random.Random()).sample(
        rows, min(sample, len(rows)))
    playable = [r["sha256"] for r in picked if r["sha256"] not in damaged and r["local_present"]]
    to_decode = set(playable[:decode])
    report = AuditReport()
    for row in picked:
        report.checked += 1
        result, problems = _audit_one(station, row, decode=row["sha256"] in to_decode,
                                      targets=targets)
        report.decoded += "decode" in result
        report.failures.extend({"sha256": row["sha256"], "problem": p} for p, _ in problems)
        now = station.clock()
        with station.custody.transaction() as conn:
            station.custody.record(conn, kind=EventKind.AUDITED, actor=actor,
                                   item=row["sha256"], data=result, at=now)
            for problem, flag in problems:
                set_flag(station, conn, row["sha256"], flag, at=now, actor=actor,
                         detail=problem)
    return report


def _audit_one(station: Station, row: dict[str, Any], *, decode: bool,
               targets: Sequence[Target]) -> tuple[dict[str, Any], list[tuple[str, Flag]]]:
    sha = row["sha256"]
    result: dict[str, Any] = {}
    problems: list[tuple[str, Flag]] = []
    if row["local_present"]:
        try:
            station.store.verify(sha, row["size"])
            result["fixity"] = "ok"
        except ObjectDamaged as exc:
            result["fixity"] = exc.message
            problems.append((exc.message, Flag.FIXITY_FAILED))
    if decode and result.get("fixity") == "ok":
        decoded = decode_check(station.store.path_of(sha))
        result["decode"] = "ok" if decoded.ok else "; ".join(decoded.errors[-3:])
        if not decoded.ok:
            problems.append((f"does not play back: {result['decode']}", Flag.DAMAGED_MEDIA))
    if targets:
        with station.catalog.read() as conn:
            held = q.verified_targets(conn, sha)
        offsite: dict[str, str] = {}
        for target in targets:
            if target.name not in held:
                continue
            try:
                remote = target.rehash_item(sha)
                offsite[target.name] = "ok" if remote == sha else f"hashes to {remote}"
            except TargetError as exc:
                offsite[target.name] = exc.message
            if offsite[target.name] != "ok":
                problems.append((f"off-site copy on {target.name}: {offsite[target.name]}",
                                 Flag.REPLICA_MISMATCH))
                with station.catalog.write() as conn:  # copied again at the next replicate
                    q.upsert_replica(conn, sha, target.name, state="mismatch",
                                     last_error=offsite[target.name][:2000],
                                     updated_at=format_time(station.clock()))
        result["offsite"] = offsite
    return result, problems
