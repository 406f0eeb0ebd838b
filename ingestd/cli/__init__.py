"""The command line: ``ingestd [--config PATH] [--home DIR] [-v] COMMAND``.

Only :func:`main` exits; everything below raises from the one exception tree in ``errors``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import NoReturn

import click

from ..errors import IngestdError, ShutdownRequested
from . import (  # noqa: F401, E402 - importing registers the commands
    alerts,
    case,
    checks,
    devices,
    export,
    ingest,
    init,
    items,
    keys,
    ledger,
    offsite,
    report,
    retention,
    run,
    simulate,
    spotcheck,
    status,
    targets,
)
from .base import begin_output, cli, err_console, esc, json_printed, print_json


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


def main() -> None:
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
