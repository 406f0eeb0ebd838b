"""``simulate-recorder``: dock a simulated recorder with generated clips (for demos and drills)."""

from __future__ import annotations

import shutil
from pathlib import Path

import click

from ..domain.models import Recorder
from ..errors import UsageError
from ..simulate import demo_clips, make_recorder
from ..station import Station, system_clock
from ..usecases import registry
from .base import AppContext, cli, console, esc, pass_app, plural

#: The unit simulated recorders are registered to: what tells them from real ones.
DEMO_UNIT = "demo"


@cli.command("simulate-recorder")
@click.argument("serial", default="DEMO-0001")
@click.option("--clips", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option("--register/--no-register", default=True, show_default=True,
              help="Register the recorder (to a demo officer) if it is not registered.")
@click.option("--next-demo", "next_demo", is_flag=True,
              help="Dock another demo recorder: the first DEMO-NNNN serial not docked under "
                   "the watched folder (instead of SERIAL).")
@click.option("--into-registered", is_flag=True,
              help="Dock it even though SERIAL is registered to a real officer: the generated "
                   "clips become that officer's evidence.")
@pass_app
@click.pass_context
def simulate_recorder(ctx: click.Context, app: AppContext, serial: str, clips: int,
                      register: bool, next_demo: bool, into_registered: bool) -> None:
    """Dock a simulated recorder under the watched mount root (HOME/docks/SERIAL)."""
    root = app.settings.watch_root
    if root is None:
        raise UsageError("docks.watch_root is not configured: nowhere to dock a folder")
    if next_demo and ctx.get_parameter_source("serial") != click.core.ParameterSource.DEFAULT:
        raise UsageError("--next-demo picks the serial itself: give it without SERIAL")
    station = app.station()
    if next_demo:
        serial = _next_demo_serial(station, root)
    with station.catalog.read() as tx:
        known = tx.recorder(serial)
    if known is not None and known.unit != DEMO_UNIT and not into_registered:
        # Generated clips in a real recorder's folder would be taken as its officer's evidence.
        raise UsageError(
            f"recorder {serial} is registered to {known.officer} ({known.officer_id}), not to a "
            "demo officer; nothing was written. Use another serial, or --into-registered to "
            "dock simulated clips as theirs")
    if register:
        registry.register(station, Recorder(serial=serial, officer="Demo Officer",
                                            officer_id="D001", unit=DEMO_UNIT),
                          actor="simulate-recorder", only_if_new=True)
    staging = root / f".{serial}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    make_recorder(staging, serial=serial, clips=demo_clips(system_clock(), clips),
                  identity_file=app.settings.docks.identity_file)
    target = root / serial
    if target.exists():
        # Docking again: add the new clips beside what is there.
        for src in sorted((staging / "DCIM" / "100MEDIA").iterdir()):
            dest = target / "DCIM" / "100MEDIA" / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(src, dest)
        shutil.rmtree(staging)
    else:
        staging.rename(target)  # appears whole, as a plugged-in recorder does
    console.print(f"docked simulated recorder {esc(serial)} with {plural(clips, 'clip')} at "
                  f"{esc(target)}")


def _next_demo_serial(station: Station, root: Path) -> str:
    """The first ``DEMO-NNNN`` not docked under ``root`` and not registered to a real
    officer: each demo dock is then another recorder, not the same one again."""
    with station.catalog.read() as tx:
        for n in range(1, 10_000):
            serial = f"DEMO-{n:04d}"
            known = tx.recorder(serial)
            if (root / serial).exists() or (known is not None and known.unit != DEMO_UNIT):
                continue
            return serial
    raise UsageError(f"every demo serial is docked under {root}: remove some of them")
