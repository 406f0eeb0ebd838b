"""One exception tree. Each class carries its message and its exit code; only the CLI exits.

Exit codes (also listed by ``scripts/exit-codes``):

* 0  success
* 1  a check found discrepancies (verify, audit, ledger verify): not an error of ingestd itself
* 2  usage error (bad command-line arguments; click's own code)
* 3  configuration error
* 4  catalog error
* 5  store error (evidence store unwritable, disk full, object damaged)
* 6  recorder error (mount, unreadable recorder, unregistered)
* 7  integrity error (key, signature, ledger)
* 8  media probe error
* 9  target (off-site replication) error
* 10 not found (item, recorder, case)
* 11 ambiguous (an item prefix that matches several items)
* 12 export error
* 13 shutdown requested
"""

from __future__ import annotations


class IngestdError(Exception):
    """ingestd failed."""

    exit_code = 70

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.__class__.__name__).strip()
        super().__init__(self.message)

    def diagnostics(self) -> str:
        return self.message


class DiscrepancyFound(IngestdError):
    """A check found discrepancies."""

    exit_code = 1


class UsageError(IngestdError):
    """The command was used wrongly."""

    exit_code = 2


class ConfigError(IngestdError):
    """The configuration is invalid."""

    exit_code = 3


class CatalogError(IngestdError):
    """The catalog cannot be used."""

    exit_code = 4


class StoreError(IngestdError):
    """The evidence store cannot be used."""

    exit_code = 5


class StoreFull(StoreError):
    """The evidence store's file system is full."""


class ObjectDamaged(StoreError):
    """A stored object no longer hashes to its name."""


class RecorderError(IngestdError):
    """The recorder cannot be read."""

    exit_code = 6


class RecorderNotRegistered(RecorderError):
    """The recorder is not in the registry."""


class RecorderRefused(RecorderError):
    """The recorder was turned away (its names disagree, or it is being served already)."""


class SourceReadError(RecorderError):
    """A recorder file could not be read (a bad sector, or the recorder was pulled out)."""


class NotRegularFile(RecorderError):
    """Not a regular file (a FIFO, device, socket or folder): it is never read."""


class RecorderGone(RecorderError):
    """The recorder was removed while it was being read."""


class SourceChanged(RecorderError):
    """A file on the recorder changed while it was being copied."""


class IntegrityError(IngestdError):
    """A key, signature or ledger problem."""

    exit_code = 7


class MediaError(IngestdError):
    """A media file could not be probed."""

    exit_code = 8


class TargetError(IngestdError):
    """An off-site target failed."""

    exit_code = 9


class TargetUnreachable(TargetError):
    """An off-site target cannot be reached or used now (network, credentials, share gone):
    nothing is known about the copies it holds."""


class ReplicaMismatch(TargetError):
    """An off-site copy is missing or does not hold the item's bytes."""


class NotFound(IngestdError):
    """Not found."""

    exit_code = 10


class Ambiguous(IngestdError):
    """The prefix matches more than one item."""

    exit_code = 11


class ExportError(IngestdError):
    """The export failed."""

    exit_code = 12


class ShutdownRequested(BaseException):
    """A signal asked the process to stop.

    Derived from BaseException so that ``except Exception`` in work code cannot swallow it.
    """

    exit_code = 13

    def __init__(self, signum: int, *, abort: bool = False) -> None:
        self.signum = signum
        self.abort = abort
        super().__init__(f"signal {signum}: {'abort' if abort else 'finish current work'}")
