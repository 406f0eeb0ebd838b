"""The investigators' and supervisors' actions: label, hold, release, justify.

Each is a signed ledger event naming its actor; a label never overwrites an older one, it is
added on top, and the history stays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..domain import policy, text
from ..domain.flags import Flag
from ..domain.models import EventKind
from ..domain.policy import Retention
from ..domain.records import Item, Label, retention_data
from ..errors import NotFound, UsageError
from ..ports import CatalogTx
from ..station import Station

log = logging.getLogger(__name__)


def _retention_update(station: Station, item: Item, *, has_case: bool,
                      categories: Sequence[str], hold: bool,
                      case_type: str | None) -> Retention:
    keep = policy.retention(
        recorded_end=item.recorded_end, stored_at=item.stored_at, has_case=has_case,
        categories=categories, hold=hold, policy=station.settings.retention.policy(),
        case_type=case_type,
    )
    # The longest retention wins: never shorten what was granted before.
    return policy.kept_retention(keep, granted_class=item.retention_class,
                                 granted_until=item.retain_until)


def _item(tx: CatalogTx, sha: str) -> Item:
    item = tx.item(sha)
    if item is None:
        raise NotFound(f"no item matches {sha}")
    return item


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
    case_type: str | None


def _next_label(sha: str, item: Item, current: Label | None, *,
                case: str | None, party: str | None, officer: str | None,
                categories: Sequence[str] | None, case_type: str | None = None) -> _Label:
    """The label an item gets: what was given, and for the rest the current label's fields.
    The registry's officer is used only by the first label, so a later one never puts it back
    over an officer set by hand."""
    if current is None:
        missing = [name for name, value in (("--case", case), ("--party", party))
                   if value is None]
        if missing:
            raise UsageError(f"item {sha[:12]} has no label yet: its first label needs "
                             + " and ".join(missing))
        who = officer or item.officer
        if not who:
            raise UsageError(
                f"item {sha[:12]} came from an unregistered recorder: give --officer")
        assert case is not None and party is not None
        return _Label(case=case, party=party, officer=who,
                      categories=tuple(sorted(categories or ())), case_type=case_type)
    return _Label(case=case if case is not None else current.case,
                  party=party if party is not None else current.party,
                  officer=officer if officer is not None else current.officer,
                  categories=tuple(sorted(categories if categories is not None
                                          else current.categories)),
                  case_type=case_type if case_type is not None else current.case_type)


def label(station: Station, refs: Sequence[str], *, case: str | None = None,
          party: str | None = None, officer: str | None = None,
          categories: Sequence[str] | None = None, case_type: str | None = None,
          actor: str) -> list[dict[str, Any]]:
    """Label items. A label changes only the fields it is given; the others carry over from
    the item's current label. An item's first label needs a case and a party; its officer
    defaults to the registry's officer for the recorder. A case type (one of
    ``[retention.case_types]``) gives the item its evidence period when that is longer."""
    if (case is None and party is None and officer is None and not categories
            and case_type is None):
        raise UsageError("a label needs at least one of --case, --party, --officer, "
                         "--category, --case-type")
    known_types = station.settings.retention.case_types
    if case_type is not None and case_type not in known_types:
        raise UsageError(f"unknown case type {case_type!r}; known: "
                         + (", ".join(sorted(known_types)) or
                            "none (configure [retention.case_types])"))
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
            item = _item(tx, sha)
            new = _next_label(sha, item, tx.current_label(sha), case=case, party=party,
                              officer=officer, categories=categories, case_type=case_type)
            retention = _retention_update(station, item, has_case=True,
                                          categories=new.categories, hold=item.hold,
                                          case_type=new.case_type)
            stated = retention_data(retention)
            data: dict[str, Any] = {"case": new.case, "party": new.party,
                                    "officer": new.officer,
                                    "categories": list(new.categories), "retention": stated}
            if new.case_type is not None:
                # Only a label with a case type names one: other entries keep their form.
                data["case_type"] = new.case_type
            entry = station.custody.record(tx, kind=EventKind.LABELLED, actor=actor,
                                           item=sha, data=data)
            tx.insert_label(item=sha, case=new.case, party=new.party, officer=new.officer,
                            categories=new.categories, by=actor, at=entry.at,
                            ledger_seq=entry.seq, case_type=new.case_type)
            tx.set_retention(sha, retention)
            out.append({"sha256": sha, "case": new.case, "party": new.party,
                        "officer": new.officer, "categories": list(new.categories),
                        "case_type": new.case_type, **stated})
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
            item = _item(tx, sha)
            current = tx.current_label(sha)
            retention = _retention_update(station, item, has_case=current is not None,
                                          categories=current.categories if current else (),
                                          hold=hold,
                                          case_type=current.case_type if current else None)
            stated = retention_data(retention)
            entry = station.custody.record(
                tx, kind=EventKind.HELD if hold else EventKind.RELEASED, actor=actor,
                item=sha, data={"reason": reason, "retention": stated},
            )
            tx.set_retention(sha, retention)
            out.append({"sha256": sha, "hold": hold, "seq": entry.seq, **stated})
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
            tx.insert_justification(item=sha, flag=wanted, reason=reason, by=actor,
                                    at=entry.at, ledger_seq=entry.seq)
            out.append({"sha256": sha, "flag": str(wanted), "reason": reason, "by": actor})
    return out
