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
from .domain.canonical import canonical_bytes, sha256_hex
from .domain.flags import Flag
from .domain.models import EventKind, is_sha256
from .errors import ObjectDamaged, UsageError
from .ingest import set_flag
from .integrity.hashing import hash_file
from .integrity.ledger import body_of
from .media import decode_check
from .station import Station

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
    with station.catalog.read() as conn:
        trusted = station.custody.trusted_keys(conn)
        entries = list(q.iter_entries(conn, item=sha))
    if not any(e.kind == EventKind.STORED for e in entries):
        problems.append("no signed 'stored' entry in the ledger")
    for entry in entries:
        body = canonical_bytes(body_of(entry))
        key = trusted.get(entry.key_id)
        if sha256_hex(body) != entry.entry_hash:
            problems.append(f"ledger entry {entry.seq} ({entry.kind}) was altered")
        elif key is None or not key.verify(entry.signature, body):
            problems.append(f"ledger entry {entry.seq} ({entry.kind}) has no valid signature")
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


def audit(station: Station, *, sample: int | None, decode: int = 0, actor: str = "ingestd",
          rng: random.Random | None = None) -> AuditReport:
    """Re-hash items from disk (all, or a random sample) and decode ``decode`` of them."""
    with station.catalog.read() as conn:
        rows = [r for r in q.search_items(conn) if r["local_present"]]
    picked = rows if sample is None else (rng or random.Random()).sample(
        rows, min(sample, len(rows)))
    to_decode = {r["sha256"] for r in picked[:decode]}
    report = AuditReport()
    for row in picked:
        sha = row["sha256"]
        result: dict[str, Any] = {"fixity": "ok"}
        report.checked += 1
        try:
            station.store.verify(sha, row["size"])
        except ObjectDamaged as exc:
            result["fixity"] = exc.message
            report.failures.append({"sha256": sha, "problem": exc.message})
        if sha in to_decode and result["fixity"] == "ok":
            decoded = decode_check(station.store.path_of(sha))
            report.decoded += 1
            result["decode"] = "ok" if decoded.ok else "; ".join(decoded.errors[-3:])
        now = station.clock()
        with station.custody.transaction() as conn:
            station.custody.record(conn, kind=EventKind.AUDITED, actor=actor, item=sha,
                                   data=result, at=now)
            if result["fixity"] != "ok":
                set_flag(station, conn, sha, Flag.FIXITY_FAILED, at=now, actor=actor,
                         detail=result["fixity"])
    return report
