"""``export`` and ``verify-export``: a court package of a case or of items, and its check."""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from ..domain import text
from ..errors import DiscrepancyFound, TimestampError, UsageError
from ..integrity.package import verify_package
from ..integrity.verify_package import ONE
from ..timestamping import check_stamp
from ..usecases import export as export_uc
from .base import (
    AppContext,
    ItemRef,
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


def _stamp_check(token: bytes, data: bytes, ca_pem: bytes) -> str | None:
    """A time-stamp token checked as ingestd checks its own (the imprint, the chain to
    ``ca_pem``, the certificate meant for time-stamping)."""
    with tempfile.TemporaryDirectory(prefix="ingestd-verify-") as tmp:
        ca = Path(tmp) / "ca.pem"
        ca.write_bytes(ca_pem)
        try:
            check_stamp(token, hashlib.sha256(data).digest(), ca_file=ca)
        except TimestampError as exc:
            return exc.message
    return None


@contextmanager
def _progress(show: bool) -> Iterator[export_uc.Progress | None]:
    """A progress bar on stderr when it is a terminal (never under --json)."""
    if not show:
        yield None
        return
    from rich.progress import (  # only for a bar that is shown: it takes 70 ms to import
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TransferSpeedColumn,
    )

    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), DownloadColumn(),
                   TransferSpeedColumn(), console=err_console, transient=True)
    task = bar.add_task("exporting", total=None)
    with bar:
        def step(what: str, done: int, total: int) -> None:
            bar.update(task, description=text.printable(what)[:40], completed=done,
                       total=total)
        yield step


@cli.command("export")
@click.argument("items", nargs=-1, type=ItemRef())
@click.option("--case", "case", type=TextParam(text.CASE_MAX),
              help="Every item labelled with this case.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True,
              help="The package folder to make (must not exist, or be empty).")
@click.option("--approved-by", type=TextParam(text.ACTOR_MAX), required=True,
              help="Who approved the export (recorded in the ledger).")
@click.option("--reason", type=TextParam(text.REASON_MAX), required=True,
              help="Why (recorded in the ledger).")
@click.option("--requested-by", type=TextParam(text.ACTOR_MAX),
              help="For whom: the party, court or counsel who asked.")
@click.option("--purpose", type=click.Choice(export_uc.PURPOSES), default="court",
              show_default=True, help="What the package is for.")
@actor_option
@json_option
@pass_app
def export_cmd(app: AppContext, items: tuple[str, ...], case: str | None, out: Path,
               approved_by: str, reason: str, requested_by: str | None, purpose: str,
               actor: str, as_json: bool) -> None:
    """Write a court package (BagIt) of a case or of items, checkable without ingestd.

    The originals byte for byte under readable names, their signed manifests, every ledger
    entry about them with an inclusion proof against a signed checkpoint, the station's keys,
    VERIFY.txt (how to check it with sha256sum and openssl) and verify_package.py. The export
    is itself a ledger entry. A failed export leaves no package behind.
    """
    if bool(case) == bool(items):
        raise UsageError("give either --case or items, not both or neither")
    station = app.station()
    if case:
        shas = export_uc.case_items(station, case)
    else:
        with station.catalog.read() as tx:
            shas = [tx.resolve(i) for i in items]
    with _progress(not as_json and sys.stderr.isatty()) as progress:
        result = export_uc.export_items(
            station, items=shas, out=out, approved_by=approved_by, reason=reason,
            requested_by=requested_by, purpose=purpose, case=case, actor=actor,
            progress=progress)
    if as_json:
        print_json(result.as_dict())
        return
    console.print(f"package {result.package_id}: {plural(len(result.items), 'item')}, "
                  f"{plural(result.size, 'byte')}, "
                  f"{plural(result.entries, 'ledger entry', 'ledger entries')}, "
                  f"written to {esc(result.path)}")
    console.print(f"  export recorded as entry {result.entry_seq}; checkpoint at entry "
                  f"{result.checkpoint_seq}")
    if result.published_seq is not None:
        console.print(f"  consistent with the checkpoint published at entry "
                      f"{result.published_seq}")
    for item in result.items:
        if item.source != "local":
            console.print(f"  {item.sha256[:16]} read back from {esc(item.source)}")
    for note in result.notes:
        console.print(f"  [yellow]{esc(note)}[/]")


@cli.command("verify-export")
@click.argument("package", type=click.Path(path_type=Path, file_okay=False))
@click.option("--fingerprint", help="The station's pinned key fingerprint (SHA-256, from "
              "keys/station.pin), to check the package's first key against.")
@click.option("--ca-file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The time-stamping authority's CA certificates (PEM) to check time-stamps "
                   "by, instead of those the package carries.")
@json_option
def verify_export(package: Path, fingerprint: str | None, ca_file: Path | None,
                  as_json: bool) -> None:
    """Check a court package offline: the bag, every hash, signature, proof and time-stamp,
    the keys.

    Needs no station. Exits 0 only if everything holds; every discrepancy is listed, typed.
    """
    ca_pem = ca_file.read_bytes() if ca_file is not None else None
    report = verify_package(package, fingerprint=fingerprint, ca_pem=ca_pem,
                            stamp_check=_stamp_check)
    if as_json:
        print_json(report.as_dict())
    else:
        for problem in report.problems:
            console.print(f"[red]{problem.kind}[/] {esc(problem.detail)}")
        counts = ", ".join(f"{n} {ONE.get(what, what) if n == 1 else what}"
                           for what, n in sorted(report.checked.items()))
        console.print(("[green]OK[/]: " if report.ok else "[red]"
                       + plural(len(report.problems), "discrepancy", "discrepancies")
                       + "[/]: ") + counts)
    if not report.ok:
        raise click.exceptions.Exit(DiscrepancyFound.exit_code)
