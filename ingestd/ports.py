"""Ports: what the use cases ask of the adapters, in the domain's words.

``CatalogTx`` is one catalog transaction, handed out by ``Catalog.read()``, ``Catalog.write()``
and ``Custody.transaction()``; the catalog's ``queries.Tx`` is the one that exists. Its methods
take and return the domain's records (``domain.records``, ``domain.models``), plain values, or
lists and dicts of them, never a database row.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    # Names for the annotations only: a command that opens a catalog loads none of them
    # on this module's account (the ledger's code, say, only where it is used).
    from .domain.alerts import Alert
    from .domain.flags import Flag
    from .domain.models import LedgerEntry, Recorder, UnreadableEntry
    from .domain.policy import Retention, SpotCandidate
    from .domain.records import (
        Acquisition,
        AcquisitionState,
        Case,
        Checkpoint,
        DockedAcquisition,
        DockSession,
        DockSource,
        FlaggedItem,
        FlagRecord,
        Item,
        ItemFilter,
        Justification,
        KeyRecord,
        Label,
        ListedItem,
        Replica,
        ReportRow,
        ReviewResult,
        SessionState,
        SpotCheck,
        SpotResult,
        WindowCheck,
    )
    from .domain.status import (
        Counts,
        FlaggedRef,
        JobRun,
        LedgerEvent,
        LockBehind,
        ReplicaStats,
        SessionSummary,
        SessionTally,
        StoredSince,
        Tally,
        WormStanding,
    )


class CatalogTx(Protocol):
    """One catalog transaction: every query the use cases make."""

    # -- the ledger ----------------------------------------------------------------------

    #: The entries this transaction inserted, in order.
    inserted: list[LedgerEntry]

    def ledger_last_time(self) -> datetime | None: ...

    def ledger_head(self) -> tuple[int, str | None]: ...

    def insert_entry(self, entry: LedgerEntry) -> None: ...

    def iter_entries(
        self,
        *,
        after: int = 0,
        item: str | None = None,
        kinds: Sequence[str] | None = None,
        upto: int | None = None,
        batch: int = 5000,
    ) -> Iterator[LedgerEntry]: ...

    def entry_hashes(self, *, upto: int, batch: int = 50000) -> Iterator[tuple[int, str]]: ...

    def entries_of_kinds(
        self, kinds: Sequence[str], *, station: str | None = None
    ) -> list[LedgerEntry]: ...

    def entries_to_check(
        self,
        *,
        after: int = 0,
        upto: int | None = None,
        item: str | None = None,
        kinds: Sequence[str] | None = None,
        batch: int = 1000,
    ) -> Iterator[LedgerEntry | UnreadableEntry]: ...

    def entry_to_check(self, seq: int) -> LedgerEntry | UnreadableEntry | None: ...

    def add_key(self, *, key_id: str, station: str, public_hex: str, at: datetime) -> None: ...

    def retire_key(self, key_id: str, at: datetime) -> None: ...

    def all_keys(self) -> list[KeyRecord]: ...

    # -- recorders -----------------------------------------------------------------------

    def recorder(self, serial: str, *, active_only: bool = True) -> Recorder | None: ...

    def upsert_recorder(self, rec: Recorder, *, at: datetime, ledger_seq: int) -> None: ...

    def deactivate_recorder(self, serial: str, *, ledger_seq: int) -> bool: ...

    def list_recorders(self, *, include_removed: bool = False) -> list[Recorder]: ...

    # -- dock sessions and acquisitions --------------------------------------------------

    def open_session(
        self,
        *,
        serial: str,
        station: str,
        source: DockSource,
        mountpoint: str,
        state: SessionState,
        docked_at: datetime,
        actor: str,
        ledger_seq: int,
        health: Mapping[str, Any],
        officer: str = "",
        finished_at: datetime | None = None,
        error: str = "",
        pid: int | None = None,
        host: str | None = None,
    ) -> int: ...

    def session_skipped(self, session_id: int, *, by_kind: Mapping[str, int]) -> None: ...

    def close_session(
        self,
        session_id: int,
        *,
        state: SessionState,
        finished_at: datetime,
        files_seen: int,
        files_new: int,
        files_known: int,
        files_failed: int,
        bytes_copied: int,
        error: str,
        health: Mapping[str, Any] | None = None,
    ) -> None: ...

    def session(self, session_id: int) -> DockSession | None: ...

    def start_acquisition(
        self,
        *,
        session_id: int,
        serial: str,
        path: str,
        path_hex: str,
        size: int,
        mtime_ns: int,
        started_at: datetime,
    ) -> int: ...

    def acquisition_stored(
        self,
        acq_id: int,
        *,
        state: AcquisitionState,
        item: str,
        size: int,
        at: datetime,
        ledger_seq: int,
    ) -> None: ...

    def acquisition_failed(
        self, acq_id: int, *, state: AcquisitionState, error: str, at: datetime
    ) -> None: ...

    def acquisition_wiped(self, acq_id: int, at: datetime | None) -> None: ...

    def known_source(
        self, *, serial: str, path_hex: str, size: int, mtime_ns: int
    ) -> str | None: ...

    def interrupt_abandoned(
        self, *, station: str, host: str, at: datetime, alive: Callable[[int], bool]
    ) -> tuple[int, int]: ...

    def wipe_candidates(self, session_id: int) -> list[Acquisition]: ...

    def acquisitions_of(self, sha256: str) -> list[DockedAcquisition]: ...

    def recent_sessions(self, limit: int = 20, *, station: str) -> list[SessionSummary]: ...

    # -- items, labels, flags ------------------------------------------------------------

    def item(self, sha256: str) -> Item | None: ...

    def insert_item(self, item: Item) -> None: ...

    def set_retention(self, sha256: str, retention: Retention) -> None: ...

    def set_local_present(self, sha256: str, present: bool) -> None: ...

    def resolve(self, ref: str) -> str: ...

    def item_flags(self, sha256: str) -> list[FlagRecord]: ...

    def has_flag(self, sha256: str, flag: Flag) -> bool: ...

    def insert_flag(
        self, *, item: str, flag: Flag, set_at: datetime, detail: str, ledger_seq: int
    ) -> None: ...

    def current_label(self, sha256: str) -> Label | None: ...

    def label_history(self, sha256: str) -> list[Label]: ...

    def insert_label(
        self,
        *,
        item: str,
        case: str,
        party: str,
        officer: str,
        categories: Sequence[str],
        by: str,
        at: datetime,
        ledger_seq: int,
        case_type: str | None = None,
    ) -> None: ...

    def insert_justification(
        self, *, item: str, flag: Flag, reason: str, by: str, at: datetime, ledger_seq: int
    ) -> None: ...

    def justifications_of(self, sha256: str) -> list[Justification]: ...

    def search_items(
        self, wanted: ItemFilter | None = None, *, limit: int | None = None
    ) -> list[ListedItem]: ...

    def iter_item_batches(
        self, wanted: ItemFilter | None = None, *, limit: int | None = None, batch: int = ...
    ) -> Iterator[list[ListedItem]]: ...

    def flags_by_item(self, shas: Sequence[str] | None = None) -> dict[str, list[Flag]]: ...

    def flagged_items(self, wanted: Sequence[Flag]) -> list[FlaggedItem]: ...

    def justifications_by_flag(
        self, wanted: Sequence[Flag]
    ) -> dict[tuple[str, Flag], list[Justification]]: ...

    def counts(self, *, station: str) -> Counts: ...

    def items_needing_window_check(self, *, station: str) -> list[WindowCheck]: ...

    def verified_targets(self, sha256: str) -> set[str]: ...

    def proven_targets(self, sha256: str, locations: Mapping[str, str]) -> set[str]: ...

    def items_with_unproven_copies(self, *, station: str, targets: Sequence[str]) -> set[str]: ...

    def last_rehashes(self, *, station: str) -> dict[str, datetime | None]: ...

    def offsite_copies(self, *, station: str, targets: Sequence[str]) -> list[Replica]: ...

    # -- jobs ----------------------------------------------------------------------------

    def job_started(self, *, job: str, station: str, at: datetime) -> JobRun: ...

    def job_finished(self, run: JobRun, *, at: datetime, ok: bool, summary: str,
                     detail: Mapping[str, Any] | None = None) -> JobRun: ...

    def last_jobs(self, *, station: str) -> list[JobRun]: ...

    # -- replication and checkpoints -----------------------------------------------------

    def replication_queue(
        self, targets: Sequence[str], *, limit: int | None = None, station: str | None = None
    ) -> list[Item]: ...

    def replica(self, sha256: str, target: str) -> Replica | None: ...

    def replicas_of(self, sha256: str) -> dict[str, Replica]: ...

    def copy_begun_at(self, sha256: str, location: str) -> bool:
        """Whether a copy of the item was ever begun at ``location`` (or at a place not
        recorded, where it may be), under any target name."""

    def replica_uploading(
        self, sha256: str, target: str, *, attempts: int, at: datetime
    ) -> None: ...

    def replica_verified(
        self,
        sha256: str,
        target: str,
        *,
        key: str,
        size: int,
        remote_sha256: str | None,
        retain_until: datetime | None,
        hold: bool,
        location: str,
        read_back: bool,
        at: datetime,
        ledger_seq: int,
    ) -> None: ...

    def replica_failed(self, sha256: str, target: str, *, error: str, at: datetime) -> None: ...

    def replica_locked(
        self, sha256: str, target: str, *, retain_until: datetime | None, hold: bool, at: datetime
    ) -> None: ...

    def replica_lock_failed(
        self, sha256: str, target: str, *, error: str, at: datetime
    ) -> None: ...

    def item_rehashed(self, sha256: str, *, at: datetime) -> None: ...

    def replica_proven(self, sha256: str, target: str, *, at: datetime) -> None: ...

    def interrupt_uploads(self, at: datetime) -> int: ...

    def relocate_replicas(
        self, target: str, location: str, at: datetime, *, station: str
    ) -> int: ...

    def replica_found_bad(
        self, sha256: str, target: str, *, version_id: str | None, error: str, at: datetime
    ) -> None: ...

    def target_identity(self, target: str, location: str) -> str | None: ...

    def record_target_identity(
        self, target: str, location: str, identity: str, at: datetime
    ) -> None: ...

    def worm_checked(self, target: str, *, location: str, passed: bool, at: datetime,
                     ledger_seq: int) -> None: ...

    def worm_standings(self) -> list[WormStanding]: ...

    def worm_failed_targets(self) -> set[str]: ...

    def worm_sample(self, target: str, location: str, *, limit: int) -> list[Replica]: ...

    def locks_behind(self, *, station: str | None = None) -> list[LockBehind]: ...

    def replica_stats(
        self, targets: Sequence[str], *, station: str
    ) -> dict[str, ReplicaStats]: ...

    def add_checkpoint(
        self, *, target: str, name: str, seq: int, head_hash: str, at: datetime
    ) -> None: ...

    def last_checkpoint(self, target: str, *, station: str) -> Checkpoint | None: ...

    def newest_checkpoint_seen(self, *, station: str, target: str) -> Checkpoint | None: ...

    def remember_checkpoint(
        self, *, station: str, target: str, name: str, seq: int, head_hash: str, at: datetime
    ) -> None: ...

    def spot_candidates(self, *, station: str) -> list[SpotCandidate]: ...

    def insert_spot_check(
        self,
        *,
        item: str,
        officer: str,
        checked_at: datetime,
        period_start: datetime,
        fixity: str,
        decode: str,
        result: SpotResult,
        ledger_seq: int,
    ) -> int: ...

    def latest_spot_check(self, sha256: str) -> SpotCheck | None: ...

    def insert_spot_review(
        self,
        *,
        check_id: int,
        item: str,
        by: str,
        result: ReviewResult,
        note: str,
        at: datetime,
        ledger_seq: int,
    ) -> int: ...

    def list_spot_checks(self, *, officer: str | None = None) -> list[SpotCheck]: ...

    def case(self, case: str) -> Case | None: ...

    def closed_cases(self, *, archived: bool | None = None) -> list[Case]: ...

    def close_case(self, case: str, *, closed_at: datetime, closed_by: str,
                   ledger_seq: int) -> None: ...

    def case_archived(self, case: str, *, at: datetime, location: str, package: str,
                      ledger_seq: int) -> None: ...

    def reopen_case(self, case: str) -> None: ...

    def report_rows(self, *, since: datetime, until: datetime,
                    by: str | None) -> list[ReportRow]: ...
    # -- alerts ----------------------------------------------------------------------------

    def alerts(self, *, station: str, firing_only: bool = False) -> list[Alert]: ...

    def keep_alert(self, alert: Alert, *, station: str) -> None: ...

    def last_session_by_recorder(self, *, station: str) -> list[SessionSummary]: ...

    def session_flags(self, session_ids: Sequence[int],
                      wanted: Sequence[Flag]) -> dict[int, dict[Flag, list[str]]]: ...

    def unjustified_flags(self, wanted: Sequence[Flag], *,
                          station: str) -> dict[Flag, list[str]]: ...

    # -- tallies, for metrics ----------------------------------------------------------------

    def tallies(self, *, station: str) -> list[Tally]: ...

    def running_sessions(self, *, station: str) -> list[SessionSummary]: ...

    def waiting_walk_since(self, *, station: str, target: str, waiting: int) -> datetime | None: ...
    # -- the status page -----------------------------------------------------------------

    def session_tally(self, session_id: int, *, latest: int) -> SessionTally: ...

    def stored_since(self, *, station: str, day: datetime, week: datetime) -> StoredSince: ...

    def flagged_refs(self, kinds: Sequence[str], *, station: str,
                     per_kind: int) -> dict[str, list[FlaggedRef]]: ...

    def recent_events(self, limit: int, *, station: str) -> list[LedgerEvent]: ...

    def item_page(self, wanted: ItemFilter, *, after: str | None,
                  limit: int) -> list[ListedItem]: ...
    # -- court packages (export) -----------------------------------------------------------

    def export_entries(self, items: Collection[str], *,
                       upto: int | None = None) -> list[LedgerEntry]: ...
