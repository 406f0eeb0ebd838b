"""The ledger proves its own keys: the first by its genesis entry and a fingerprint pinned
outside the catalog, every later one by a rotation signed with the key before it. Whoever can
write the catalog cannot bring in a key of their own, and a key retired or replaced signs
nothing more."""

from __future__ import annotations

import errno
import hashlib
import json
from pathlib import Path

import pytest
from conftest import (
    SERIAL,
    Clips,
    build_recorder,
    every_label,
    ledger_problems,
    run_cli,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingestd.domain.models import LedgerEntry
from ingestd.integrity.ledger import from_json, seal, to_json
from ingestd.integrity.signing import StationKey
from tests.support import catalog

pytestmark = pytest.mark.integration

MEDIA = "DCIM/100MEDIA"


@pytest.fixture
def busy_home(home: Path, tmp_path: Path, clips: Clips) -> Path:
    """A station with two items and a label."""
    rec = build_recorder(tmp_path / "rec", {f"{MEDIA}/A.MP4": clips.a, f"{MEDIA}/B.MP4": clips.b})
    assert run_cli(home, "ingest", rec, "--serial", SERIAL).exit_code == 0
    labelled = run_cli(home, "label", clips.a.sha256[:10], "--case", "C-2026-1", "--party", "Li")
    assert labelled.exit_code == 0, labelled.stderr
    assert run_cli(home, "ledger", "verify").exit_code == 0
    return home


def entries_of(home: Path) -> list[LedgerEntry]:
    return [from_json(e) for e in catalog.ledger_entries(home)]


def write_entries(home: Path, entries: list[LedgerEntry]) -> None:
    """Replace the ledger in the catalog and the mirror, as a careful forger would."""
    catalog.write_entries(home, entries, only=True)
    (home / "ledger.jsonl").write_text(
        "".join(json.dumps(to_json(e), ensure_ascii=False, sort_keys=True) + "\n"
                for e in entries), encoding="utf-8")


def forge(home: Path, rogue: StationKey, *, start: int, party: str) -> None:
    """Seal every entry from ``start`` on again with ``rogue`` (a genesis entry then carries
    the rogue key), with another party on the label; make the catalog agree."""
    entries = entries_of(home)
    out = entries[:start - 1]
    prev = out[-1].entry_hash if out else "0" * 64
    for e in entries[start - 1:]:
        data = dict(e.data)
        if e.kind == "genesis":
            data["public_key"] = rogue.public.hex
        if e.kind == "labelled":
            data["party"] = party
        forged = seal(seq=e.seq, at=e.at, station=e.station, actor=e.actor, kind=e.kind,
                      item=e.item, data=data, prev_hash=prev, key=rogue)
        out.append(forged)
        prev = forged.entry_hash
    write_entries(home, out)
    catalog.forge_labels(home, party=party)
    catalog.insert_key(home, rogue)


def genesis_fingerprint(home: Path) -> str:
    (genesis,) = catalog.ledger_entries(home, "genesis")
    return hashlib.sha256(bytes.fromhex(genesis["data"]["public_key"])).hexdigest()


@pytest.mark.parametrize("start", [1, 2], ids=["with-genesis", "after-genesis"])
def test_a_ledger_sealed_again_with_a_key_added_to_the_catalog_is_found(
        busy_home: Path, clips: Clips, start: int) -> None:
    count = len(entries_of(busy_home))
    forge(busy_home, StationKey.generate(), start=start, party="Mallory")
    code, found = ledger_problems(busy_home)
    assert code == 1
    if start == 1:
        assert ("pin_mismatch", 1) in found  # the genesis key is not the pinned one
    # every forged entry is signed by a key the chain does not vouch for
    assert [seq for kind, seq in found if kind == "unknown_key" and seq] == list(
        range(2, count + 1))
    if start == 1:
        assert ("unknown_key", None) in found  # nor is this station's own key, then
    # `verify` does not vouch for the forged label either
    verdict = run_cli(busy_home, "verify", "--hash", clips.a.sha256)
    assert verdict.exit_code == 1
    assert "NO MATCH" in verdict.stdout and "no valid signature" in verdict.stdout
    assert len(entries_of(busy_home)) == count  # nothing was lost or added


def test_init_pins_the_first_key_and_keys_show_prints_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    made = run_cli(home, "init")
    assert made.exit_code == 0, made.stderr
    pin = (home / "keys" / "station.pin").read_text().strip()
    assert pin == genesis_fingerprint(home)
    assert "pinned the ledger's first key" in made.stdout and pin in made.stdout
    assert oct((home / "keys" / "station.pin").stat().st_mode & 0o777) == "0o640"

    shown = run_cli(home, "keys", "show", "--json").json()
    assert shown["pinned_fingerprint"] == pin == shown["fingerprint"]
    assert shown["vouched"] is True
    assert [(k["key_id"], k["since_seq"], k["retired_seq"]) for k in shown["trusted"]] == [
        (shown["key_id"], 1, None)]
    raw = run_cli(home, "keys", "show").stdout
    text = " ".join(raw.split())
    assert " ".join(pin[i:i + 4] for i in range(0, 64, 4)) in text
    assert f"  {' '.join(pin[i:i + 4] for i in range(0, 32, 4))}\n" in raw
    assert "write it down" in text


def test_an_old_home_is_pinned_by_init_from_its_genesis_entry(busy_home: Path) -> None:
    pin_file = busy_home / "keys" / "station.pin"
    pin = pin_file.read_text().strip()
    pin_file.unlink()  # a home made before the pin existed
    # Even with another key in place: the pin comes from the ledger, not from the key file.
    keys = busy_home / "keys"
    original = (keys / "station.key").read_bytes()
    (keys / "station.key").unlink()
    StationKey.generate().save(keys)
    code, found = ledger_problems(busy_home)
    assert code == 1 and ("not_pinned", None) in found

    again = run_cli(busy_home, "init")
    assert again.exit_code == 0, again.stderr
    assert "pinned the ledger's first key" in again.stdout
    assert pin_file.read_text().strip() == pin == genesis_fingerprint(busy_home)
    # the replaced key is not vouched for
    assert ledger_problems(busy_home) == (1, [("unknown_key", None)])

    (keys / "station.key").write_bytes(original)
    assert ledger_problems(busy_home) == (0, [])
    assert "everything was in place" in run_cli(busy_home, "init").stdout


def test_a_replaced_station_key_refuses_to_sign(busy_home: Path, clips: Clips,
                                                tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    with (busy_home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                 'prefix = "bwc"\nsame_filesystem_ok = true\n')
    keys = busy_home / "keys"
    (keys / "station.key").unlink()
    StationKey.generate().save(keys)
    before = entries_of(busy_home)
    mirror = (busy_home / "ledger.jsonl").read_bytes()

    refused = run_cli(busy_home, "label", clips.b.sha256[:10], "--case", "C-9", "--party", "X")
    assert refused.exit_code == 7
    message = " ".join(refused.stderr.split())
    assert "is not the key the ledger vouches for station station-01" in message
    assert "refusing to sign" in message
    assert entries_of(busy_home) == before
    assert (busy_home / "ledger.jsonl").read_bytes() == mirror
    assert len(every_label(busy_home)) == 1
    # Nor is anything signed outside the ledger: no checkpoint, no copy with its manifest.
    for command in ("checkpoint", "replicate"):
        refused = run_cli(busy_home, command)
        assert refused.exit_code == 7, (command, refused.stdout, refused.stderr)
        assert "refusing to sign" in " ".join(refused.stderr.split())
    assert [p for p in nas.rglob("*") if p.is_file()] == []
    assert entries_of(busy_home) == before

    # Reading still works: what the ledger proves is shown, nothing is signed.
    shown = run_cli(busy_home, "show", clips.a.sha256, "--json")
    assert shown.exit_code == 0
    assert run_cli(busy_home, "verify", "--hash", clips.a.sha256).exit_code == 0
    assert run_cli(busy_home, "keys", "show", "--json").json()["vouched"] is False
    assert ledger_problems(busy_home) == (1, [("unknown_key", None)])


def test_rotation_retires_the_old_key_for_good(busy_home: Path, clips: Clips,
                                               tmp_path: Path) -> None:
    keys = busy_home / "keys"
    old_pem = (keys / "station.key").read_bytes()
    old_id = run_cli(busy_home, "keys", "show", "--json").json()["key_id"]
    rotated = run_cli(busy_home, "keys", "rotate")
    assert rotated.exit_code == 0, rotated.stderr
    # The retired private key does not stay on the station.
    assert sorted(p.name for p in keys.iterdir()) == ["station.key", "station.pin",
                                                       "station.pub"]
    assert old_pem not in {p.read_bytes() for p in keys.iterdir()}
    shown = run_cli(busy_home, "keys", "show", "--json").json()
    rotation = entries_of(busy_home)[-1]
    assert rotation.kind == "key_rotated" and rotation.key_id == old_id
    assert [(k["key_id"], k["since_seq"], k["retired_seq"]) for k in shown["trusted"]] == [
        (old_id, 1, rotation.seq), (shown["key_id"], rotation.seq + 1, None)]
    assert shown["pinned_fingerprint"] == genesis_fingerprint(busy_home)  # the pin stays
    assert ledger_problems(busy_home) == (0, [])

    # Someone who kept the old key appends an entry signed with it: caught.
    private = serialization.load_pem_private_key(old_pem, password=None)
    assert isinstance(private, Ed25519PrivateKey)
    old = StationKey(private)
    entries = entries_of(busy_home)
    late = seal(seq=rotation.seq + 1, at=rotation.at, station="station-01", actor="mallory",
                kind="labelled", item=clips.b.sha256,
                data={"case": "C-X", "party": "Y", "officer": "Z"},
                prev_hash=rotation.entry_hash, key=old)
    write_entries(busy_home, [*entries, late])
    code, found = ledger_problems(busy_home)
    assert code == 1
    assert ("retired_key", late.seq) in found
    assert run_cli(busy_home, "verify", "--hash", clips.b.sha256).exit_code == 1


def test_init_deletes_a_retired_private_key_an_earlier_rotation_kept(busy_home: Path) -> None:
    keys = busy_home / "keys"
    old_pem = (keys / "station.key").read_bytes()
    old_id = run_cli(busy_home, "keys", "show", "--json").json()["key_id"]
    assert run_cli(busy_home, "keys", "rotate").exit_code == 0
    kept = keys / f"station.key.retired-{old_id}"  # what rotation used to leave behind
    kept.write_bytes(old_pem)
    kept.chmod(0o600)
    done = run_cli(busy_home, "init")
    assert done.exit_code == 0
    assert f"deleted the retired private key {old_id}" in done.stdout
    assert not kept.exists()


def test_every_checkpoint_carries_the_pin_and_a_different_one_is_found(
        busy_home: Path, tmp_path: Path) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    with (busy_home / "ingestd.toml").open("a", encoding="utf-8") as fh:
        fh.write(f'\n[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
                 'prefix = "bwc"\nsame_filesystem_ok = true\n')
    sent = run_cli(busy_home, "checkpoint", "--json")
    assert sent.exit_code == 0, sent.stderr
    (checkpoint,) = (nas / "bwc" / "checkpoints").iterdir()
    pin = (busy_home / "keys" / "station.pin").read_text().strip()
    assert json.loads(checkpoint.read_bytes())["checkpoint"]["genesis_fingerprint"] == pin
    verified = run_cli(busy_home, "ledger", "verify", "--offsite", "--json")
    assert verified.exit_code == 0, verified.stdout

    # The whole home rewritten by someone holding a key of their own, pin file included:
    # locally consistent, but the checkpoints off-site remember the first key.
    rogue = StationKey.generate()
    forge(busy_home, rogue, start=1, party="Mallory")
    (busy_home / "keys" / "station.pin").write_text(rogue.public.fingerprint + "\n")
    found = run_cli(busy_home, "ledger", "verify", "--offsite", "--json").json()["problems"]
    assert "pin_mismatch" in [p["kind"] for p in found if p["detail"].startswith("nas/")]


def test_an_item_whose_retention_no_entry_states_is_found(busy_home: Path,
                                                          clips: Clips) -> None:
    """As in a home from before `stored` entries carried the retention they set: the
    station's own key seals the chain again with B's `stored` entry lacking it."""
    key = StationKey.load(busy_home / "keys")
    entries = entries_of(busy_home)
    stored = next(e for e in entries if e.kind == "stored" and e.item == clips.b.sha256)
    out = entries[:stored.seq - 1]
    for e in entries[stored.seq - 1:]:
        data = {k: v for k, v in e.data.items() if not (e is stored and k == "retention")}
        out.append(seal(seq=e.seq, at=e.at, station=e.station, actor=e.actor, kind=e.kind,
                        item=e.item, data=data, prev_hash=out[-1].entry_hash, key=key))
    write_entries(busy_home, out)
    assert ledger_problems(busy_home) == (1, [("unbacked_retention", None)])


def test_a_rotation_whose_mirror_write_fails_keeps_the_key_the_ledger_vouches_for(
        busy_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The rotation entry commits; then the mirror cannot be written (a full disk). The new key
    # is the only one the ledger lets sign: it must not be thrown away with the error.
    from ingestd.custody import Custody

    def full(self: Custody, committed: object = None) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patched:
        patched.setattr(Custody, "_sync", full)
        failed = run_cli(busy_home, "keys", "rotate")
    assert failed.exit_code != 0
    keys = busy_home / "keys"
    assert (keys / "station.key.new").is_file(), "the vouched-for key was deleted"
    assert entries_of(busy_home)[-1].kind == "key_rotated"

    finished = run_cli(busy_home, "keys", "rotate")  # takes up what was left, nothing new
    assert finished.exit_code == 0, finished.stderr
    assert "finished a rotation" in finished.stdout
    assert sorted(p.name for p in keys.iterdir()) == ["station.key", "station.pin",
                                                       "station.pub"]
    signed = run_cli(busy_home, "devices", "add", "BWC-9", "--officer", "Li", "--officer-id", "9")
    assert signed.exit_code == 0, signed.stderr  # the station signs with the vouched key
    assert ledger_problems(busy_home) == (0, [])
