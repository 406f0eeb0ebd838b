"""The command line: ``ingestd [--config PATH] [--home DIR] [-v] COMMAND``.

Only :func:`main` exits; everything below raises from the one exception tree in ``errors``.
"""

from __future__ import annotations

import sys

import click

from ..errors import IngestdError, ShutdownRequested
from . import (  # noqa: F401,E402 - importing registers the commands
    checks,
    daemon,
    devices,
    ingest,
    items,
    offsite,
    setup,
    simulate,
)
from .base import cli, err_console


def main() -> None:
    try:
        # Not standalone: click returns the code of an Exit raised by a command.
        code = cli.main(prog_name="ingestd", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except IngestdError as exc:
        err_console.print(f"[bold red]error:[/] {exc.diagnostics()}", highlight=False,
                          markup=True)
        sys.exit(exc.exit_code)
    except ShutdownRequested as exc:
        err_console.print(f"stopped: {exc}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)
