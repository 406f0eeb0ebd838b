"""Trusted time on checkpoints, against a real RFC 3161 authority (``openssl ts`` behind a local
HTTP responder, tests/support/tsa.py).

With ``[timestamping] url``, each published checkpoint is time-stamped: the token lies beside
it off-site as ``<name>.tsr`` (directory target and S3), a clerk checks it with ``openssl ts
-verify -data <checkpoint> -in <tsr> -CAfile <ca>``, and the ledger's ``checkpointed`` entry
keeps the checkpoint and its token. An authority that is down, answers garbage, stamps another
hash or is not trusted does not stop the checkpoint: it goes without a token, the error named.
``ledger verify`` checks the recorded checkpoints and tokens; ``ledger verify --offsite`` the
Merkle root of every version-3 checkpoint and every ``.tsr`` off-site.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from conftest import cli_json, init_station, ledger_lines, run_cli

from ingestd import config as config_mod
from ingestd.domain.canonical import canonical_bytes
from ingestd.domain.text import redact_url
from ingestd.errors import TimestampError
from ingestd.station import Station, system_clock
from ingestd.usecases import checkpoints
from ingestd.usecases.checkpoints import SignedCheckpoint, Timestamp
from tests.integration.test_replicate import (
    bucket,  # noqa: F401 - a fresh Object Lock bucket per test
    credentials,  # noqa: F401 - credentials for the moto server
    s3,  # noqa: F401 - a raw boto3 client on it
    s3_target,
)
from tests.support.servers import S3Endpoint
from tests.support.tsa import LocalTsa, closed_port_url

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.integration

PREFIX = "station-01"


def stamping(url: str, ca_file: Path) -> str:
    return f'[timestamping]\nurl = "{url}"\nca_file = "{ca_file}"\ntimeout = "5s"\n'


def nas_target(nas: Path) -> str:
    return (f'[[targets]]\nname = "nas"\ntype = "directory"\npath = "{nas}"\n'
            f'prefix = "{PREFIX}"\nsame_filesystem_ok = true\n')


def make_station(tmp_path: Path, *config: str) -> Path:
    return init_station(tmp_path / "home", config="".join(config), clock=system_clock)


def open_station(home: Path) -> Station:
    return Station.open(config_mod.load(home / config_mod.CONFIG_NAME))


def more_history(home: Path, n: int = 1) -> None:
    for i in range(n):
        added = run_cli(home, "devices", "add", f"BWC-9{i:03d}", "--officer",
                        f"Officer {i}", "--officer-id", f"9{i}")
        assert added.exit_code == 0, added


def ledger_kinds(home: Path) -> tuple[int, list[str], list[dict[str, Any]]]:
    result = run_cli(home, "ledger", "verify", "--offsite", "--json")
    problems = result.json()["problems"]
    return result.exit_code, sorted(p["kind"] for p in problems), problems


def clerk_verifies(tsa: LocalTsa, checkpoint: Path, token: Path) -> None:
    """What a court clerk runs, with only the two files and the authority's CA."""
    done = tsa.verify(checkpoint, token)
    assert done.returncode == 0 and "Verification: OK" in done.stdout, done


def forged(home: Path, **changes: Any) -> SignedCheckpoint:
    """A checkpoint of the ledger as it is now, ``changes`` made to its body, then correctly
    signed with the station's own key: what only someone holding the key could write."""
    station = open_station(home)
    try:
        real = checkpoints.sign_checkpoint(station)
        body = {**real.body, **changes}
        return SignedCheckpoint(body=body, signature=station.key.sign(canonical_bytes(body)),
                                public_key=real.public_key)
    finally:
        station.close()


# -- a directory target ------------------------------------------------------------------------


@pytest.fixture
def nas_home(tmp_path: Path, tsa: LocalTsa) -> tuple[Path, Path]:
    nas = tmp_path / "nas"
    nas.mkdir()
    return make_station(tmp_path, stamping(tsa.url, tsa.ca_file), nas_target(nas)), nas


