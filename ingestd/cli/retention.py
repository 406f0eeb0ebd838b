"""``retention``: what each item is kept for and why (``list``), and the local cache sweep
(``sweep``; ``retention`` alone, with ``--dry-run`` and ``--json``, is the sweep as before)."""

from __future__ import annotations

from datetime import tzinfo
from typing import Any

import click

from ..domain.models import RetentionClass
from ..errors import UsageError
from ..usecases import retention as retention_uc
from .base import (
    AppContext,
    ItemRef,
    cli,
    console,
    json_option,
    pass_app,
    plural,
    print_json,
    print_json_list,
    print_rows,
    shown_time,
)


def _sweep(app: AppContext, *, dry_run: bool, as_json: bool) -> None:
    report = retention_uc.sweep(app.station(), dry_run=dry_run)
    if as_json:
        print_json(report.as_dict())
        return
    verb = "would evict" if dry_run else "evicted"
    console.print(f"{verb} {plural(len(report.evicted), 'item')} from the local store; "
                  f"{report.kept} kept")
    for e in report.evicted:
        console.print(f"  {e['sha256'][:16]} (on {', '.join(e['targets'])})")


@cli.group("retention", invoke_without_command=True)
@click.option("--dry-run", is_flag=True, help="Only say what would leave the local store.")
@json_option
@click.pass_context
def retention_group(ctx: click.Context, dry_run: bool, as_json: bool) -> None:
    """Retention: what each item is kept for and why (`list`), and the local cache sweep
    (`sweep`).

    `ingestd retention [--dry-run] [--json]` with no subcommand is `retention sweep`, as it
    always was, so scripts that call it keep working.
    """
    ctx.meta["retention.dry_run"] = dry_run
    ctx.meta["retention.json"] = as_json
    if ctx.invoked_subcommand is None:
        app = ctx.find_object(AppContext)
        assert app is not None  # the top-level group made it
        _sweep(app, dry_run=dry_run, as_json=as_json)


@retention_group.command("sweep")
@click.option("--dry-run", is_flag=True, help="Only say what would leave the local store.")
@json_option
@pass_app
@click.pass_context
def sweep_cmd(ctx: click.Context, app: AppContext, dry_run: bool, as_json: bool) -> None:
    """Remove from the local store items verified on every required target and older than
    retention.local_keep (never held items; off-site copies are never deleted)."""
    _sweep(app, dry_run=dry_run or ctx.meta["retention.dry_run"],
           as_json=as_json or ctx.meta["retention.json"])


def _cells(r: dict[str, Any], tz: tzinfo) -> list[str]:
    return [r["sha256"][:16], r["retention_class"], shown_time(r["retain_until"], tz,
                                                                none="never"),
            "held" if r["hold"] else "", r["why"]]


@retention_group.command("list")
@click.option("--item", "ref", type=ItemRef(), help="Only this item.")
@click.option("--class", "cls", type=click.Choice([c.value for c in RetentionClass]),
              help="Only items of this retention class.")
@json_option
@pass_app
@click.pass_context
def list_cmd(ctx: click.Context, app: AppContext, ref: str | None, cls: str | None,
             as_json: bool) -> None:
    """Each item's retention class, retain-until date and why: the label, category, case type
    or earlier grant that decided it, and a legal hold beside it."""
    if ctx.meta["retention.dry_run"]:
        raise UsageError("--dry-run belongs to the sweep, not to `retention list`")
    as_json = as_json or ctx.meta["retention.json"]
    station = app.station(read_only=True)
    with station.catalog.read() as tx:
        sha = tx.resolve(ref) if ref is not None else None
        pages = retention_uc.explain(station, tx, item=sha,
                                     cls=RetentionClass(cls) if cls else None)
        if as_json:
            print_json_list("items", (r for page in pages for r in page))
            return
        count = print_rows(("item", "class", "retain until", "hold", "why"),
                           ([_cells(r, app.tz) for r in page] for page in pages))
    console.print(plural(count, "item"))
