"""`scripts/bench ledger`: how long `ingestd ledger verify` takes, and how much memory, on a
ledger of a million entries, against reading and hashing its mirror once with `sha256sum`
(the floor: verify reads every entry, hashes it and checks its signature).

Run twice, on a tenth of the ledger and on all of it, so that the report shows whether memory
grows with the ledger (it should not: verify streams its entries).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import (  # noqa: E402
    DEFAULT_WORK,
    VENV_BIN,
    BenchError,
    CacheDropper,
    bench_main,
    cached_build,
    code_state,
    fmt_bytes,
    machine_info,
    machine_line,
    median,
    run_measured,
    say,
    table,
)

from ingestd.domain.models import EventKind  # noqa: E402
from ingestd.usecases.home import init_home  # noqa: E402

BATCH = 5000  # entries a transaction while building


def build_home(folder: Path, entries: int) -> None:
    """A station whose ledger holds ``entries`` signed entries: docks with their health, as a
    station writes them (about 600 bytes each in the mirror)."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    tick = [0]

    def clock() -> datetime:
        tick[0] += 1
        return t0 + timedelta(milliseconds=tick[0])

    station, _ = init_home(folder / "home", clock=clock)
    custody = station.custody
    made = shown = station.custody.verify().entries
    start = time.perf_counter()
    while made < entries:
        with custody.transaction() as conn:
            for _ in range(min(BATCH, entries - made)):
                made += 1
                custody.record(conn, kind=EventKind.DOCKED, actor="ingestd", data={
                    "serial": f"BWC-{made % 250:04d}", "officer": "Li Na", "source": "udev",
                    "mountpoint": f"/run/ingestd/BWC-{made % 250:04d}",
                    "health": {"battery_percent": 80, "free_bytes": 12_884_901_888,
                               "total_bytes": 34_359_738_368, "fs_type": "vfat",
                               "devnode": "/dev/sdb1", "fs_label": "RECORDER"}})
        if made >= shown + 100_000 or made == entries:
            shown = made
            rate = made / (time.perf_counter() - start)
            say(f"  {made} entries ({rate:.0f} a second)")
    station.close()


def measure(home: Path, repeat: int, dropper: CacheDropper, out: Path) -> dict[str, Any]:
    mirror = home / "ledger.jsonl"
    env = {**os.environ, "INGESTD_ACTOR": "bench"}
    verify: list[float] = []
    floor: list[float] = []
    peak = 0
    for _ in range(repeat):
        dropper.drop([mirror, home / "catalog.sqlite"])
        seconds, rss = run_measured([VENV_BIN / "ingestd", "--home", home, "ledger", "verify",
                                     "--json"], stdout=out / "verify.json", env=env)
        verify.append(seconds)
        peak = max(peak, rss)
        dropper.drop([mirror])
        seconds, _ = run_measured(["sha256sum", mirror], stdout=out / "sha256sum.txt")
        floor.append(seconds)
    report = (out / "verify.json").read_text(encoding="utf-8")
    if '"ok": true' not in report:
        raise BenchError(f"ledger verify found problems in {home}: {report[:500]}")
    return {"verify_seconds": median(verify), "sha256sum_seconds": median(floor),
            "peak_rss": peak, "mirror_bytes": mirror.stat().st_size}


def run(args: argparse.Namespace) -> dict[str, Any]:
    load = os.getloadavg()[0]
    work: Path = args.work
    sizes = sorted({max(1000, args.entries // 10), args.entries})
    out = work / "out-ledger"
    out.mkdir(parents=True, exist_ok=True)
    dropper = CacheDropper()
    results = []
    for n in sizes:
        folder = cached_build(work / f"data-ledger-{n}", f"ledger-{n}-v1", 2000 * n,
                              lambda f, n=n: build_home(f, n),
                              lambda f: (f / "home" / "ledger.jsonl").is_file())
        say(f"measuring ledger verify on {n} entries")
        results.append({"entries": n, **measure(folder / "home", args.repeat, dropper, out)})
    return {"benchmark": "ledger", "code": code_state(), "machine": machine_info(load),
            "cache": dropper.method, "repeat": args.repeat, "results": results}


def render(report: dict[str, Any]) -> str:
    rows = []
    for r in report["results"]:
        rows.append([f"{r['entries']:,}", fmt_bytes(r["mirror_bytes"]),
                     f"{r['verify_seconds']:.1f} s", f"{r['sha256sum_seconds']:.2f} s",
                     f"{r['verify_seconds'] / r['sha256sum_seconds']:.1f}x",
                     fmt_bytes(r["peak_rss"])])
    small, large = report["results"][0], report["results"][-1]
    growth = large["peak_rss"] - small["peak_rss"]
    return "\n".join([
        "ledger verify (chain, signatures, keys, every catalog row, the mirror) against "
        "sha256sum of the mirror",
        f"{report['code']}; page cache dropped before each run ({report['cache']}); "
        f"median of {report['repeat']}",
        machine_line(report["machine"]), "",
        table(["entries", "mirror", "verify", "sha256sum", "ratio", "verify peak memory"], rows),
        "",
        f"memory: {fmt_bytes(large['peak_rss'])} for {large['entries']:,} entries against "
        f"{fmt_bytes(small['peak_rss'])} for {small['entries']:,} "
        f"({'+' if growth >= 0 else ''}{fmt_bytes(growth)})",
    ])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="scripts/bench ledger", description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000,
                        help="ledger entries (default 1,000,000; a tenth is measured too)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each (median)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK,
                        help="folder for the cached ledgers (default .bench/)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    if args.entries < 1000 or args.repeat < 1:
        parser.error("--entries must be at least 1000 and --repeat at least 1")
    return args


def main(argv: list[str]) -> int:
    return bench_main("ledger", argv, parse_args, run, render)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
