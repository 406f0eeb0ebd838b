"""Court packages: ``export`` of a case (one item evicted locally and read back from moto's S3
server), checked by ``verify-export``, by the bagit library's own validation, by the package's
own ``verify_package.py`` in a virtual environment with nothing installed, and by the commands
VERIFY.txt gives a clerk. Then every kind of tampering, and hostile packages (links, ``..``, a
FIFO, a huge file), each caught by both verifiers with its kind; and the refusals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import ClipFile, cli_json, run_cli, sha256_of
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ingestd.integrity import verify_package as layout
from ingestd.usecases.export import verify_commands
from tests.integration.test_replicate import (
    NO_WORM_JOB,
    clips,  # noqa: F401 - the session's three clips
    make_home,
    new_bucket,
    s3_target,
    write_credentials,
)
from tests.support import catalog
from tests.support.servers import S3Endpoint
from tests.support.tsa import LocalTsa

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

CASE = "2026-刑-0042"
PARTY = "张三"
HOSTILE = 'CON .MP4'  # a reserved device name, and a trailing space before the dot


@dataclass
class Made:
    home: Path
    package: Path
    shas: list[str]
    evicted: str
    result: dict[str, Any]
    s3: S3Client
    bucket: str


@pytest.fixture(scope="module")
def s3(moto: S3Endpoint) -> S3Client:
    return moto.client()


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, clips: list[ClipFile],  # noqa: F811
         moto: S3Endpoint, s3: S3Client, tsa: LocalTsa) -> Made:
    """A case of three items on a station with a moto target and a time-stamping authority;
    the first item replicated (read back) and evicted from the local store; a checkpoint
    published (time-stamped); then exported."""
    root = tmp_path_factory.mktemp("export")
    credentials = write_credentials(root, moto)
    bucket = new_bucket(s3)
    stamps = f'\n[timestamping]\nurl = "{tsa.url}"\nca_file = "{tsa.ca_file}"\n'
    home = make_home(root, clips, config=NO_WORM_JOB + '\n[retention]\nlocal_keep = "0s"\n'
                     + stamps)
    home.add_target(s3_target(moto.url, bucket, credentials, readback=True))
    shas = home.shas
    for sha in shas:
        assert run_cli(home.home, "label", sha, "--case", CASE, "--party", PARTY,
                       "--by", "clerk").exit_code == 0
    # two items named alike in a way Windows refuses, and alike but for case
    catalog.forge_item(home.home, shas[1], original_name=HOSTILE)
    (row,) = catalog.raw_rows(home.home, "SELECT recorded_start FROM items WHERE sha256 = ?",
                              shas[1])
    catalog.forge_item(home.home, shas[2], original_name=HOSTILE.lower(),
                       recorded_start=row["recorded_start"])
    # entries signed by two keys: the genesis key, then the one a rotation brings in
    assert run_cli(home.home, "keys", "rotate").exit_code == 0
    sent = cli_json(home.home, "replicate", "--limit", "1")
    evicted = sent["verified"][0]["sha256"]
    swept = cli_json(home.home, "retention")
    assert [e["sha256"] for e in swept["evicted"]] == [evicted]
    assert cli_json(home.home, "checkpoint")["sent"] == ["offsite"]
    package = root / "package"
    result = cli_json(home.home, "export", "--case", CASE, "--out", package,
                      "--approved-by", "Director Li", "--reason", "court order 2026-17",
                      "--requested-by", "Court of Haidian", "--purpose", "court", "--by",
                      "clerk")
    return Made(home=home.home, package=package, shas=shas, evicted=evicted, result=result,
                s3=s3, bucket=bucket)


def verify_export(package: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    done = run_cli(None, "verify-export", package, *args, "--json")
    assert done.exit_code in (0, 1), done
    return done.exit_code, done.json()["problems"]


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python with nothing installed: no ingestd, no cryptography."""
    venv = tmp_path_factory.mktemp("bare") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    probe = subprocess.run([str(python), "-I", "-c", "import cryptography"],
                           capture_output=True, check=False)
    assert probe.returncode != 0, "the bare environment must not see cryptography"
    return python


