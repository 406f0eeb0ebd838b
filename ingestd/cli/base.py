"""The root command group, its shared options, and output helpers (tables or ``--json``)."""

from __future__ import annotations

import getpass
import json
import os
import pwd
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from .. import config as config_mod
from ..config import Settings
from ..errors import UsageError
from ..logs import configure
from ..station import Station

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class AppContext:
    config_path: Path
    home: Path | None
    verbose: int
    _settings: Settings | None = None
    _station: Station | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = config_mod.load(self.config_path)
        return self._settings

    def station(self) -> Station:
        if self._station is None:
            refuse_root_in_foreign_home(self.settings.home)
            self._station = Station.open(self.settings)
        return self._station

    def close(self) -> None:
        if self._station is not None:
            self._station.close()


def refuse_root_in_foreign_home(home: Path) -> None:
    """Root must not work in a home that the daemon's own user owns: a catalog journal, a lock
    or an object it created would be root's, and the daemon could no longer write or remove it."""
    try:
        owner = home.stat().st_uid
    except OSError:
        return  # no home yet: opening the station reports that
    if os.geteuid() != 0 or owner == 0:
        return
    try:
        name = pwd.getpwuid(owner).pw_name
    except KeyError:
        name = str(owner)
    raise UsageError(
        f"{home} belongs to user {name}; run ingestd as that user "
        f"(sudo -u {name} ingestd ...), so that every file in it stays {name}'s"
    )


def setup_logging(verbose: int, fmt: str = "text", level: str | None = None,
                  stream: TextIO | None = None) -> None:
    name = level or os.environ.get("INGESTD_LOG_LEVEL") or (
        "DEBUG" if verbose > 1 else "INFO" if verbose == 1 else "WARNING")
    configure(level=name, fmt=fmt, stream=stream)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Configuration file (default: HOME/ingestd.toml, $INGESTD_CONFIG, "
                   "or /etc/ingestd/ingestd.toml).")
@click.option("--home", type=click.Path(path_type=Path, file_okay=False),
              help="Folder holding an embedded station: config, store, catalog, keys, logs.")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.version_option(package_name="ingestd")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, home: Path | None, verbose: int) -> None:
    """Evidence-grade ingestion and integrity for body-worn recorder docking stations."""
    setup_logging(verbose)
    located = config_mod.locate(config_path, home)
    env_home = os.environ.get("INGESTD_HOME")
    if home is None and env_home and located == Path(env_home) / config_mod.CONFIG_NAME:
        home = Path(env_home)  # the home that `init` creates when only the variable names it
    app = AppContext(config_path=located, home=home, verbose=verbose)
    ctx.obj = app
    ctx.call_on_close(app.close)


pass_app = click.make_pass_decorator(AppContext)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def actor_option(func: F) -> F:
    return click.option(
        "--by", "actor", default=lambda: os.environ.get("INGESTD_ACTOR") or getpass.getuser(),
        show_default="the login name", help="Who does this (recorded in the ledger).",
    )(func)


def esc(value: Any) -> str:
    return escape(str(value)) if value is not None else ""


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
