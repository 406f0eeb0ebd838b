"""``ingestd keys``: the station key (create it, show its fingerprint and the keys the
ledger proves, rotate it)."""

from __future__ import annotations

from ..usecases.keys import create_key, key_report, rotate_key
from .base import (
    AppContext,
    cli,
    console,
    esc,
    json_option,
    pass_app,
    print_json,
    shown_time,
)


@cli.group()
def keys() -> None:
    """The station's Ed25519 signing key."""


@keys.command("init")
@pass_app
def keys_init(app: AppContext) -> None:
    """Create the station key if there is none (never replaces one)."""
    folder = app.settings.keys_path
    key = create_key(folder)
    console.print(f"created station key {key.key_id} in {esc(folder)}")


@keys.command("show")
@json_option
@pass_app
def keys_show(app: AppContext, as_json: bool) -> None:
    """The station's public key, the pinned fingerprint, and every key the ledger vouches for.

    Write the pinned fingerprint down: it proves the ledger's first key, and through it every
    later one, whatever the catalog says.
    """
    report = key_report(app.station(read_only=True))
    if as_json:
        print_json(report.to_json())
        return
    console.print(f"station {esc(report.station)}: key [bold]{report.key_id}[/]"
                  + ("" if report.vouched else " [red](not vouched for by the ledger)[/]"))
    console.print(f"public key (Ed25519, hex): {report.public_key}")
    if report.pinned_fingerprint:
        console.print("pinned fingerprint of the ledger's first key (SHA-256; write it down):")
        groups = _grouped(report.pinned_fingerprint).split()
        for half in (groups[:8], groups[8:]):  # two short lines: read out and copied by hand
            console.print(f"  [bold]{' '.join(half)}[/]")
    else:
        console.print("[red]no pinned fingerprint[/]: run `ingestd init` to pin one")
    console.print("keys the ledger vouches for:")
    for k in report.trusted:
        span = (f"entries {k.since_seq}..{k.retired_seq}, retired "
                f"{shown_time(k.retired_at, app.tz, none='-')}"
                if k.retired_seq else f"from entry {k.since_seq}, in use")
        console.print(f"  {k.key_id}  {esc(k.station or '-')}  {span}")


def _grouped(fingerprint: str) -> str:
    """Groups of four hex digits, easier to read out and copy by hand."""
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))


@keys.command("rotate")
@pass_app
def keys_rotate(app: AppContext) -> None:
    """Replace the station key. The change is a ledger entry signed by the old key; the old
    private key is deleted, and an entry signed with it afterwards is a discrepancy."""
    rotation = rotate_key(app.station(), actor="ingestd")
    if rotation.resumed:
        console.print("finished a rotation that had stopped before its key was in place; "
                      "run `keys rotate` again for a new key")
        return
    console.print(f"rotated: {rotation.old_key_id} -> {rotation.new_key_id} (the old private "
                  "key is deleted)")