def standalone(python: Path, package: Path, *args: str) -> tuple[int, list[dict[str, Any]]]:
    script = package / "verify_package.py"
    if not script.is_file() or script.is_symlink():
        script = Path(layout.__file__)
    done = subprocess.run([str(python), "-I", str(script), str(package), "--json", *args],
                          capture_output=True, text=True, timeout=120, check=False,
                          cwd=package.parent)
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)["findings"]


def kinds(problems: list[dict[str, Any]]) -> set[str]:
    return {p["kind"] for p in problems}


# -- a good package ---------------------------------------------------------------------------


def test_the_package_holds_every_item_byte_for_byte_under_readable_windows_safe_names(
        made: Made, clips: list[ClipFile]) -> None:  # noqa: F811
    items = {i["sha256"]: i for i in made.result["items"]}
    assert set(items) == set(made.shas)
    assert items[made.evicted]["source"] == "offsite"
    assert all(items[s]["source"] == "local" for s in made.shas if s != made.evicted)
    for sha, item in items.items():
        assert sha256_of(made.package / item["file"]) == sha
    names = [Path(i["file"]).name for i in items.values()]
    assert len({n.casefold() for n in names}) == 3, names
    same_but_case = sorted(n for n in names if "CON" in n.upper())
    assert len(same_but_case) == 2 and any("~2." in n for n in same_but_case), names
    for name in names:
        assert not set(name) & set('<>:"/\\|?*') and not name.endswith((" ", "."))
        assert name.split(".")[0].strip().upper() not in {"CON", "PRN", "AUX", "NUL"}
        assert len(name) <= 120
    first = items[made.shas[0]]["file"]
    assert "Wang Fang_20260301T" in first, first


def test_the_package_passes_verify_export_and_bagits_own_validation(made: Made) -> None:
    before = _tree(made.package)
    code, problems = verify_export(made.package)
    assert (code, problems) == (0, [])
    assert _tree(made.package) == before, "verification wrote into the package"
    done = subprocess.run([sys.executable, "-m", "bagit", "--validate", str(made.package)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    info = (made.package / "bag-info.txt").read_text(encoding="utf-8")
    for said in (f"Case: {CASE}", f"Party: {PARTY}", "Approved-By: Director Li",
                 "Requested-By: Court of Haidian", "Purpose: court",
                 "Reason: court order 2026-17", "Station: "):
        assert said in info, info


def test_the_package_carries_a_custody_report_a_person_can_read(made: Made) -> None:
    html = made.package / "report" / "custody-report.html"
    pdf = made.package / "report" / "custody-report.pdf"
    tags = (made.package / "tagmanifest-sha256.txt").read_text(encoding="utf-8")
    assert "report/custody-report.html" in tags and "report/custody-report.pdf" in tags
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], capture_output=True,
                          text=True, check=True).stdout
    for said in (CASE, PARTY, "Director Li", "court order 2026-17", "exported",
                 *made.shas):
        assert said in text or said in " ".join(text.split()), said
    page = html.read_text(encoding="utf-8")
    # the export's own entry is in every item's timeline, and the evicted item's too
    assert page.count("exported") >= len(made.shas)
    assert made.evicted in page


def test_the_package_proves_its_own_export_and_agrees_with_the_published_checkpoint(
        made: Made) -> None:
    entries = [json.loads(line) for line in
               (made.package / layout.ENTRIES).read_text(encoding="utf-8").splitlines()]
    (export,) = [e for e in entries if e["kind"] == "exported"]
    assert export["seq"] == made.result["exported_entry"]
    assert export["data"]["approved_by"] == "Director Li"
    assert sorted(export["data"]["items"]) == sorted(made.shas)
    checkpoint = json.loads((made.package / "checkpoint/checkpoint.json").read_bytes())
    assert checkpoint["checkpoint"]["seq"] >= export["seq"]
    assert made.result["published_checkpoint_seq"] is not None
    assert (made.package / layout.CONSISTENCY).is_file()
    # both checkpoints time-stamped, the published one as the ledger recorded its publication
    for stem in (layout.CHECKPOINT, layout.PUBLISHED):
        assert (made.package / f"{stem}.tsr").is_file()
    recorded = [e for e in entries if e["kind"] == "checkpointed"]
    published = json.loads((made.package / f"{layout.PUBLISHED}.json").read_bytes())
    assert [e["data"]["checkpoint"] for e in recorded] == [published["checkpoint"]]
    # every entry about the items, exactly as stored
    stored = {e["seq"]: e for e in catalog.ledger_entries(made.home)}
    for entry in entries:
        if entry["item"] in made.shas:
            assert entry["entry_hash"] == stored[entry["seq"]]["entry_hash"]
    about = {s for s, e in stored.items() if e["item"] in made.shas
             and s <= checkpoint["checkpoint"]["seq"]}
    assert about <= {e["seq"] for e in entries}
    kinds_carried = {e["kind"] for e in entries}
    assert {"genesis", "key_rotated", "labelled", "replicated", "evicted",
            "exported"} <= kinds_carried
    assert len(list((made.package / "keys").iterdir())) == 2
    assert len({e["key_id"] for e in entries}) == 2


