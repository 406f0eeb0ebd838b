"""``ingest MOUNTPOINT``: take a mounted recorder's files now, as the daemon does on dock."""

from __future__ import annotations

from pathlib import Path

import click

from ..docks.walk import SourceFile
from ..domain import text
from ..domain.records import DockSource
from ..errors import RecorderRefused
from ..usecases.docking import identity_mismatch, serving
from ..usecases.ingest import DockContext, Ingestor, IngestReport
from .base import (
    AppContext,
    TextParam,
    actor_option,
    cli,
    console,
    err_console,
    esc,
    json_option,
    pass_app,
    plural,
    print_json,
)


@cli.command("ingest")
@click.argument("mountpoint", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--serial", required=True, type=TextParam(text.SERIAL_MAX),
              help="The recorder's serial number (must agree with its identity file, if any).")
@actor_option
@json_option
@pass_app
def ingest_cmd(app: AppContext, mountpoint: Path, serial: str, actor: str,
               as_json: bool) -> None:
    """Ingest one mounted recorder now: copy, hash, verify, sign, catalog."""
    station = app.station()
    ingestor = Ingestor(station)
    ctx = DockContext(source=DockSource.MANUAL, actor=actor)
    try:
        reason = identity_mismatch(station, mountpoint, serial)
        if reason:
            raise RecorderRefused(reason)
        with serving(station, serial, mountpoint):
            if as_json or not err_console.is_terminal:
                report = ingestor.ingest(mountpoint, serial=serial, ctx=ctx)
            else:
                report = _with_progress(ingestor, mountpoint, serial, ctx)
    except RecorderRefused as exc:
        ingestor.refuse(serial, mountpoint=mountpoint, ctx=ctx, reason=exc.message)
        raise RecorderRefused(f"recorder {serial} refused: {exc.message}; nothing was "
                              "copied") from None
    if as_json:
        print_json(report.as_dict())
    else:
        _print(report)
    if report.errors:
        raise click.exceptions.Exit(1)


def _with_progress(ingestor: Ingestor, mountpoint: Path, serial: str,
                   ctx: DockContext) -> IngestReport:
    # here, not at the top: rich's progress display takes 70 ms to import, and an ingest that
    # is not watched on a terminal (--json, the daemon, a script) shows none
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    # plain text: a file name is shown as it is, markup and emoji codes included
    columns = (TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task(f"recorder {text.printable(serial)}", total=None)

        def progress(event: str, src: SourceFile | None, n: int) -> None:
            if event == "start":
                bar.update(task, total=n)
            elif event == "file" and src is not None:
                bar.update(task, description=f"{text.printable(serial)}: "
                                             f"{text.printable(src.display[-40:])}")
            elif event == "bytes":
                bar.advance(task, n)

        return ingestor.ingest(mountpoint, serial=serial, ctx=ctx, progress=progress)


def _print(report: IngestReport) -> None:
    new = sum(1 for i in report.items if i.new)
    console.print(f"recorder {esc(report.serial)}: {plural(len(report.items), 'file')}, "
                  f"{new} new, "
                  f"{len(report.items) - new} already stored, "
                  f"{plural(len(report.errors), 'error')}, "
                  f"{len(report.skipped)} not taken "
                  f"(session {report.session_id}, {report.state})")
    for item in report.items:
        flags = f"  [yellow]{', '.join(item.flags)}[/]" if item.flags else ""
        console.print(f"  {item.sha256[:16]}  {'new  ' if item.new else 'known'}  "
                      f"{esc(item.path)}{flags}")
    for err in report.errors:
        console.print(f"  [red]error[/] {esc(err['path'])}: {esc(err['error'])}")
    # Left on the recorder: each one is shown, since it may be footage under another name.
    for skip in report.skipped:
        console.print(f"  [yellow]not taken[/] {esc(skip['path'])}: {esc(skip['reason'])}")
    if report.skipped:
        console.print("  not taken, by kind: " + ", ".join(
            f"{k} {n}" for k, n in report.skipped_by_kind().items()))
