"""The root command group, its shared options, and output helpers (tables or ``--json``)."""

from __future__ import annotations

import gc
import getpass
import importlib
import json
import os
import pwd
import sys
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, TypeVar, cast

import click
from rich.cells import cell_len, set_cell_size

from ..domain import text
from ..domain.canonical import parse_time
from ..domain.models import item_prefix
from ..domain.policy import local_time
from ..domain.text import plural as plural
from ..errors import UsageError, exit_code_table
from ..logs import configure

if TYPE_CHECKING:
    from rich.console import Console

    # Imported when a command first needs them (``ingestd --help`` does not).
    from ..config import Settings
    from ..station import Station


#: What a rich Console reads from the environment once, when it is made (the rest it reads
#: whenever it needs it).
_READ_WHEN_MADE = ("COLUMNS", "LINES", "JUPYTER_COLUMNS", "JUPYTER_LINES", "NO_COLOR",
                   "TTY_INTERACTIVE")


class _Environ(Mapping[str, str]):
    """The environment a deferred console is made with: ``os.environ`` as it is when read,
    but, while the console is being made, what it reads then as it was when this module was
    imported."""

    def __init__(self) -> None:
        self.at_import: dict[str, str | None] | None = {
            name: os.environ.get(name) for name in _READ_WHEN_MADE}

    def __getitem__(self, name: str) -> str:
        if self.at_import is not None and name in self.at_import:
            value = self.at_import[name]
            if value is None:
                raise KeyError(name)
            return value
        return os.environ[name]

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


class _Deferred:
    """A rich Console made when it is first used: rich's console takes longer to import than
    ``items`` or a ``--json`` answer, which print none, take to run. It is made as it would
    have been when this module was imported (the environment it reads then, as it was)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._environ = _Environ()
        self._made: Console | None = None

    def _console(self) -> Console:
        if self._made is None:
            from rich.console import Console

            self._made = Console(**self._options, _environ=self._environ)
            self._environ.at_import = None  # made: from now on, the environment as it is
        return self._made

    def __getattr__(self, name: str) -> Any:
        return getattr(self._console(), name)

    # What rich does with a console beyond its attributes (Live and Progress buffer its
    # output in a ``with``).
    def __enter__(self) -> Console:
        return self._console().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._console().__exit__(*exc)


# No emoji codes: a label, a name or a file name with ``:police_car:`` in it is printed as
# written (markup escaping leaves such codes alone).
console = cast("Console", _Deferred(highlight=False, emoji=False))
err_console = cast("Console", _Deferred(stderr=True, highlight=False, soft_wrap=True,
                                        emoji=False))

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
            from .. import config as config_mod

            self._settings = config_mod.load(self.config_path)
        return self._settings

    def station(self, *, read_only: bool = False) -> Station:
        """The station, opened once. ``read_only`` for commands that only report: they then
        work on a read-only home or a full disk, and write nothing."""
        if self._station is None:
            # Reads too: a read-only open of a WAL catalog may still create its -shm.
            refuse_root_in_foreign_home(self.settings.home)
            from ..station import Station

            self._station = Station.open(self.settings, read_only=read_only)
        return self._station

    def close(self) -> None:
        if self._station is not None:
            self._station.close()

    @property
    def tz(self) -> tzinfo:
        """The zone times are shown to people in: ``station_timezone``, by default the
        recorders' ``recorder_timezone``."""
        return self.settings.station_tz


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


def exit_codes_help(width: int = 76) -> str:
    """The exit code table (``errors.exit_code_table``) as the end of ``ingestd --help``,
    unwrapped by click (``\\b``) and wrapped here to fit 80 columns."""
    table = exit_code_table()
    name_width = max(len(row.error) for row in table)
    lines = ["Exit codes (0 on success):", "", "\b"]
    for row in table:
        head = f"{row.code:>3}  {row.error:<{name_width}}  "
        lines.extend(textwrap.wrap(row.meaning, width, initial_indent=head,
                                   subsequent_indent=" " * len(head)))
    return "\n".join(lines)


@dataclass(frozen=True)
class LazyCommand:
    """A command of the root group not imported yet: the module under ``ingestd/cli`` that
    defines it, and its short help as ``ingestd --help`` shows it (a test keeps this equal to
    the command's own)."""

    module: str
    short_help: str


