"""Spot checks (R12): a sample of each officer's items, per period, re-hashed from the store
and decoded end to end, each result a signed ``spot_checked`` entry and a row; supervisors then
play them back and record what they saw (``spot_reviewed``).

Which items are picked is ``domain.policy.spot_picks``; what a damaged item is flagged is
``flags.set_flag``, as the audit flags it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..domain import text
from ..domain.canonical import format_time
from ..domain.flags import Flag
from ..domain.models import EventKind
from ..domain.policy import SpotCandidate, spot_period_start, spot_picks
from ..domain.records import ReviewResult, SpotCheck, SpotResult, SpotReview
from ..errors import UsageError
from ..integrity.discrepancy import DoesNotPlay
from ..media import decode_check
from ..station import Station
from .casework import require_text
from .flags import set_flag

log = logging.getLogger(__name__)

#: What a spot check says of the decode when the bytes were wrong: nothing was played.
NOT_DECODED = "not decoded"


@dataclass(kw_only=True)
class SpotRunReport:
    period_start: datetime
    checks: list[SpotCheck] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.result == SpotResult.OK for c in self.checks)

    def summary(self) -> str:
        bad = sum(1 for c in self.checks if c.result != SpotResult.OK)
        return (f"{text.plural(len(self.checks), 'item')} spot-checked (re-hashed and decoded), "
                + (f"{bad} damaged" if bad else "all intact"))


@dataclass(frozen=True, kw_only=True)
class _Found:
    fixity: str
    decode: str
    result: SpotResult
    flag: Flag | None
    detail: str


def _examine(station: Station, sha: str, size: int) -> _Found:
    """Re-hash the stored copy from disk; only intact bytes are decoded, every frame."""
    _, damage = station.store.examine(sha, size)
    if damage is not None:
        return _Found(fixity=damage.detail, decode=NOT_DECODED, result=SpotResult.FIXITY_FAILED,
                      flag=Flag.FIXITY_FAILED, detail=damage.detail)
    decoded = decode_check(station.store.path_of(sha))
    if decoded.ok:
        return _Found(fixity="ok", decode="ok", result=SpotResult.OK, flag=None, detail="")
    said = tuple(decoded.errors[-3:])
    return _Found(fixity="ok", decode="; ".join(said), result=SpotResult.DAMAGED,
                  flag=Flag.DAMAGED_MEDIA, detail=DoesNotPlay.of(sha, errors=said).detail)


def run_spot_checks(station: Station, *, actor: str = "ingestd",
                    seed: int | None = None) -> SpotRunReport:
    """Pick this period's spot checks (``[spotcheck]``), check each and record it. An item
    found not to hash to its name is flagged ``fixity_failed``; one that does but no longer
    decodes is flagged ``damaged_media`` with the decoder's words."""
    settings = station.settings.spotcheck
    now = station.custody.now()
    start = spot_period_start(now, settings.period)
    report = SpotRunReport(period_start=start)
    with station.catalog.read() as tx:
        candidates = tx.spot_candidates(station=station.name)
    picks = spot_picks(candidates, now=now, period=settings.period,
                       per_officer=settings.per_officer, seed=seed)
    for pick in picks:
        done = _check_and_record(station, pick, start=start, actor=actor)
        if done is not None:
            report.checks.append(done)
    return report


