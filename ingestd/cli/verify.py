"""``verify``: is this file (a copy, an export), or this SHA-256, our evidence, intact and
signed?

Exit status 0 only when every one matches intact evidence, 1 otherwise (every problem named).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import DiscrepancyFound, UsageError
from ..usecases.verify import Verdict, verify_files, verify_hash
from .base import AppContext, cli, console, esc, json_option, pass_app, print_json, shown_time

if TYPE_CHECKING:
    from ..targets import Target


@cli.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--hash", "sha", help="Check a SHA-256 instead of a file.")
@json_option
@pass_app
def verify(app: AppContext, files: tuple[Path, ...], sha: str | None, as_json: bool) -> None:
    """Is this file (a copy, an export) our evidence, intact and signed?

    Exit status 0 only when every file matches intact evidence.
    """
    if bool(files) == bool(sha):
        raise UsageError("give FILE... or --hash HEX (one of the two)")
    station = app.station(read_only=True)

    # Built only for an item whose bytes are not here (an S3 client takes long to load), and
    # then once; a target is read only for such an item.
    @functools.cache
    def targets() -> Sequence[Target]:
        from ..targets.factory import build_targets

        return build_targets(station.settings)

    verdicts: list[Verdict] = [verify_hash(station, sha, targets)] if sha else verify_files(
        station, list(files), targets)
    if as_json:
        print_json({"results": [v.as_dict() for v in verdicts]})
    else:
        for v in verdicts:
            name = esc(v.path or v.sha256)
            if v.match and v.item:
                it = v.item
                console.print(
                    f"[green]MATCH[/] {name}\n  item {v.sha256}\n  officer {esc(it['officer'])}"
                    f", case {esc(it['case'] or '-')}, party {esc(it['party'] or '-')}\n"
                    f"  recorded {shown_time(it['recorded_start'], app.tz)}, stored "
                    f"{shown_time(it['stored_at'], app.tz)} at "
                    f"{esc(it['station'])}, recorder {esc(it['recorder'])}")
                if it["flags"]:
                    console.print(f"  flags: {', '.join(it['flags'])}")
                for note in v.notes:
                    console.print(f"  {esc(note)}")
            else:
                console.print(f"[red]NO MATCH[/] {name} ({v.sha256 or 'unread'})")
                for p in v.problems:
                    console.print(f"  - {esc(p)}")
                for note in v.notes:
                    console.print(f"  {esc(note)}")
    if not all(v.match for v in verdicts):
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)
