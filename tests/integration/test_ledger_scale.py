"""``ledger verify`` on a long ledger: it streams the entries, so its memory does not grow with
the ledger's length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, init_station, subprocess_env

from ingestd.domain.canonical import parse_time
from ingestd.integrity.ledger import seal, to_json
from ingestd.integrity.signing import StationKey
from tests.support import catalog

pytestmark = pytest.mark.integration

# ``ledger verify`` in a process of its own, which then tells how much its peak memory grew
# while it ran (KiB), imports aside.
VERIFY = """
import re, sys
import ingestd.cli.checks, ingestd.usecases.replicate, sqlalchemy.dialects.sqlite
import ingestd.cli.ledger  # the command's module, imported when it runs
from ingestd.cli import main
def status(field):  # this process's own (ru_maxrss would count the parent's, across exec)
    text = open("/proc/self/status").read()
    return int(re.search(field + r":\\s+(\\d+) kB", text).group(1))
sys.argv = ["ingestd", "--home", sys.argv[1], "ledger", "verify", "--json"]
before = status("VmRSS")
try:
    main()
except SystemExit:
    pass
print(before, status("VmHWM"), file=sys.stderr)
"""


def grow(home: Path, count: int) -> None:
    """Append ``count`` signed entries (audits of one item), as years of audits would."""
    key = StationKey.load(home / "keys")
    last = catalog.ledger_entries(home)[-1]
    prev, seq, at = last["entry_hash"], last["seq"], parse_time(last["at"])
    entries = []
    for n in range(count):
        seq += 1
        entry = seal(seq=seq, at=at, station="station-01", actor="ingestd", kind="audited",
                     item="ab" * 32, data={"fixity": "ok", "n": n, "note": "x" * 200},
                     prev_hash=prev, key=key)
        prev = entry.entry_hash
        entries.append(entry)
    catalog.write_entries(home, entries)
    with (home / "ledger.jsonl").open("a", encoding="utf-8") as fh:
        fh.writelines(json.dumps(to_json(e), ensure_ascii=False, sort_keys=True) + "\n"
                      for e in entries)


def peak_kib(home: Path) -> tuple[dict, int]:
    done = subprocess.run([sys.executable, "-c", VERIFY, str(home)], capture_output=True,
                          text=True, timeout=600, env=subprocess_env(PYTHONPATH=str(ROOT)),
                          check=False)
    before, after = map(int, done.stderr.strip().splitlines()[-1].split())
    return json.loads(done.stdout), after - before


def test_verify_memory_does_not_grow_with_the_ledger(tmp_path: Path) -> None:
    home = init_station(tmp_path / "home")
    grow(home, 3_000)
    short, short_kib = peak_kib(home)
    assert short["ok"] is True and short["entries"] == 3_001
    grow(home, 30_000)
    long, long_kib = peak_kib(home)
    assert long["ok"] is True and long["entries"] == 33_001
    # Holding every entry costs about 2 KiB each (60 MiB more here); streaming, nothing.
    assert long_kib - short_kib < 4 * 1024, (short_kib, long_kib)