def test_a_checkpoint_is_time_stamped_the_token_kept_beside_it_and_in_the_ledger(
        nas_home: tuple[Path, Path], tsa: LocalTsa) -> None:
    home, nas = nas_home
    asked = tsa.requests

    sent = cli_json(home, "checkpoint")

    assert sent["sent"] == ["nas"] and sent["errors"] == [] and sent["timestamp_error"] is None
    assert tsa.requests == asked + 1
    folder = nas / PREFIX / "checkpoints"
    published = folder / sent["name"]
    token = folder / (sent["name"] + ".tsr")
    assert sorted(p.name for p in folder.iterdir()) == [published.name, token.name]
    clerk_verifies(tsa, published, token)
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert sent["timestamp"]["sha256"] == digest and sent["timestamp"]["tsa"] == tsa.url
    # the token is locked like the checkpoint
    locks = nas / PREFIX / "locks" / "checkpoints"
    assert (json.loads((locks / f"{token.name}.json").read_text())
            == json.loads((locks / f"{published.name.removesuffix('.json')}.json").read_text()))

    [entry] = ledger_lines(home, "checkpointed")
    data = entry["data"]
    on_share = json.loads(published.read_bytes())
    assert data["checkpoint"] == on_share["checkpoint"] and data["sent"] == ["nas"]
    assert (data["signature"], data["public_key"]) == (on_share["signature"],
                                                       on_share["public_key"])
    assert data["name"] == sent["name"] and data["sha256"] == digest
    assert base64.b64decode(data["timestamp"]["token"]) == token.read_bytes()
    assert data["timestamp"]["gen_time"] == sent["timestamp"]["gen_time"]
    assert data["checkpoint"]["version"] == 3 and data["checkpoint"]["seq"] == entry["seq"] - 1

    station = open_station(home)
    try:
        with station.catalog.read() as tx:
            [record] = checkpoints.published_checkpoints(tx)
            assert checkpoints.published_checkpoints(tx, upto_seq=entry["seq"] - 1) == []
        assert record.token == token.read_bytes() and record.seq == entry["seq"]
        assert record.signed.to_bytes() == published.read_bytes()
        assert record.timestamp is not None and record.timestamp.sha256 == digest
    finally:
        station.close()
    assert ledger_kinds(home)[:2] == (0, [])

    # Nothing new but the entry that records it: nothing published, the authority not asked.
    again = cli_json(home, "checkpoint")
    assert (again["sent"], again["unchanged"], again["timestamp"]) == ([], ["nas"], None)
    assert tsa.requests == asked + 1 and len(ledger_lines(home, "checkpointed")) == 1
    # New entries: a checkpoint of its own, stamped too.
    more_history(home)
    later = cli_json(home, "checkpoint")
    assert later["sent"] == ["nas"] and later["timestamp"] is not None
    clerk_verifies(tsa, folder / later["name"], folder / (later["name"] + ".tsr"))
    assert len(ledger_lines(home, "checkpointed")) == 2
    assert ledger_kinds(home)[:2] == (0, [])


def test_a_tsr_swapped_for_another_checkpoints_is_caught_off_site(
        nas_home: tuple[Path, Path], tsa: LocalTsa) -> None:
    home, nas = nas_home
    first = cli_json(home, "checkpoint")
    more_history(home)
    second = cli_json(home, "checkpoint")
    folder = nas / PREFIX / "checkpoints"
    swapped = folder / (second["name"] + ".tsr")
    swapped.chmod(0o644)
    swapped.write_bytes((folder / (first["name"] + ".tsr")).read_bytes())
    # the clerk's check fails on it too
    assert tsa.verify(folder / second["name"], swapped).returncode != 0

    code, found, problems = ledger_kinds(home)

    assert code == 1 and found == ["timestamp_invalid"]
    assert swapped.name in problems[0]["detail"] and "another hash" in problems[0]["detail"]

    # and one taken away (a share has no WORM) is missed: the ledger records it sent there
    swapped.unlink()
    code, found, problems = ledger_kinds(home)
    assert code == 1 and found == ["timestamp_missing"]
    assert problems[0]["seq"] == second["seq"] and swapped.name in problems[0]["detail"]


def test_a_correctly_signed_checkpoint_with_another_merkle_root_is_caught_off_site(
        nas_home: tuple[Path, Path]) -> None:
    home, nas = nas_home
    cli_json(home, "checkpoint")
    more_history(home)
    fake = forged(home, merkle_root="ab" * 32)
    folder = nas / PREFIX / "checkpoints"
    (folder / checkpoints.checkpoint_name("station-01", fake.seq)).write_bytes(fake.to_bytes())

    code, found, problems = ledger_kinds(home)

    assert code == 1 and found == ["checkpoint_root_mismatch"]
    assert problems[0]["seq"] == fake.seq and "ab" * 32 in problems[0]["detail"]


