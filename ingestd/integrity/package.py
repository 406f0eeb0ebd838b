"""Verify a court package offline, as ``ingestd verify-export`` does: pure of the catalog.

The checks themselves are those of ``verify_package.py``, the one-file verifier every package
carries (standard library and ``openssl`` only), so the station and a court check the same
things. Here they run with this station's own Ed25519 code instead of ``openssl``, every
finding becomes a typed discrepancy (``DiscrepancyKind``), and the bag is also given to the
``bagit`` library's own validation, unless the package holds something hostile (a link, a
device or FIFO, a path that escapes, a file too large), which that library would follow or read
without bound.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bagit

from ..errors import IntegrityError
from .discrepancy import Discrepancy, DiscrepancyKind, PackageProblem, family_of
from .signing import PublicKey
from .verify_package import OpensslMissing, PackageCheck, StampCheck, openssl_stamp_check

log = logging.getLogger(__name__)

K = DiscrepancyKind


@dataclass(frozen=True, kw_only=True)
class PackageReport:
    """What ``verify-export`` found: every discrepancy, and how much was checked."""

    path: Path
    problems: list[Discrepancy] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=dict)
    bagit_validated: bool = False

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "package": str(self.path), "checked": self.checked,
                "bagit_validated": self.bagit_validated,
                "problems": [p.as_dict() for p in self.problems]}


def _ed25519(public: bytes, message: bytes, signature: bytes) -> bool:
    return PublicKey(key_id="", raw=public).verify(signature.hex(), message)


def _typed(kind: str, detail: str, path: str | None, seq: int | None) -> Discrepancy:
    k = DiscrepancyKind(kind)
    family = family_of(k)
    if family is PackageProblem:
        return PackageProblem(kind=k, seq=seq, path=path, detail=detail)
    return family(kind=k, seq=seq, detail=detail)


def _bagit_problems(root: Path) -> list[Discrepancy]:
    """The ``bagit`` library's own validation, its details as discrepancies."""
    try:
        bag = bagit.Bag(str(root))
        bag.validate(processes=1)
    except bagit.BagValidationError as exc:
        out: list[Discrepancy] = []
        for detail in exc.details or []:
            path = getattr(detail, "path", None)
            if isinstance(detail, bagit.ChecksumMismatch):
                kind = K.PAYLOAD_MISMATCH if str(path).startswith("data/") else (
                    K.TAG_FILE_MISMATCH)
            elif isinstance(detail, bagit.FileMissing):
                kind = K.PACKAGE_FILE_MISSING
            elif isinstance(detail, bagit.UnexpectedFile):
                kind = K.PACKAGE_FILE_UNEXPECTED
            else:
                kind = K.BAG_INVALID
            out.append(PackageProblem(kind=kind, path=str(path) if path else None,
                                      detail=f"bagit: {detail}"))
        if not out:
            out.append(PackageProblem(kind=K.BAG_INVALID, detail=f"bagit: {exc.message}"))
        return out
    except (bagit.BagError, OSError, UnicodeDecodeError, ValueError) as exc:
        return [PackageProblem(kind=K.BAG_INVALID, detail=f"bagit: {exc}")]
    return []


def verify_package(root: Path, *, fingerprint: str | None = None, ca_pem: bytes | None = None,
                   stamp_check: StampCheck | None = None) -> PackageReport:
    """Every check of the package at ``root``; nothing is written into it. Time-stamps are
    checked by ``ca_pem`` (the authority's CA certificates) or else by the CA the package
    carries, with ``stamp_check`` (default: ``openssl ts -verify``)."""
    check = PackageCheck(root, verify=_ed25519, fingerprint=fingerprint, ca_pem=ca_pem,
                         stamp_check=stamp_check or openssl_stamp_check)
    try:
        report = check.run()
    except OpensslMissing as exc:
        raise IntegrityError(f"cannot check {root}: {exc} (Debian package openssl)") from None
    problems = [_typed(f.kind, f.detail, f.path, f.seq) for f in report.findings]
    validated = False
    if not check.hostile and check.files is not None:
        validated = True
        seen = {(p.kind, getattr(p, "path", None)) for p in problems}
        for extra in _bagit_problems(root):
            # the same finding once: what bagit adds is what the checks above did not see
            if (extra.kind, getattr(extra, "path", None)) not in seen:
                problems.append(extra)
    return PackageReport(path=root, problems=problems, checked=dict(report.checked),
                         bagit_validated=validated)