def test_the_first_key_is_checked_against_the_fingerprint_the_owner_gives(
        made: Made, bare_python: Path) -> None:
    pin = (made.home / "keys" / "station.pin").read_text("ascii").strip()
    assert f"Station-Key-Fingerprint: {pin}" in (made.package / "bag-info.txt").read_text()
    command = next(c for c in verify_commands((made.package / "VERIFY.txt").read_text("utf-8"))
                   if c.startswith("openssl pkey -pubin"))
    printed = subprocess.run(command, shell=True, cwd=made.package, capture_output=True,
                             text=True, check=True).stdout
    assert printed.split()[0] == pin, printed
    assert verify_export(made.package, "--fingerprint", pin) == (0, [])
    assert standalone(bare_python, made.package, "--fingerprint", pin) == (0, [])
    other = "ab" * 32
    code, problems = verify_export(made.package, "--fingerprint", other)
    assert code == 1 and "pin_mismatch" in kinds(problems), problems
    code, findings = standalone(bare_python, made.package, "--fingerprint", other)
    assert code == 1 and "pin_mismatch" in kinds(findings), findings


def test_the_export_is_shown_with_each_item(made: Made) -> None:
    for sha in made.shas:
        shown = cli_json(made.home, "show", sha)["history"]
        exports = [h for h in shown if h["kind"] == "exported"
                   and h["data"]["package"] == made.result["package_id"]]
        assert len(exports) == 1, shown
        assert exports[0]["actor"] == "clerk"


def test_the_standalone_verifier_passes_it_with_nothing_installed(
        made: Made, bare_python: Path) -> None:
    assert standalone(bare_python, made.package) == (0, [])


def test_the_commands_verify_txt_gives_a_clerk_all_succeed(made: Made) -> None:
    text = (made.package / "VERIFY.txt").read_text(encoding="utf-8")
    commands = verify_commands(text)
    assert any(c.startswith("sha256sum -c manifest-sha256.txt") for c in commands)
    assert sum("openssl pkeyutl -verify" in c for c in commands) >= 5  # checkpoint, entry, 3
    assert sum(c.startswith("openssl ts -verify") for c in commands) == 2
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for command in commands:
        done = subprocess.run(command, shell=True, cwd=made.package, capture_output=True,
                              text=True, timeout=120, env=env, check=False)
        assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "FAILED" not in done.stdout, (command, done.stdout)


def test_the_verify_txt_signature_commands_fail_on_a_changed_body(
        made: Made, tmp_path: Path) -> None:
    copy = tmp_path / "p"
    shutil.copytree(made.package, copy, symlinks=True)
    body = copy / "checkpoint/checkpoint.body.json"
    body.write_bytes(body.read_bytes().replace(b'"seq":', b'"seq": '))
    command = next(c for c in verify_commands((copy / "VERIFY.txt").read_text("utf-8"))
                   if "checkpoint.body.json" in c)
    done = subprocess.run(command, shell=True, cwd=copy, capture_output=True, check=False)
    assert done.returncode != 0


def test_export_items_serves_a_job_and_tells_its_progress(made: Made, tmp_path: Path) -> None:
    from ingestd.usecases.export import export_items

    heard: list[tuple[str, int, int]] = []
    station = catalog_station(made.home)
    try:
        sha = made.shas[1]
        result = export_items(station, items=[sha], out=tmp_path / "one",
                              approved_by="Director Li", reason="archive of a closed case",
                              requested_by=None, purpose="archive", case=CASE, actor="job",
                              progress=lambda what, done, total: heard.append((what, done,
                                                                               total)))
    finally:
        station.close()
    assert [i.sha256 for i in result.items] == [sha]
    total = result.size
    dones = [d for _w, d, _t in heard]
    assert dones == sorted(dones) and dones[-1] == total and {t for *_x, t in heard} == {total}
    assert verify_export(tmp_path / "one") == (0, [])
    assert "Requested-By" not in (tmp_path / "one" / "bag-info.txt").read_text("utf-8")


