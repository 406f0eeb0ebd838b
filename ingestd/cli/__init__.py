"""The command line: ``ingestd [--config PATH] [--home DIR] [-v] COMMAND``.

Only :func:`main` exits; everything below raises from the one exception tree in ``errors``.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable
from typing import NoReturn

from ..app.signals import hold_signals, starts_daemon

if os.path.basename(sys.argv[0]) in ("ingestd", "__main__.py") and starts_daemon(sys.argv[1:]):
    # This process is `ingestd run` (the console script, or python -m ingestd.cli): a stop
    # asked for from here on is kept for the daemon, not its death while the libraries below
    # are still importing (systemd may stop a unit at any moment).
    hold_signals()

import click  # noqa: E402

from ..errors import IngestdError, ShutdownRequested
from .base import LazyCommand, begin_output, cli, err_console, esc, json_printed, print_json

#: Every command of the root group: its module under ``ingestd/cli`` (imported only when the
#: command runs, so that each loads only what it uses) and its short help in ``--help`` (its
#: docstring's first sentence; tests/unit/test_cli_commands.py checks both). A new command is
#: one line here.
cli.lazy.update({
    "alerts": LazyCommand("alerts", "Alerts: the log, and each [[alerts]] channel (webhook, "
                                    "smtp)."),
    "audit": LazyCommand("checks", "Re-hash stored items from disk (and off-site) and decode "
                                   "a sample; record the results."),
    "case": LazyCommand("case", "Cases: close one when its enforcement ends; its items are "
                                "then archived as one package within case_archive_window "
                                "([cases])."),
    "check-windows": LazyCommand("checks", "Flag items past their label or replication window "
                                           "(the daemon runs this on schedule)."),
    "checkpoint": LazyCommand("offsite", "Send a signed ledger checkpoint (sequence, head "
                                         "hash) to every target."),
    "devices": LazyCommand("devices", "The registry of recorders allowed to dock, and who "
                                      "carries each."),
    "export": LazyCommand("export", "Write a court package (BagIt) of a case or of items, "
                                    "checkable without ingestd."),
    "hold": LazyCommand("items", "Put items on legal hold: no deletion anywhere until "
                                 "released."),
    "ingest": LazyCommand("ingest", "Ingest one mounted recorder now: copy, hash, verify, "
                                    "sign, catalog."),
    "init": LazyCommand("init", "Create an embedded station in HOME (config, store, catalog, "
                                "key, ledger)."),
    "items": LazyCommand("items", "List items, filtered by case, officer, recorder, flag or "
                                  "recording date."),
    "justify": LazyCommand("items", "Record why an item is late."),
    "keys": LazyCommand("keys", "The station's Ed25519 signing key."),
    "label": LazyCommand("items", "Label items with case number, party and officer (a signed "
                                  "ledger event)."),
    "ledger": LazyCommand("ledger", "The custody ledger."),
    "overdue": LazyCommand("items", "Items that missed a window (ingest, label, replication) "
                                    "or whose time is doubtful."),
    "release": LazyCommand("items", "Release a legal hold (retention rules apply again)."),
    "replicate": LazyCommand("offsite", "Copy stored items to every off-site target, verify "
                                        "each copy, extend locks."),
    "report": LazyCommand("report", "Items recorded in a period, per case, officer or "
                                    "recorder: hours recorded, late items by window, flags, "
                                    "exports and spot checks (reviewed ok, problem, pending)."),
    "retention": LazyCommand("retention", "Retention: what each item is kept for and why "
                                          "(`list`), and the local cache sweep (`sweep`)."),
    "run": LazyCommand("run", "Run the docking-station daemon in the foreground."),
    "show": LazyCommand("items", "One item: what it is, its labels, flags, acquisitions and "
                                 "whole custody history."),
    "simulate-recorder": LazyCommand("simulate", "Dock a simulated recorder under the watched "
                                                 "mount root (HOME/docks/SERIAL)."),
    "spotcheck": LazyCommand("spotcheck", "Spot checks: a sample of each officer's items, "
                                          "decoded and played back."),
    "status": LazyCommand("status", "Storage, items by state and flag, recent docks, "
                                    "targets, last checks and jobs."),
    "targets": LazyCommand("targets", "The off-site targets."),
    "verify-export": LazyCommand("export", "Check a court package offline: the bag, every "
                                           "hash, signature, proof and time-stamp, the keys."),
    "verify": LazyCommand("verify", "Is this file (a copy, an export) our evidence, intact "
                                    "and signed?"),
})


def _wants_json(argv: list[str]) -> bool:
    """Whether the command line asks for JSON: read from the words themselves, so that even an
    error click finds while parsing them is answered in JSON."""
    words = argv[: argv.index("--")] if "--" in argv else argv
    return "--json" in words


def _fail(exc_type: str, message: str, exit_code: int, *, as_json: bool,
          human: Callable[[], None]) -> NoReturn:
    human()
    if as_json and not json_printed():
        print_json({"error": {"message": message, "exit_code": exit_code, "type": exc_type}})
    sys.exit(exit_code)


def command() -> None:
    """The ``ingestd`` program: the console script and ``python -m ingestd.cli``, each a
    process of its own that ends with the command. (``main`` is the same without the last
    step, for a caller that goes on: the tests run commands in their own process.)"""
    try:
        main()
    finally:
        # Whatever the command made after its module was imported (an S3 client and its
        # service model, say) is left out of the collection Python runs as it exits: every
        # file and connection is closed by then, and the scan alone can take a quarter of a
        # second. Frees nothing less: the process ends.
        gc.freeze()


def main() -> None:
    # The web page's request models (FastAPI's, in pydantic) use no pydantic plugin: not
    # looking for one spares `ingestd run` a scan of every installed package's entry points
    # (unless the caller's environment says).
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    as_json = _wants_json(sys.argv[1:])
    begin_output()
    try:
        # Not standalone: click returns the code of an Exit raised by a command.
        code = cli.main(prog_name="ingestd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        kind = "UsageError" if isinstance(exc, click.UsageError) else type(exc).__name__
        _fail(kind, exc.format_message(), exc.exit_code, as_json=as_json, human=exc.show)
    except click.exceptions.Abort:
        _fail("Aborted", "aborted", 130, as_json=as_json,
              human=lambda: err_console.print("aborted"))
    except IngestdError as exc:
        error = exc
        _fail(type(exc).__name__, exc.diagnostics(), exc.exit_code, as_json=as_json,
              human=lambda: err_console.print(
                  "[bold red]error:[/] " + "\n".join(
                      esc(line) for line in error.diagnostics().splitlines()),
                  highlight=False, markup=True))
    except ShutdownRequested as exc:
        stop = exc
        _fail(type(exc).__name__, f"stopped: {exc}", exc.exit_code, as_json=as_json,
              human=lambda: err_console.print(f"stopped: {stop}"))
    except KeyboardInterrupt:
        _fail("Interrupted", "interrupted", 130, as_json=as_json,
              human=lambda: err_console.print("interrupted"))
    sys.exit(code if isinstance(code, int) else 0)