def _check_and_record(station: Station, pick: SpotCandidate, *, start: datetime,
                      actor: str) -> SpotCheck | None:
    sha = pick.sha256
    with station.catalog.read() as tx:
        item = tx.item(sha)
    if item is None or not item.local_present:
        return None
    found = _examine(station, sha, item.size)  # hours for a long file: outside any transaction
    with station.custody.transaction() as tx:
        now_item = tx.item(sha)
        last = tx.latest_spot_check(sha)
        if now_item is None or not now_item.local_present:
            return None  # evicted while it was read: its absence is no damage
        if last is not None and last.checked_at >= start:
            return None  # checked meanwhile (by hand, or the job) in this period
        data: dict[str, Any] = {
            "officer": pick.officer, "period_start": format_time(start),
            "fixity": found.fixity, "decode": found.decode, "result": str(found.result)}
        entry = station.custody.record(tx, kind=EventKind.SPOT_CHECKED, actor=actor, item=sha,
                                       data=data)
        check_id = tx.insert_spot_check(
            item=sha, officer=pick.officer, checked_at=entry.at, period_start=start,
            fixity=found.fixity, decode=found.decode, result=found.result,
            ledger_seq=entry.seq)
        if found.flag is not None:
            set_flag(station, tx, sha, found.flag, at=entry.at, actor=actor,
                     detail=found.detail)
    if found.flag is not None:
        log.error("spot check: item %s %s", sha[:12], found.detail,
                  extra={"event": "spot_check_failed"})
    return SpotCheck(id=check_id, item=sha, officer=pick.officer, checked_at=entry.at,
                     period_start=start, fixity=found.fixity, decode=found.decode,
                     result=found.result, ledger_seq=entry.seq)


def record_review(station: Station, ref: str, *, by: str, result: str,
                  note: str) -> SpotReview:
    """A supervisor's playback of a spot-checked item: what they saw, against its latest spot
    check. An item never spot-checked is refused."""
    by = require_text("--by", by, limit=text.ACTOR_MAX)
    note = require_text("--note", note, limit=text.REASON_MAX)
    try:
        seen = ReviewResult(result)
    except ValueError:
        raise UsageError(f"--result must be one of {', '.join(r.value for r in ReviewResult)}, "
                         f"not {result!r}") from None
    with station.custody.transaction() as tx:
        sha = tx.resolve(ref)
        check = tx.latest_spot_check(sha)
        if check is None:
            raise UsageError(
                f"item {sha[:12]} has not been spot-checked, so there is no spot check to "
                "review: `ingestd spotcheck list --pending` shows the items waiting for "
                "review (`ingestd spotcheck run` picks more)")
        entry = station.custody.record(
            tx, kind=EventKind.SPOT_REVIEWED, actor=by, item=sha,
            data={"by": by, "result": str(seen), "note": note, "check_seq": check.ledger_seq})
        review_id = tx.insert_spot_review(check_id=check.id, item=sha, by=by, result=seen,
                                          note=note, at=entry.at, ledger_seq=entry.seq)
    return SpotReview(id=review_id, check_id=check.id, item=sha, by=by, result=seen, note=note,
                      at=entry.at, ledger_seq=entry.seq)


#: A spot check no supervisor has reviewed yet.
PENDING = "pending"


def review_status(check: SpotCheck) -> str:
    """Where a spot check stands: its latest review's result (ok, problem), else pending."""
    return str(check.review.result) if check.review is not None else PENDING


@dataclass(frozen=True, kw_only=True)
class OfficerCounts:
    checked: int = 0
    reviewed_ok: int = 0
    problem: int = 0
    pending: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"checked": self.checked, "reviewed_ok": self.reviewed_ok,
                "problem": self.problem, "pending": self.pending}


@dataclass(frozen=True, kw_only=True)
class SpotListing:
    checks: list[SpotCheck]  # those asked for (all, or the pending ones)
    counts: dict[str, OfficerCounts]  # per officer, over every check of the listing's officers


def list_spot_checks(station: Station, *, officer: str | None = None,
                     pending: bool = False) -> SpotListing:
    with station.catalog.read() as tx:
        every = tx.list_spot_checks(officer=officer)
    tally: dict[str, dict[str, int]] = {}
    for check in every:
        counts = tally.setdefault(check.officer, {"checked": 0, "reviewed_ok": 0,
                                                  "problem": 0, "pending": 0})
        counts["checked"] += 1
        status = review_status(check)
        counts["reviewed_ok" if status == ReviewResult.OK else status] += 1
    shown = [c for c in every if c.review is None] if pending else every
    return SpotListing(checks=shown, counts={name: OfficerCounts(**tally[name])
                                             for name in sorted(tally)})