def test_an_export_that_fails_after_its_entry_leaves_no_package_and_says_which_entry(
        made: Made, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingestd.errors import IntegrityError
    from ingestd.usecases import export as export_uc

    def no_checkpoint(station: Any) -> Any:
        raise IntegrityError("the station key cannot sign now")

    monkeypatch.setattr(export_uc, "sign_checkpoint", no_checkpoint)
    station = catalog_station(made.home)
    try:
        with pytest.raises(IntegrityError) as failed:
            export_uc.export_items(station, items=[made.shas[1]], out=tmp_path / "half",
                                   approved_by="Li", reason="copy")
    finally:
        station.close()
    seq = catalog.ledger_entries(made.home, "exported")[-1]["seq"]
    assert "no package was written" in failed.value.message
    assert f"recorded as entry {seq}" in failed.value.message
    assert list(tmp_path.iterdir()) == []


def catalog_station(home: Path) -> Any:
    from ingestd import config as config_mod
    from ingestd.station import Station

    return Station.open(config_mod.load(home / "ingestd.toml"))


# -- tampered packages --------------------------------------------------------------------------


def _payload(package: Path) -> Path:
    return sorted((package / "data").iterdir())[0]


def _flip_byte(package: Path) -> None:
    path = _payload(package)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _remove_file(package: Path) -> None:
    _payload(package).unlink()


def _add_file(package: Path) -> None:
    (package / "data" / "extra.mp4").write_bytes(b"not evidence")


def _edit_bag_info(package: Path) -> None:
    path = package / "bag-info.txt"
    path.write_text(path.read_text("utf-8").replace("Director Li", "Director Wu"), "utf-8")


def _edit_bag_info_and_its_manifests(package: Path) -> None:
    """bag-info.txt changed and the tag manifests made again: only the signed export entry
    still tells."""
    _edit_bag_info(package)
    _remanifest(package)


def _remanifest(package: Path, signer: Ed25519PrivateKey | None = None) -> None:
    """The manifests made again, and (with ``signer``) the tag manifest signed again."""
    import bagit

    cwd = os.getcwd()
    try:
        bagit.Bag(str(package)).save()
    finally:
        os.chdir(cwd)
    if signer is not None:
        (package / layout.TAG_SIGNATURE).write_bytes(
            signer.sign((package / layout.TAG_MANIFEST).read_bytes()))


def _remove_tag_file_and_remanifest(package: Path) -> None:
    """A file beside the payload removed (the custody report) and the tag manifests made
    again: only the station's signature of the tag manifest still tells."""
    (package / "report" / "custody-report.pdf").unlink()
    _remanifest(package)


def _manifest_no_manifest(package: Path) -> None:
    """An item's signed manifest replaced by JSON that is none, and the manifests remade."""
    path = next(p for p in sorted((package / "manifests").glob("*.json"))
                if not p.name.endswith(".body.json"))
    path.write_text("[]", "utf-8")
    _remanifest(package)


def _entries(package: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in
            (package / layout.ENTRIES).read_text("utf-8").splitlines()]


def _write_entries(package: Path, entries: list[dict[str, Any]]) -> None:
    (package / layout.ENTRIES).write_text(
        "".join(json.dumps(e, ensure_ascii=False, sort_keys=True) + "\n" for e in entries),
        "utf-8")


def _edit_entry(package: Path) -> None:
    entries = _entries(package)
    label = next(e for e in entries if e["kind"] == "labelled")
    label["data"]["case"] = "2026-刑-0099"
    _write_entries(package, entries)
    _remanifest(package)


def _edit_signature(package: Path) -> None:
    entries = _entries(package)
    target = next(e for e in entries if e["kind"] == "replicated")
    sig = bytearray(bytes.fromhex(target["signature"]))
    sig[0] ^= 0x01
    target["signature"] = sig.hex()
    _write_entries(package, entries)
    (package / layout.entry_signature_path(target["seq"])).write_bytes(bytes(sig))
    _remanifest(package)


def _proof_of_another(package: Path) -> None:
    path = package / layout.PROOFS
    doc = json.loads(path.read_bytes())
    seqs = sorted(doc["proofs"], key=int)
    doc["proofs"][seqs[-2]] = doc["proofs"][seqs[1]]
    path.write_text(json.dumps(doc), "utf-8")
    _remanifest(package)


def _swap_key(package: Path) -> None:
    """A fresh Ed25519 key put in for the station's, and everything signed again with it."""
    fresh = Ed25519PrivateKey.generate()
    raw = fresh.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    for pem in (package / "keys").iterdir():
        pem.write_bytes(layout.public_pem(raw))
    entries = _entries(package)
    for e in entries:
        body = layout.canonical_bytes(layout.entry_body(e))
        sig = fresh.sign(body)
        e["signature"] = sig.hex()
        (package / layout.entry_signature_path(e["seq"])).write_bytes(sig)
    _write_entries(package, entries)
    for doc_path in [package / "checkpoint/checkpoint.json",
                     *sorted((package / "manifests").glob("*[0-9a-f].json"))]:
        doc = json.loads(doc_path.read_bytes())
        key = "checkpoint" if "checkpoint" in doc else "manifest"
        sig = fresh.sign(layout.canonical_bytes(doc[key]))
        doc["signature"] = sig.hex()
        doc_path.write_bytes(layout.canonical_bytes(doc))
        doc_path.with_name(doc_path.name[:-5] + ".sig").write_bytes(sig)
    _remanifest(package)


def _edit_token(package: Path) -> None:
    path = package / f"{layout.CHECKPOINT}.tsr"
    data = bytearray(path.read_bytes())
    data[-40] ^= 0x01  # inside the authority's signature
    path.write_bytes(bytes(data))
    _remanifest(package)


TAMPERS: dict[str, tuple[Callable[[Path], None], str]] = {
    "one payload byte": (_flip_byte, "payload_mismatch"),
    "a removed file": (_remove_file, "package_file_missing"),
    "an added file": (_add_file, "package_file_unexpected"),
    "an edited bag-info.txt": (_edit_bag_info, "tag_file_mismatch"),
    "bag-info.txt and its tag manifests": (_edit_bag_info_and_its_manifests,
                                           "bag_info_differs"),
    "an edited ledger entry": (_edit_entry, "edited"),
    "an edited signature": (_edit_signature, "bad_signature"),
    "a proof for another entry": (_proof_of_another, "proof_invalid"),
    "a key swapped for another": (_swap_key, "bad_signature"),
    "an edited time-stamp token": (_edit_token, "timestamp_invalid"),
    "a tag file removed and the manifests made again": (_remove_tag_file_and_remanifest,
                                                        "tag_manifest_unsigned"),
    "a manifest that is none": (_manifest_no_manifest, "bad_signature"),
}


@pytest.fixture(params=sorted(TAMPERS))
def tampered(request: pytest.FixtureRequest, made: Made,
             tmp_path: Path) -> Iterator[tuple[Path, str]]:
    copy = tmp_path / "package"
    shutil.copytree(made.package, copy, symlinks=True)
    change, kind = TAMPERS[request.param]
    change(copy)
    yield copy, kind


def test_a_tampered_package_is_caught_by_both_verifiers_with_its_kind(
        tampered: tuple[Path, str], bare_python: Path) -> None:
    package, kind = tampered
    code, problems = verify_export(package)
    assert code == 1 and kind in kinds(problems), problems
    code, findings = standalone(bare_python, package)
    assert code == 1 and kind in kinds(findings), findings


def test_a_package_signed_again_end_to_end_holds_only_without_the_owners_fingerprint(
        made: Made, tmp_path: Path, bare_python: Path) -> None:
    # Everything a package proves, it proves from its first key: a forger who re-makes every
    # key, entry, proof and checkpoint (and drops the time-stamps, which would tell) makes a
    # package that checks against itself. The fingerprint the station's owner gives the
    # court is what tells.
    copy = tmp_path / "package"
    shutil.copytree(made.package, copy, symlinks=True)
    signer = _resign_end_to_end(copy)
    # the authority's time-stamps are over the checkpoints as the station signed them
    code, problems = verify_export(copy)
    assert code == 1 and kinds(problems) == {"timestamp_invalid"}, problems
    code, findings = standalone(bare_python, copy)
    assert code == 1 and kinds(findings) == {"timestamp_invalid"}, findings
    # without them, the package holds against itself
    for stem in (layout.CHECKPOINT, layout.PUBLISHED):
        (copy / f"{stem}.tsr").unlink()
    _remanifest(copy, signer)
    assert verify_export(copy) == (0, [])
    pin = (made.home / "keys" / "station.pin").read_text("ascii").strip()
    code, problems = verify_export(copy, "--fingerprint", pin)
    assert code == 1 and "pin_mismatch" in kinds(problems), problems
    code, findings = standalone(bare_python, copy, "--fingerprint", pin)
    assert code == 1 and "pin_mismatch" in kinds(findings), findings


def _resign_end_to_end(package: Path) -> Ed25519PrivateKey:
    from ingestd.integrity import merkle

    def raw_of(key: Ed25519PrivateKey) -> bytes:
        return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    fresh: dict[str, Ed25519PrivateKey] = {}
    for pem in sorted((package / "keys").iterdir()):
        fresh[pem.name[:-4]] = Ed25519PrivateKey.generate()
        pem.unlink()
    for key in fresh.values():
        raw = raw_of(key)
        (package / layout.key_path(layout.key_id_of(raw))).write_bytes(layout.public_pem(raw))
    new_id = {old: layout.key_id_of(raw_of(k)) for old, k in fresh.items()}
    entries = _entries(package)
    by_seq: dict[int, dict[str, Any]] = {}
    for e in entries:
        key = fresh[e["key_id"]]
        if e["kind"] == "genesis":
            e["data"]["public_key"] = raw_of(key).hex()
        if e["kind"] == "key_rotated":
            old = layout.key_id_of(bytes.fromhex(e["data"]["new_public_key"]))
            e["data"]["new_public_key"] = raw_of(fresh[old]).hex()
        e["key_id"] = new_id[e["key_id"]]
        if e["seq"] - 1 in by_seq:
            e["prev_hash"] = by_seq[e["seq"] - 1]["entry_hash"]
        body = layout.canonical_bytes(layout.entry_body(e))
        e["entry_hash"] = hashlib.sha256(body).hexdigest()
        e["signature"] = key.sign(body).hex()
        (package / layout.entry_body_path(e["seq"])).write_bytes(body)
        (package / layout.entry_signature_path(e["seq"])).write_bytes(
            bytes.fromhex(e["signature"]))
        by_seq[e["seq"]] = e
    _write_entries(package, entries)
    # a tree of the forger's making: the package's entries, and anything for the others
    doc = json.loads((package / "checkpoint/checkpoint.json").read_bytes())
    size = doc["checkpoint"]["tree_size"]
    leaves = [merkle.leaf_hash(bytes.fromhex(by_seq[i + 1]["entry_hash"])) if i + 1 in by_seq
              else os.urandom(32) for i in range(size)]
    proofs = merkle.inclusion_proofs(leaves, [s - 1 for s in by_seq])
    (package / layout.PROOFS).write_text(json.dumps(
        {"proofs": {str(i + 1): [h.hex() for h in p] for i, p in proofs.items()}}), "utf-8")
    signer = fresh[next(old for old, new in new_id.items()
                        if new == by_seq[max(by_seq)]["key_id"])]
    genesis = next(e for e in entries if e["kind"] == "genesis")
    fingerprint = layout.fingerprint_of(bytes.fromhex(genesis["data"]["public_key"]))
    old_size = json.loads((package / layout.CONSISTENCY).read_bytes())["old_size"]
    for stem, n in ((layout.CHECKPOINT, size), (layout.PUBLISHED, old_size)):
        doc = json.loads((package / f"{stem}.json").read_bytes())
        body = doc["checkpoint"]
        body.update(key_id=layout.key_id_of(raw_of(signer)), genesis_fingerprint=fingerprint,
                    merkle_root=merkle.root(leaves[:n])[1].hex(),
                    head_hash=by_seq[n]["entry_hash"] if n in by_seq else os.urandom(32).hex())
        _sign_doc(package / f"{stem}.json", doc, "checkpoint", signer)
    (package / layout.CONSISTENCY).write_text(json.dumps(
        {"proof": [h.hex() for h in merkle.consistency_proof(leaves, old_size)]}), "utf-8")
    for path in sorted((package / "manifests").glob("*[0-9a-f].json")):
        doc = json.loads(path.read_bytes())
        doc["manifest"]["key_id"] = layout.key_id_of(raw_of(signer))
        _sign_doc(path, doc, "manifest", signer)
    info = package / "bag-info.txt"
    text = info.read_text("utf-8")
    start = text.index("Station-Key-Fingerprint: ") + len("Station-Key-Fingerprint: ")
    info.write_text(text[:start] + fingerprint + text[start + 64:], "utf-8")
    _remanifest(package, signer)
    return signer


def _sign_doc(path: Path, doc: dict[str, Any], key: str, signer: Ed25519PrivateKey) -> None:
    body = layout.canonical_bytes(doc[key])
    doc["signature"] = signer.sign(body).hex()
    path.write_bytes(layout.canonical_bytes(doc))
    path.with_name(path.name[:-5] + ".body.json").write_bytes(body)
    path.with_name(path.name[:-5] + ".sig").write_bytes(bytes.fromhex(doc["signature"]))


# -- hostile packages ---------------------------------------------------------------------------


def _symlink_out(package: Path) -> None:
    outside = package.parent / "secret.txt"
    outside.write_text("outside the package", "utf-8")
    victim = _payload(package)
    victim.unlink()
    victim.symlink_to(outside)


def _dotdot_in_manifest(package: Path) -> None:
    path = package / "manifest-sha256.txt"
    digest = sha256_of(package.parent / "secret.txt") if (
        package.parent / "secret.txt").exists() else "0" * 64
    with path.open("a", encoding="utf-8") as fh:
        fh.write(f"{digest}  data/../../secret.txt\n")


def _fifo(package: Path) -> None:
    victim = _payload(package)
    victim.unlink()
    os.mkfifo(victim)


def _huge_tag_file(package: Path) -> None:
    with (package / layout.PROOFS).open("r+b") as fh:
        fh.truncate(8 << 30)  # sparse: 8 GiB that take no room


def _linked_folder(package: Path) -> None:
    outside = package.parent / "keys-elsewhere"
    shutil.copytree(package / "keys", outside)
    shutil.rmtree(package / "keys")
    (package / "keys").symlink_to(outside, target_is_directory=True)


def _device(package: Path) -> None:
    victim = _payload(package)
    victim.unlink()
    try:
        os.mknod(victim, stat.S_IFCHR | 0o600, os.makedev(1, 5))  # /dev/zero: endless
    except PermissionError:
        pytest.skip("making a device node needs CAP_MKNOD")


HOSTILE_PACKAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "a linked folder": (_linked_folder, "not_a_regular_file"),
    "a device in data/": (_device, "not_a_regular_file"),
    "a symlink in data/ pointing outside": (_symlink_out, "not_a_regular_file"),
    "a path with .. in a manifest": (_dotdot_in_manifest, "unsafe_path"),
    "a FIFO": (_fifo, "not_a_regular_file"),
    "a huge tag file": (_huge_tag_file, "file_too_large"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_PACKAGES))
