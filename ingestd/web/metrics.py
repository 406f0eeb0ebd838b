"""``/metrics``: the station for Prometheus, computed at scrape time from the catalog.

A custom collector on its own registry reads, in one catalog transaction, the station's
tallies (kept by the catalog's triggers in the transaction that changes what they count:
a few rows a flag, target and job, however many items there are), the dock sessions still
running, each target's WORM standing and, per target with items waiting, one walk over the
waiting items from the newest (bounded by :data:`WAITING_WALK`); then the store's file system.
No scrape reads every item.

Names follow Prometheus' conventions: base units (seconds, bytes), ``_total`` for counters,
which never go down (an eviction lowers ``ingestd_items{state="local"}`` and
``ingestd_store_used_bytes``, never ``ingestd_ingested_bytes_total``). Times are Unix seconds,
0 for never. A daemon job is labelled ``name``: Prometheus gives ``job`` to the scrape.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from ..domain.flags import Flag
from ..domain.records import AcquisitionState
from ..domain.status import Tally, WormStanding
from ..station import Station
from ..usecases.status import AUDIT_JOB, AUDIT_OFFSITE_JOB, LEDGER_JOB, Dock

#: At most this many waiting items are walked a target to date the oldest: beyond it the age
#: shown is the age of that many-th newest, a lower bound (a queue that long alerts anyway).
WAITING_WALK = 2_000

#: The acquisitions' ends, each a ``result`` of ``ingestd_acquisitions_total``.
ENDED = (AcquisitionState.STORED, AcquisitionState.KNOWN, AcquisitionState.FAILED,
         AcquisitionState.INTERRUPTED)

#: The audit cycles' jobs, by the ``cycle`` label of ``ingestd_audit_failures_total``.
AUDIT_CYCLES = {"local": AUDIT_JOB, "offsite": AUDIT_OFFSITE_JOB}


def _seconds(moment: datetime | None) -> float:
    return 0.0 if moment is None else moment.timestamp()


@dataclass(frozen=True, kw_only=True)
class Reading:
    """What one scrape read: the tallies by (name, label), and the rest."""

    tallies: Mapping[tuple[str, str], Tally]
    targets: tuple[str, ...]
    oldest_waiting: Mapping[str, datetime]
    docked: int
    worm: Mapping[str, WormStanding]
    free: int
    total: int
    now: datetime

    def count(self, name: str, label: str = "") -> int:
        tally = self.tallies.get((name, label))
        return 0 if tally is None else tally.count

    def bytes(self, name: str, label: str = "") -> int:
        tally = self.tallies.get((name, label))
        return 0 if tally is None else tally.bytes

    def at(self, name: str, label: str = "") -> float:
        tally = self.tallies.get((name, label))
        return _seconds(None if tally is None else tally.at)

    def labels(self, name: str) -> list[str]:
        return sorted(label for kind, label in self.tallies if kind == name)

    def waiting(self, target: str) -> int:
        """Local items not yet verified on ``target``."""
        return max(0, self.count("local") - self.count("verified_local", target))


def read(station: Station) -> Reading:
    """One scrape's reading of the station, in one catalog transaction."""
    targets = tuple(t.name for t in station.settings.targets)
    with station.catalog.read(snapshot=True) as tx:
        tallies = {(t.name, t.label): t for t in tx.tallies(station=station.name)}
        local = tallies.get(("local", ""))
        verified = {name: tallies[("verified_local", name)].count
                    for name in targets if ("verified_local", name) in tallies}
        oldest: dict[str, datetime] = {}
        for name in targets:
            waiting = (0 if local is None else local.count) - verified.get(name, 0)
            since = tx.waiting_walk_since(station=station.name, target=name,
                                     waiting=min(waiting, WAITING_WALK))
            if since is not None:
                oldest[name] = since
        running = tx.running_sessions(station=station.name)
        standings = {s.target: s for s in tx.worm_standings()}
    docked = {s.serial for s in running if Dock.of(s).state == "running"}
    disk = station.store.disk()
    return Reading(tallies=tallies, targets=targets, oldest_waiting=oldest, docked=len(docked),
                   worm={n: standings[n] for n in targets if n in standings},
                   free=disk.free, total=disk.total, now=station.clock())


