"""``ingestd spotcheck``: ``run`` (this period's sample, re-hashed and decoded end to end),
``list`` (the spot checks and their reviews, counted per officer) and ``record`` (a
supervisor's playback of a spot-checked item)."""

from __future__ import annotations

from typing import Any

import click

from ..domain import text
from ..domain.canonical import format_time
from ..domain.records import ReviewResult, SpotCheck, SpotResult
from ..errors import DiscrepancyFound
from ..usecases.spotcheck import list_spot_checks, record_review, review_status, run_spot_checks
from .base import (
    AppContext,
    ItemRef,
    TextParam,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    plural,
    print_json,
    print_rows,
    shown_time,
)


def _check_json(check: SpotCheck) -> dict[str, Any]:
    review = check.review
    return {
        "id": check.id, "sha256": check.item, "officer": check.officer,
        "checked_at": format_time(check.checked_at),
        "period_start": format_time(check.period_start), "fixity": check.fixity,
        "decode": check.decode, "result": str(check.result), "seq": check.ledger_seq,
        "status": review_status(check),
        "review": None if review is None else {
            "by": review.by, "result": str(review.result), "note": review.note,
            "at": format_time(review.at), "seq": review.ledger_seq},
    }


@cli.group()
def spotcheck() -> None:
    """Spot checks: a sample of each officer's items, decoded and played back."""


@spotcheck.command("run")
@json_option
@pass_app
def spotcheck_run(app: AppContext, as_json: bool) -> None:
    """Take this period's sample now (what the daemon does on schedule): per officer, items
    not yet spot-checked in the period, re-hashed from the store and decoded end to end.

    Exit status 1 when an item no longer hashes to its name or no longer decodes (it is
    flagged fixity_failed or damaged_media).
    """
    report = run_spot_checks(app.station())
    if as_json:
        print_json({"ok": report.ok, "period_start": format_time(report.period_start),
                    "checked": [_check_json(c) for c in report.checks]})
    else:
        console.print(f"period from {shown_time(report.period_start, app.tz)}: "
                      f"{report.summary()}")
        for c in report.checks:
            colour = "green" if c.result == SpotResult.OK else "red"
            said = "" if c.result == SpotResult.OK else (
                f": {esc(c.fixity if c.result == SpotResult.FIXITY_FAILED else c.decode)}")
            console.print(f"  {c.item[:16]} {esc(c.officer)} [{colour}]{c.result}[/]{said}")
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)


@spotcheck.command("list")
@click.option("--pending", is_flag=True, help="Only the spot checks not reviewed yet.")
@click.option("--officer", type=TextParam(text.OFFICER_MAX), help="Only this officer's.")
@json_option
@pass_app
def spotcheck_list(app: AppContext, pending: bool, officer: str | None, as_json: bool) -> None:
    """The spot checks, each with its latest review, and per officer how many were checked,
    reviewed ok, found a problem, and wait for review."""
    listing = list_spot_checks(app.station(read_only=True), officer=officer, pending=pending)
    if as_json:
        print_json({"checks": [_check_json(c) for c in listing.checks],
                    "counts": {name: n.as_dict() for name, n in listing.counts.items()}})
        return
    print_rows(["item", "officer", "checked", "result", "review", "by"], [[
        [c.item[:16], c.officer, shown_time(c.checked_at, app.tz), str(c.result),
         review_status(c), c.review.by if c.review else ""] for c in listing.checks]])
    for name, n in listing.counts.items():
        console.print(f"{esc(name)}: {n.checked} checked, {n.reviewed_ok} reviewed ok, "
                      f"{plural(n.problem, 'problem')}, {n.pending} pending")


@spotcheck.command("record")
@click.argument("item", type=ItemRef())
@click.option("--by", "by", required=True, type=TextParam(text.ACTOR_MAX),
              help="The supervisor who played it back (recorded in the ledger).")
@click.option("--result", required=True, type=click.Choice([r.value for r in ReviewResult]),
              help="What the playback showed.")
@click.option("--note", required=True, type=TextParam(text.REASON_MAX),
              help="What was seen.")
@json_option
@pass_app
def spotcheck_record(app: AppContext, item: str, by: str, result: str, note: str,
                     as_json: bool) -> None:
    """Record a supervisor's playback of a spot-checked item."""
    review = record_review(app.station(), item, by=by, result=result, note=note)
    if as_json:
        print_json({"reviewed": {"sha256": review.item, "by": review.by,
                                 "result": str(review.result), "note": review.note,
                                 "at": format_time(review.at), "seq": review.ledger_seq}})
        return
    console.print(f"reviewed {review.item[:16]}: {review.result} by {esc(review.by)} "
                  f"(entry {review.ledger_seq})")