def test_a_hostile_package_is_reported_never_followed_and_never_written_to(
        name: str, made: Made, tmp_path: Path, bare_python: Path) -> None:
    copy = tmp_path / "package"
    shutil.copytree(made.package, copy, symlinks=True)
    change, kind = HOSTILE_PACKAGES[name]
    change(copy)
    before = _tree(copy)
    code, problems = verify_export(copy)
    assert code == 1 and kind in kinds(problems), problems
    code, findings = standalone(bare_python, copy)
    assert code == 1 and kind in kinds(findings), findings
    assert _tree(copy) == before, "verification wrote into the package"


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = (Path(folder) / name).lstat()
            out[str(Path(folder, name).relative_to(root))] = (st.st_mode, st.st_mtime_ns)
    return out


# -- refusals ---------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["--approved-by", "--reason"])
def test_an_export_without_approver_or_reason_is_refused_and_leaves_no_trace(
        made: Made, tmp_path: Path, missing: str) -> None:
    before = len(catalog.ledger_entries(made.home, "exported"))
    args = {"--approved-by": "Director Li", "--reason": "court order"}
    for given in ("absent", "empty"):
        options = [a for k, v in args.items() if k != missing for a in (k, v)]
        if given == "empty":
            options += [missing, " "]
        out = tmp_path / f"never-{given}"
        done = run_cli(made.home, "export", made.shas[1], "--out", out, *options)
        assert done.exit_code == 2, done
        assert missing in done.stderr, done.stderr
        assert not out.exists()
    assert len(catalog.ledger_entries(made.home, "exported")) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_export_into_a_folder_that_is_not_empty_is_refused(made: Made,
                                                              tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine", "utf-8")
    done = run_cli(made.home, "export", made.shas[1], "--out", out, "--approved-by", "Li",
                   "--reason", "copy")
    assert done.exit_code == 2 and "not empty" in done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_an_export_onto_a_mounted_drive_itself_is_refused_before_anything_is_written(
        made: Made, tmp_path: Path) -> None:
    drive = tmp_path / "usb"
    drive.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(drive)], check=True)
    try:
        entries = len((made.home / "ledger.jsonl").read_text("utf-8").splitlines())
        done = run_cli(made.home, "export", made.shas[1], "--out", drive, "--approved-by",
                       "Li", "--reason", "copy")
        assert done.exit_code == 2, done.stderr
        said = " ".join(done.stderr.split())
        assert "is a mounted file system of its own" in said and str(drive / "package") in said
        assert list(drive.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
            "usb"]  # nothing beside it either
        assert len((made.home / "ledger.jsonl").read_text("utf-8").splitlines()) == entries
    finally:
        subprocess.run(["umount", "-l", str(drive)], check=False)


