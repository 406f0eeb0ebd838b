"""The WORM check (R5): a target that promises Object Lock must show it holds.

For every target with ``object_lock = true`` a check writes (once, then reuses) a small canary
object under COMPLIANCE retention a few days ahead (renewed as it nears its date), tries to
delete its locked version and to shorten its retention, and reads back the lock of a sample
of real copies against what their replica rows recorded. Each attempt that succeeds where it
must fail is a failure (``policy.worm_passed``). Each run is a signed ``worm_checked`` entry
(target, passed, every attempt and what happened), and the target's standing row names it.

A target that fails is logged at CRITICAL and shown by ``status``; until it passes again its
copies count for nothing (``policy.safe_copies``): the retention sweep evicts nothing, and no
recorder file is wiped, that only a copy there would keep safe. A server that cannot be asked
leaves the standing as it was: the check says nothing of the copies then.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..config import S3TargetSettings, Settings
from ..domain.models import EventKind
from ..domain.policy import WormAttempt, worm_passed
from ..errors import TargetError
from ..station import Station
from ..targets import Lock, LockSample, WormTarget
from ..targets.factory import build_target

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WormCheck:
    """One target's check. ``passed`` None: the server could not be asked (``error``)."""

    target: str
    location: str
    passed: bool | None
    attempts: tuple[WormAttempt, ...] = ()
    error: str | None = None
    ledger_seq: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"target": self.target, "location": self.location, "passed": self.passed,
                "attempts": [_attempt(a) for a in self.attempts], "error": self.error,
                "ledger_seq": self.ledger_seq}


@dataclass(kw_only=True)
class WormReport:
    checks: list[WormCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.passed is True for c in self.checks)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "targets": [c.to_json() for c in self.checks]}

    def summary(self) -> str:
        if not self.checks:
            return "no target promises Object Lock"
        words = {True: "passed", False: "FAILED", None: "not reached"}
        return ", ".join(f"{c.target} {words[c.passed]}" for c in self.checks)


def _attempt(attempt: WormAttempt) -> dict[str, Any]:
    out: dict[str, Any] = {"probe": str(attempt.probe), "held": attempt.held,
                           "detail": attempt.detail}
    if attempt.item is not None:
        out["item"] = attempt.item
    return out


def worm_targets(station: Station) -> list[WormTarget]:
    """The configured targets that promise WORM (``object_lock = true``)."""
    from ..targets.s3 import S3Target

    out: list[WormTarget] = []
    for spec in station.settings.targets:
        if isinstance(spec, S3TargetSettings) and spec.object_lock:
            target = build_target(spec, station.settings)
            assert isinstance(target, S3Target)
            out.append(target)
    return out


def promises_worm(settings: Settings) -> bool:
    """Whether any configured target has ``object_lock = true``."""
    return any(isinstance(spec, S3TargetSettings) and spec.object_lock
               for spec in settings.targets)


def check_worm(station: Station, targets: Sequence[WormTarget] | None = None, *,
               sample: int | None = None, actor: str = "ingestd") -> WormReport:
    """Check every WORM target (see the module's docstring), reading back the locks of
    ``sample`` real copies on each (default: ``scheduler.worm_check_sample``)."""
    if sample is None:
        sample = station.settings.scheduler.worm_check_sample
    station.custody.check_signing_key()
    report = WormReport()
    for target in worm_targets(station) if targets is None else targets:
        report.checks.append(_check_one(station, target, sample=sample, actor=actor))
    return report


def _check_one(station: Station, target: WormTarget, *, sample: int, actor: str) -> WormCheck:
    with station.catalog.read() as tx:
        copies = tx.worm_sample(target.name, target.location, limit=sample)
        before = {s.target: s.passed for s in tx.worm_standings()}.get(target.name)
    samples = [LockSample(sha256=c.item, lock=Lock(retain_until=c.retain_until,
                                                   legal_hold=c.hold)) for c in copies]
    try:
        attempts = tuple(target.check_worm(samples, station.clock()))
    except TargetError as exc:
        log.error("target %s: WORM check not done: %s", target.name, exc.message,
                  extra={"event": "worm_unchecked"})
        return WormCheck(target=target.name, location=target.location, passed=None,
                         error=exc.message)
    passed = worm_passed(attempts)
    with station.custody.transaction() as tx:
        entry = station.custody.record(
            tx, kind=EventKind.WORM_CHECKED, actor=actor,
            data={"target": target.name, "location": target.location, "passed": passed,
                  "attempts": [_attempt(a) for a in attempts]})
        tx.worm_checked(target.name, location=target.location, passed=passed, at=entry.at,
                        ledger_seq=entry.seq)
    if not passed:
        let_through = "; ".join(f"{a.probe}: {a.detail}" for a in attempts if not a.held)
        log.critical("target %s FAILED its WORM check: %s; its copies no longer count as safe "
                     "off-site", target.name, let_through, extra={"event": "worm_failed"})
    elif before is False:
        log.warning("target %s passes its WORM check again; its copies count again",
                    target.name, extra={"event": "worm_passed"})
    else:
        log.info("target %s: WORM holds", target.name, extra={"event": "worm_passed"})
    return WormCheck(target=target.name, location=target.location, passed=passed,
                     attempts=attempts, ledger_seq=entry.seq)