def families(r: Reading, station: str) -> Iterator[Metric]:
    """The metric families of one reading."""
    info = GaugeMetricFamily("ingestd_station_info", "The station this ingestd serves.",
                             labels=["station"])
    info.add_metric([station], 1)
    yield info

    items = GaugeMetricFamily(
        "ingestd_items", "Items this station stored, by whether their bytes are in the local "
        "store (local) or were evicted after proven off-site copies (evicted).",
        labels=["state"])
    for state in ("local", "evicted"):
        items.add_metric([state], r.count(state))
    yield items

    flagged = GaugeMetricFamily(
        "ingestd_flagged_items", "This station's items carrying each flag (a flag, once set, "
        "stays).", labels=["flag"])
    for flag in Flag:
        flagged.add_metric([str(flag)], r.count("flagged", str(flag)))
    known = {str(flag) for flag in Flag}
    for other in r.labels("flagged"):  # a flag this release does not know, from another
        if other not in known:
            flagged.add_metric([other], r.count("flagged", other))
    yield flagged

    yield GaugeMetricFamily("ingestd_store_free_bytes", "Bytes free on the local store's "
                            "file system.", value=r.free)
    yield GaugeMetricFamily("ingestd_store_size_bytes", "Size in bytes of the local store's "
                            "file system.", value=r.total)
    yield GaugeMetricFamily("ingestd_store_used_bytes", "Bytes of this station's items held in "
                            "the local store.", value=r.bytes("local"))
    yield CounterMetricFamily(
        "ingestd_ingested_bytes", "Bytes of the new items this station stored, each item once, "
        "when first stored; not lowered when an item is evicted.", value=r.bytes("ingested"))
    yield CounterMetricFamily(
        "ingestd_ingested_items", "New items this station stored (each once, when first "
        "stored; not lowered when an item is evicted).", value=r.count("ingested"))

    acquired = CounterMetricFamily(
        "ingestd_acquisitions", "Files copied off recorders, by how the copy ended: stored (new "
        "bytes), known (bytes already stored), failed (could not be read), interrupted "
        "(redone at the next dock).", labels=["result"])
    for state in ENDED:
        acquired.add_metric([str(state)], r.count("acquired", str(state)))
    yield acquired

    yield from _replication(r)

    yield GaugeMetricFamily("ingestd_docked_recorders", "Recorders docked now: dock sessions "
                            "running in a live process.", value=r.docked)

    audits = CounterMetricFamily(
        "ingestd_audit_failures", "Runs of the daemon's audit cycles (local re-hash, off-site "
        "read-back) that did not find every copy intact (a copy damaged, missing or "
        "different, or the audit could not run).", labels=["cycle"])
    for cycle, job in AUDIT_CYCLES.items():
        audits.add_metric([cycle], r.count("job_failed", job))
    yield audits

    yield GaugeMetricFamily(
        "ingestd_ledger_verified_timestamp_seconds", "When the daemon's ledger check last found "
        "the ledger (and, with targets, the off-site checkpoints) intact; 0: never.",
        value=r.at("job_ok", LEDGER_JOB))

    yield from _jobs(r)
    yield from _worm(r)


def _replication(r: Reading) -> Iterator[Metric]:
    sent = CounterMetricFamily(
        "ingestd_replicated_bytes", "Bytes of copies a target accepted and ingestd verified, "
        "counted when each copy became verified (a copy written again after a mismatch counts "
        "again).", labels=["target"])
    copies = CounterMetricFamily(
        "ingestd_replicated_copies", "Copies a target accepted and ingestd verified (a copy "
        "written again after a mismatch counts again).", labels=["target"])
    queue = GaugeMetricFamily(
        "ingestd_replication_queue_items", "Items in the local store not yet verified on the "
        "target (queued, in flight or failed).", labels=["target"])
    last = GaugeMetricFamily(
        "ingestd_last_successful_replication_timestamp_seconds", "When the newest copy on the "
        "target was verified; 0: never.", labels=["target"])
    oldest = GaugeMetricFamily(
        "ingestd_replication_oldest_waiting_age_seconds", "Age since it was stored of the "
        f"oldest local item not yet verified on the target (0: none waits; past {WAITING_WALK} "
        f"waiting, the age of the {WAITING_WALK}th newest, a lower bound).", labels=["target"])
    for name in r.targets:
        sent.add_metric([name], r.bytes("replicated", name))
        copies.add_metric([name], r.count("replicated", name))
        queue.add_metric([name], r.waiting(name))
        last.add_metric([name], r.at("replicated", name))
        since = r.oldest_waiting.get(name)
        oldest.add_metric([name], 0 if since is None else
                          max(0.0, (r.now - since).total_seconds()))
    yield from (sent, copies, queue, last, oldest)


def _jobs(r: Reading) -> Iterator[Metric]:
    success = GaugeMetricFamily(
        "ingestd_job_last_success_timestamp_seconds", "When each daemon job last ended without "
        "error.", labels=["name"])
    failures = CounterMetricFamily(
        "ingestd_job_failures", "Runs of each daemon job that ended in an error.",
        labels=["name"])
    jobs = sorted(set(r.labels("job_ok")) | set(r.labels("job_failed")))
    for job in jobs:
        if ("job_ok", job) in r.tallies:
            success.add_metric([job], r.at("job_ok", job))
        failures.add_metric([job], r.count("job_failed", job))
    yield from (success, failures)


def _worm(r: Reading) -> Iterator[Metric]:
    passed = GaugeMetricFamily(
        "ingestd_target_worm_check_passed", "Whether the target's last WORM check passed (1) "
        "or failed (0: no copy there counts as safe until it passes); absent: never checked.",
        labels=["target"])
    checked = GaugeMetricFamily(
        "ingestd_target_worm_checked_timestamp_seconds", "When the target's WORM check last "
        "ran.", labels=["target"])
    for name, standing in sorted(r.worm.items()):
        passed.add_metric([name], 1 if standing.passed else 0)
        checked.add_metric([name], _seconds(standing.checked_at))
    yield from (passed, checked)


class StationCollector:
    """The station's metrics, read afresh at every collection."""

    def __init__(self, station: Station) -> None:
        self.station = station

    def collect(self) -> Iterable[Metric]:
        return list(families(read(self.station), self.station.name))


def render(station: Station) -> bytes:
    """The exposition text of the station's metrics, as ``GET /metrics`` answers it."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StationCollector(station))
    return generate_latest(registry)


router = APIRouter()


@router.get("/metrics")
def metrics(request: Request) -> Response:
    """The station's metrics for Prometheus (the app sets ``app.state.station``)."""
    return Response(content=render(request.app.state.station), media_type=CONTENT_TYPE_LATEST)