def test_a_damaged_remote_copy_is_refused_and_leaves_no_package(
        made: Made, tmp_path: Path) -> None:
    before = len(catalog.ledger_entries(made.home, "exported"))
    key = f"{_prefix()}/sha256/{made.evicted}"
    body = made.s3.get_object(Bucket=made.bucket, Key=key)
    head = made.s3.head_object(Bucket=made.bucket, Key=key)
    data = bytearray(body["Body"].read())
    data[100] ^= 0xFF
    made.s3.put_object(Bucket=made.bucket, Key=key, Body=bytes(data),
                       Metadata=head.get("Metadata", {}))
    out = tmp_path / "never"
    done = run_cli(made.home, "export", made.evicted, "--out", out, "--approved-by", "Li",
                   "--reason", "copy", "--json")
    assert done.exit_code == 91, done
    message = done.json()["error"]["message"]
    assert "damaged" in message and "no package was written" in message, message
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert len(catalog.ledger_entries(made.home, "exported")) == before


def _prefix() -> str:
    from tests.integration.test_replicate import PREFIX

    return PREFIX



# -- reading an item back from a directory target ------------------------------------------------


def test_a_directory_target_gives_an_item_back_hashed_and_never_opens_a_fifo(
        tmp_path: Path) -> None:
    import io

    from conftest import random_file

    from ingestd.errors import ReplicaMismatch
    from ingestd.targets import Lock
    from tests.integration.test_target_directory import nas

    share = tmp_path / "nas"
    share.mkdir()
    (tmp_path / "store").mkdir()
    blob = random_file(tmp_path / "store" / "blob", (1 << 20) * 2 + 5)
    target = nas(share, "station-1")
    target.check()
    target.put_item(blob.sha256, blob.path, blob.size, Lock(retain_until=None))
    sink = io.BytesIO()
    assert target.read_item(blob.sha256, sink) == blob.sha256
    assert sink.getvalue() == blob.path.read_bytes()
    stored = share / "station-1" / "sha256" / blob.sha256
    stored.chmod(0o644)
    stored.write_bytes(b"not the item")
    assert target.read_item(blob.sha256, io.BytesIO()) != blob.sha256
    stored.unlink()
    os.mkfifo(stored)
    with pytest.raises(ReplicaMismatch, match="not a regular file"):
        target.read_item(blob.sha256, io.BytesIO())
    stored.unlink()
    with pytest.raises(ReplicaMismatch, match="no such item"):
        target.read_item(blob.sha256, io.BytesIO())
