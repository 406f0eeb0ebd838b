"""The root group imports a command's module only when the command runs; its table of
commands (``ingestd/cli/__init__.py``) names every command, the module that defines it and
the short help ``ingestd --help`` shows for it, so that ``--help`` imports none of them."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ingestd.cli.base import cli

CLI_PACKAGE = Path(__file__).resolve().parents[2] / "ingestd" / "cli"
#: Modules of the package that define no command.
NOT_COMMANDS = {"__init__", "__main__", "base"}


def every_command() -> dict[str, click.Command]:
    """Every command the modules define, each imported."""
    for path in sorted(CLI_PACKAGE.glob("*.py")):
        if path.stem not in NOT_COMMANDS:
            importlib.import_module(f"ingestd.cli.{path.stem}")
    return dict(cli.commands)


def test_the_table_names_every_command_and_its_module() -> None:
    commands = every_command()
    assert sorted(cli.lazy) == sorted(commands)
    for name, entry in cli.lazy.items():
        callback = commands[name].callback
        assert callback is not None
        assert callback.__module__ == f"ingestd.cli.{entry.module}", name


def test_the_table_gives_each_command_its_own_short_help() -> None:
    commands = every_command()
    for name, entry in cli.lazy.items():
        shown = click.Command(name, help=entry.short_help)
        for limit in range(10, 240):
            assert shown.get_short_help_str(limit) == commands[name].get_short_help_str(limit), (
                f"{name}: set its short help in ingestd/cli/__init__.py to "
                f"{commands[name].get_short_help_str(10**6)!r}")


def test_help_lists_the_commands_as_click_would() -> None:
    every_command()
    lazy_help = CliRunner().invoke(cli, ["--help"], terminal_width=80).output
    # The same group as click's own, with every command imported.
    plain = click.Group(name=cli.name, params=cli.params, help=cli.help, epilog=cli.epilog,
                        context_settings=cli.context_settings, commands=cli.commands)
    assert lazy_help == CliRunner().invoke(plain, ["--help"], terminal_width=80).output
    assert "status" in lazy_help and "simulate-recorder" in lazy_help


def test_help_and_an_unknown_command_import_no_command_module() -> None:
    probe = (
        "import json, sys\n"
        "from ingestd.cli import main\n"
        "sys.argv = ['ingestd', *sys.argv[1:]]\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    code = exc.code\n"
        "print(json.dumps([code, sorted(m for m in sys.modules if m.startswith('ingestd.cli.'))]),"
        " file=sys.stderr)\n")
    for args, code in ((["--help"], 0), (["statu"], 2)):
        done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                              text=True, check=False)
        assert json.loads(done.stderr.splitlines()[-1]) == [code, ["ingestd.cli.base"]]
        if code:
            assert "Did you mean 'status'?" in done.stderr
        else:
            assert "simulate-recorder  Dock a simulated recorder" in done.stdout


def test_the_console_is_made_with_the_terminal_size_it_was_imported_with(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``base.console`` is made when first used, but as if made when ``base`` was imported: a
    COLUMNS set in between (as a test's runner sets it for one command) does not fix its width
    for every later command, which still reads COLUMNS as it is then."""
    from ingestd.cli import base

    monkeypatch.delenv("COLUMNS", raising=False)
    made = base._Deferred(highlight=False)
    monkeypatch.setenv("COLUMNS", "61")
    assert made.width == 61
    monkeypatch.setenv("COLUMNS", "97")
    assert made.width == 97