def test_ledger_verify_catches_a_recorded_checkpoint_or_token_that_does_not_hold(
        nas_home: tuple[Path, Path]) -> None:
    home, _ = nas_home
    cli_json(home, "checkpoint")
    more_history(home)
    station = open_station(home)
    try:
        with station.catalog.read() as tx:
            [real] = checkpoints.published_checkpoints(tx)
        assert real.timestamp is not None
        # entries a station could be made to write: each chained and signed as any other
        wrong_root = forged(home, merkle_root="cd" * 32)
        root_entry = checkpoints.record_checkpoint(station, wrong_root, None, sent=[])
        wrong_head = forged(home, head_hash="ef" * 32)
        head_entry = checkpoints.record_checkpoint(station, wrong_head, None, sent=[])
        # the first checkpoint's token, recorded for another checkpoint
        other = checkpoints.sign_checkpoint(station)
        borrowed = replace(real.timestamp,
                           sha256=hashlib.sha256(other.to_bytes()).hexdigest())
        token_entry = checkpoints.record_checkpoint(station, other, borrowed, sent=[])
    finally:
        station.close()

    code, found, problems = ledger_kinds(home)

    assert code == 1
    assert sorted((p["kind"], p["seq"]) for p in problems) == sorted([
        ("checkpoint_root_mismatch", root_entry.seq),
        ("checkpoint_record_invalid", head_entry.seq),
        ("timestamp_invalid", token_entry.seq)])
    assert run_cli(home, "ledger", "verify").exit_code == 1  # without --offsite too


def test_ledger_verify_catches_an_edited_token(nas_home: tuple[Path, Path]) -> None:
    from tests.support import catalog

    home, _ = nas_home
    cli_json(home, "checkpoint")
    [entry] = catalog.ledger_entries(home, "checkpointed")
    data = dict(entry["data"])
    token = bytearray(base64.b64decode(data["timestamp"]["token"]))
    token[-10] ^= 0x01  # inside the signature
    data["timestamp"] = {**data["timestamp"], "token": base64.b64encode(token).decode()}
    catalog.forge_entry(home, entry["seq"], data=json.dumps(data))

    code, found, _ = ledger_kinds(home)

    assert code == 1 and "timestamp_invalid" in found and "edited" in found