class LazyGroup(click.Group):
    """The root group: a command's module is imported only when that command is looked up,
    so that each command loads only what it uses. ``lazy`` names every command not yet
    imported; ``--help`` lists them from it, importing none."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, LazyCommand] = {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            # Importing the module registers its commands (``@cli.command``). It brings in
            # most of what the process will ever hold (the settings' models, the catalog's
            # tables, the libraries), which lives as long as the process: no collection
            # scans it meanwhile, and none afterwards (about a tenth of a report's time).
            collecting = gc.isenabled()
            gc.disable()
            try:
                importlib.import_module(f"{__package__}.{self.lazy[cmd_name].module}")
            finally:
                gc.freeze()
                if collecting:
                    gc.enable()
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[
            str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # Close matches among every command, imported or not.
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx) from None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # As click's own, with a command not imported shown by its entry in ``lazy``.
        shown: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(
                name, help=self.lazy[name].short_help)
            if not command.hidden:
                shown.append((name, command))
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            with formatter.section("Commands"):
                formatter.write_dl([(name, command.get_short_help_str(limit))
                                    for name, command in shown])


@click.group(cls=LazyGroup,
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=exit_codes_help())
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
    from .. import config as config_mod

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


#: Whether this process has printed its JSON answer: an error after it must not add a second
#: document to stdout (the exit code and stderr still tell).
_json_printed = False


def print_json(data: Any) -> None:
    global _json_printed
    out = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    sys.stdout.write(text.json_printable(out) + "\n")
    _json_printed = True


def json_printed() -> bool:
    return _json_printed


def begin_output() -> None:
    """A new command line starts with nothing printed (tests run many in one process)."""
    global _json_printed
    _json_printed = False


class TextParam(click.ParamType[str, Any]):
    """A string option that goes into the ledger or the catalog: trimmed, at most ``limit``
    characters, no control characters; a bad one is a usage error naming the option."""

    name = "text"

    def __init__(self, limit: int, *, empty_ok: bool = False) -> None:
        self.limit = limit
        self.empty_ok = empty_ok

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        given = str(value).strip()
        # click's message starts with the option's name: "Invalid value for '--reason': it ..."
        problem = text.text_problem("it", given, limit=self.limit, empty_ok=self.empty_ok)
        if problem:
            self.fail(problem, param, ctx)
        return given


#: The fewest hex digits of a hash that name an item (``domain.models.item_prefix``): no
#: output cuts a hash shorter, so any hash shown can be given back to a command.
PREFIX_DIGITS = 8


class ItemRef(click.ParamType[str, Any]):
    """An item: its SHA-256 or at least 8 hex digits of it (``domain.models.item_prefix``); a
    bad one is a usage error naming what was given."""

    name = "item"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> str:
        prefix = item_prefix(str(value))
        if prefix is None:
            self.fail(f"{str(value).strip()!r} is not an item: give a SHA-256 or at least 8 hex "
                      "digits of one", param, ctx)
        return prefix


def _default_actor() -> str:
    return os.environ.get("INGESTD_ACTOR") or getpass.getuser()


def _check_actor(ctx: click.Context, param: click.Parameter, value: str) -> str:
    value = value.strip()
    field = "INGESTD_ACTOR" if (ctx.get_parameter_source(param.name or "")
                                == click.core.ParameterSource.DEFAULT
                                and os.environ.get("INGESTD_ACTOR")) else "--by"
    problem = text.text_problem(field, value, limit=text.ACTOR_MAX)
    if problem:
        raise click.BadParameter(problem, ctx=ctx, param=param)
    return value


def print_json_list(key: str, records: Iterable[Any]) -> int:
    """``{key: [records...]}`` exactly as :func:`print_json` writes it, one record at a time,
    so a listing of any length is written in constant memory. Returns the count."""
    out = sys.stdout
    out.write("{\n  " + json.dumps(key) + ": [")
    count = 0
    for record in records:
        text = json.dumps(record, indent=2, ensure_ascii=False, default=str)
        out.write(("\n" if count == 0 else ",\n") + textwrap.indent(text, "    "))
        count += 1
    out.write("\n  ]\n}\n" if count else "]\n}\n")
    return count


#: The widest a column of :func:`print_rows` gets (the last one is never cut).
ROW_CELL_MAX = 40


def _cell(value: str) -> str:
    # Names come from recorders: never let one send control characters to a terminal.
    return value if value.isprintable() else "".join(
        c if c.isprintable() else "\ufffd" for c in value)


def print_rows(header: Sequence[str], pages: Iterable[Sequence[Sequence[str]]]) -> int:
    """A plain table written page by page as the pages come: the first page sets the column
    widths (cells beyond them are cut with an ellipsis, the last column never is). For
    listings of any length, which a rich Table would hold whole to measure. Returns the
    number of rows."""
    out = sys.stdout
    widths: list[int] | None = None
    count = 0
    for page in pages:
        rows = [[_cell(v) for v in row] for row in page]
        if widths is None:
            widths = [min(ROW_CELL_MAX, max([cell_len(h), *(cell_len(r[i]) for r in rows)]))
                      for i, h in enumerate(header)]
            out.write(_row_line(header, widths) + "\n")
            out.write("  ".join("─" * w for w in widths) + "\n")
        out.write("".join(_row_line(r, widths) + "\n" for r in rows))
        count += len(rows)
    if widths is None:
        out.write("  ".join(header) + "\n")
    return count


def _row_line(row: Sequence[str], widths: Sequence[int]) -> str:
    cells = []
    last = len(widths) - 1
    for i, (value, width) in enumerate(zip(row, widths, strict=True)):
        if i == last:
            cells.append(value)
            continue
        size = cell_len(value)
        if size > width:
            value = set_cell_size(value, width - 1) + "…"
        elif size < width:
            value += " " * (width - size)
        cells.append(value)
    return "  ".join(cells).rstrip()


def actor_option(func: F) -> F:
    return click.option(
        "--by", "actor", default=_default_actor, callback=_check_actor,
        show_default="the login name", help="Who does this (recorded in the ledger).",
    )(func)


def esc(value: Any) -> str:
    """A value for rich markup, printed as it is: markup escaped, and anything a terminal
    would act on (escape sequences, carriage returns) written as an escape."""
    from rich.markup import escape

    return escape(text.printable(str(value))) if value is not None else ""


def human_size(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def shown_time(moment: datetime | str | None, tz: tzinfo, *, none: str = "") -> str:
    """A time as a person reads it: in ``tz`` (the station's ``recorder_timezone``), to the
    second, with its offset (``2026-11-01 01:30:00+08:00``). ``moment`` may be a stored time
    or its RFC 3339 text (as ``--json`` gives it); ``none`` is shown for no time at all."""
    if moment is None or moment == "":
        return none
    if isinstance(moment, str):
        moment = parse_time(moment)
    return local_time(moment, tz)
