"""The investigators' and supervisors' actions: label, hold, release, justify.

Each is a signed ledger event naming its actor; a label never overwrites an older one, it is
added on top, and the history stays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..domain import policy, text
from ..domain.canonical import format_time, parse_time
from ..domain.flags import Flag
from ..domain.models import EventKind, RetentionClass
from ..errors import UsageError
from ..station import Station

log = logging.getLogger(__name__)


def _retention_update(station: Station, item: dict[str, Any], *, has_case: bool,
                      categories: Sequence[str], hold: bool) -> dict[str, Any]:
    keep = policy.retention(
        recorded_end=parse_time(str(item["recorded_end"])),
        stored_at=parse_time(str(item["stored_at"])), has_case=has_case,
        categories=categories, hold=hold, policy=station.settings.retention.policy(),
    )
    # The longest retention wins: never shorten what was granted before.
    granted = item["retain_until"]
    keep = policy.kept_retention(keep, granted_class=RetentionClass(item["retention_class"]),
                                 granted_until=parse_time(str(granted)) if granted else None)
    return {"retention_class": str(keep.cls),
            "retain_until": format_time(keep.until) if keep.until else None, "hold": keep.hold}


def require_text(field: str, value: str, *, limit: int) -> str:
    """``value`` stripped, or a UsageError naming ``field`` when it cannot be stored."""
    problem = text.text_problem(field, value.strip(), limit=limit)
    if problem:
        raise UsageError(problem)
    return value.strip()


@dataclass(frozen=True, kw_only=True)
class _Label:
    case: str
    party: str
    officer: str
    categories: tuple[str, ...]


def _next_label(sha: str, item: Mapping[str, Any], current: Mapping[Any, Any] | None, *,
                case: str | None, party: str | None, officer: str | None,
                categories: Sequence[str] | None) -> _Label:
    """The label an item gets: what was given, and for the rest the current label's fields.
    The registry's officer is used only by the first label, so a later one never puts it back
    over an officer set by hand."""
    if current is None:
        missing = [name for name, value in (("--case", case), ("--party", party))
                   if value is None]
        if missing:
            raise UsageError(f"item {sha[:12]} has no label yet: its first label needs "
                             + " and ".join(missing))
        who = officer or str(item["officer"] or "")
        if not who:
            raise UsageError(
                f"item {sha[:12]} came from an unregistered recorder: give --officer")
        assert case is not None and party is not None
        return _Label(case=case, party=party, officer=who,
                      categories=tuple(sorted(categories or ())))
    kept = json.loads(current["categories"]) if current["categories"] else []
    return _Label(case=case if case is not None else str(current["case_no"]),
                  party=party if party is not None else str(current["party"]),
                  officer=officer if officer is not None else str(current["officer"]),
                  categories=tuple(sorted(categories if categories is not None else kept)))


def label(station: Station, refs: Sequence[str], *, case: str | None = None,
          party: str | None = None, officer: str | None = None,
          categories: Sequence[str] | None = None, actor: str) -> list[dict[str, Any]]:
    """Label items. A label changes only the fields it is given; the others carry over from
    the item's current label. An item's first label needs a case and a party; its officer
    defaults to the registry's officer for the recorder."""
    if case is None and party is None and officer is None and not categories:
        raise UsageError("a label needs at least one of --case, --party, --officer, --category")
    case = None if case is None else require_text("--case", case, limit=text.CASE_MAX)
    party = None if party is None else require_text("--party", party, limit=text.PARTY_MAX)
    officer = None if officer is None else require_text("--officer", officer,
                                                         limit=text.OFFICER_MAX)
    actor = require_text("--by", actor, limit=text.ACTOR_MAX)
    categories = list(categories) if categories else None
    unknown = set(categories or ()) - set(station.settings.retention.long_term_categories) - {
        "routine"}
    if unknown:
        raise UsageError(
            f"unknown category {sorted(unknown)[0]!r}; known: "
            + ", ".join(station.settings.retention.long_term_categories))
    out = []
    with station.custody.transaction() as tx:
        shas = [tx.resolve(ref) for ref in refs]
        for sha in shas:
            item = dict(tx.item(sha) or {})
            new = _next_label(sha, item, tx.current_label(sha), case=case, party=party,
                              officer=officer, categories=categories)
            hold = bool(item["hold"])
            retention = _retention_update(station, item, has_case=True,
                                          categories=new.categories, hold=hold)
            entry = station.custody.record(
                tx, kind=EventKind.LABELLED, actor=actor, item=sha,
                data={"case": new.case, "party": new.party, "officer": new.officer,
                      "categories": list(new.categories), "retention": retention},
            )
            tx.insert_label(item=sha, case_no=new.case, party=new.party,
                           officer=new.officer, categories=json.dumps(list(new.categories)),
                           by=actor, at=format_time(entry.at), ledger_seq=entry.seq)
            tx.update_item(sha, **retention)
            out.append({"sha256": sha, "case": new.case, "party": new.party,
                        "officer": new.officer, "categories": list(new.categories),
                        **retention})
    return out


def set_hold(station: Station, refs: Sequence[str], *, hold: bool, reason: str,
             actor: str) -> list[dict[str, Any]]:
    if not reason.strip():
        raise UsageError("a hold or release needs --reason")
    reason = require_text("--reason", reason, limit=text.REASON_MAX)
    actor = require_text("--by", actor, limit=text.ACTOR_MAX)
    out = []
    with station.custody.transaction() as tx:
        for sha in [tx.resolve(ref) for ref in refs]:
            item = dict(tx.item(sha) or {})
            current = tx.current_label(sha)
            categories = json.loads(current["categories"]) if current else []
            retention = _retention_update(station, item, has_case=current is not None,
                                          categories=categories, hold=hold)
            entry = station.custody.record(
                tx, kind=EventKind.HELD if hold else EventKind.RELEASED, actor=actor,
                item=sha, data={"reason": reason, "retention": retention},
            )
            tx.update_item(sha, **retention)
            out.append({"sha256": sha, "hold": hold, "seq": entry.seq, **retention})
    return out


def justify(station: Station, refs: Sequence[str], *, flag: str, reason: str,
            actor: str) -> list[dict[str, Any]]:
    """Record why an item is late. The flag stays; the reason is kept beside it."""
    if not reason.strip():
        raise UsageError("a justification needs --reason")
    reason = require_text("--reason", reason, limit=text.REASON_MAX)
    actor = require_text("--by", actor, limit=text.ACTOR_MAX)
    try:
        wanted = Flag(flag)
    except ValueError:
        raise UsageError(f"unknown flag {flag!r}") from None
    out = []
    with station.custody.transaction() as tx:
        for sha in [tx.resolve(ref) for ref in refs]:
            if not tx.has_flag(sha, wanted):
                raise UsageError(f"item {sha[:12]} is not flagged {wanted}")
            entry = station.custody.record(tx, kind=EventKind.JUSTIFIED, actor=actor, item=sha,
                                           data={"flag": str(wanted), "reason": reason})
            tx.insert_justification(item=sha, flag=str(wanted), reason=reason, by=actor,
                                   at=format_time(entry.at), ledger_seq=entry.seq)
            out.append({"sha256": sha, "flag": str(wanted), "reason": reason, "by": actor})
    return out