# -- an authority that fails -------------------------------------------------------------------


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A working authority whose CA is not the one the station trusts."""
    with LocalTsa(tmp_path_factory.mktemp("stranger"), name="Stranger TSA") as other:
        yield other


@pytest.mark.parametrize("fault", ["down", "garbage", "other-hash", "untrusted"])
def test_a_failing_authority_does_not_stop_the_checkpoint(
        tmp_path: Path, tsa: LocalTsa, stranger: LocalTsa, fault: str) -> None:
    nas = tmp_path / "nas"
    nas.mkdir()
    url = {"down": closed_port_url() + "?key=secret", "untrusted": stranger.url}.get(
        fault, tsa.url)
    home = make_station(tmp_path, stamping(url, tsa.ca_file), nas_target(nas))
    if fault in ("garbage", "other-hash"):
        tsa.mode = fault  # type: ignore[assignment]
    try:
        result = run_cli(home, "checkpoint", "--json")
    finally:
        tsa.mode = "ok"

    assert result.exit_code == TimestampError.exit_code, result
    sent = result.json()
    assert sent["sent"] == ["nas"] and sent["errors"] == [] and sent["timestamp"] is None
    why = sent["timestamp_error"]
    expected = {"down": "cannot be reached", "garbage": "no time-stamp response",
                "other-hash": "another hash", "untrusted": "does not verify against ca_file"}
    assert expected[fault] in why, why
    assert "secret" not in why and "secret" not in result.stderr
    assert f"time-stamping authority {redact_url(url)}" in why
    assert "ERROR" in result.stderr and "without a time-stamp" in result.stderr
    folder = nas / PREFIX / "checkpoints"
    assert [p.name for p in folder.iterdir()] == [sent["name"]]  # published, no token
    [entry] = ledger_lines(home, "checkpointed")
    assert entry["data"]["timestamp"] is None and entry["data"]["timestamp_error"] == why
    assert ledger_kinds(home)[:2] == (0, [])

    if fault in ("garbage", "other-hash"):
        # the authority is back: the next checkpoint is stamped
        more_history(home)
        later = cli_json(home, "checkpoint")
        assert later["timestamp"] is not None
        clerk_verifies(tsa, folder / later["name"], folder / (later["name"] + ".tsr"))


def test_a_token_checked_against_a_ca_file_that_does_not_trust_it_is_reported(
        nas_home: tuple[Path, Path], stranger: LocalTsa) -> None:
    home, _ = nas_home
    cli_json(home, "checkpoint")
    path = home / config_mod.CONFIG_NAME
    text = path.read_text(encoding="utf-8")
    ca = config_mod.load(path).timestamping.ca_file
    path.write_text(text.replace(str(ca), str(stranger.ca_file)), encoding="utf-8")

    code, found, problems = ledger_kinds(home)

    # the recorded token and the one off-site, both not from an authority it trusts
    assert code == 1 and found == ["timestamp_invalid", "timestamp_invalid"]
    assert all("ca_file" in p["detail"] for p in problems)


# -- S3 (moto) ---------------------------------------------------------------------------------


def test_checkpoints_on_s3_are_time_stamped_locked_and_checked(
        tmp_path: Path, tsa: LocalTsa, moto: S3Endpoint, s3: S3Client,  # noqa: F811
        bucket: str, credentials: Path) -> None:  # noqa: F811
    home = make_station(tmp_path, '[scheduler]\nworm_check = "0s"\n',
                        stamping(tsa.url, tsa.ca_file), s3_target(moto.url, bucket, credentials))
    first = cli_json(home, "checkpoint")
    assert first["sent"] == ["offsite"] and first["timestamp"] is not None
    key = f"{PREFIX}/checkpoints/{first['name']}"
    head = s3.head_object(Bucket=bucket, Key=key + ".tsr")
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert (head["ObjectLockRetainUntilDate"]
            == s3.head_object(Bucket=bucket, Key=key)["ObjectLockRetainUntilDate"])
    published = tmp_path / first["name"]
    token = tmp_path / (first["name"] + ".tsr")
    published.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    token.write_bytes(s3.get_object(Bucket=bucket, Key=key + ".tsr")["Body"].read())
    clerk_verifies(tsa, published, token)
    [entry] = ledger_lines(home, "checkpointed")
    assert base64.b64decode(entry["data"]["timestamp"]["token"]) == token.read_bytes()
    assert ledger_kinds(home)[:2] == (0, [])

    # a .tsr is no checkpoint to the listings: the fork check and verify read only checkpoints
    more_history(home)
    second = cli_json(home, "checkpoint")
    assert second["sent"] == ["offsite"] and second["errors"] == []
    assert ledger_kinds(home)[:2] == (0, [])

    # a new version of the second's token holding the first's: caught
    s3.put_object(Bucket=bucket, Key=f"{PREFIX}/checkpoints/{second['name']}.tsr",
                  Body=token.read_bytes())
    code, found, problems = ledger_kinds(home)
    assert code == 1 and found == ["timestamp_invalid"]
    assert f"{second['name']}.tsr" in problems[0]["detail"]


def test_the_timestamp_api_the_export_uses(nas_home: tuple[Path, Path], tsa: LocalTsa) -> None:
    home, _ = nas_home
    station = open_station(home)
    try:
        signed = checkpoints.sign_checkpoint(station)
        stamp = checkpoints.timestamp_checkpoint(station, signed)
        assert isinstance(stamp, Timestamp)
        assert stamp.sha256 == hashlib.sha256(signed.to_bytes()).hexdigest()
        assert stamp.tsa == tsa.url and stamp.gen_time.tzinfo is not None
        entry = checkpoints.record_checkpoint(station, signed, stamp, sent=["nas"])
        with station.catalog.read() as tx:
            [record] = checkpoints.published_checkpoints(tx)
        assert record.seq == entry.seq and record.timestamp == stamp
        assert record.sent == ("nas",) and record.body == signed.body
        with station.catalog.read() as tx:
            assert checkpoints.published_checkpoints(tx, station="station-01") == [record]
            assert checkpoints.published_checkpoints(tx, station="station-02") == []
    finally:
        station.close()
    assert ledger_kinds(home)[:2] == (0, [])
