"""One exception tree. Each class carries its message and its exit code; only the CLI exits.

Every class has its own exit code, but for one rule that keeps scripts written for the codes of
families working: a family's base class and the leaf that is its most common case share the
family's code (5 the store, and a full disk; 6 a recorder, and one not registered; 9 a target,
and one that cannot be reached now), and each other leaf has the family's code followed by one
digit (51 a damaged object; 61 to 65 a recorder refused, unreadable, not a regular file, gone or
changing; 91 a replica mismatch). 0 is success; 2 is also click's own code for a command line
it cannot parse.

The table is ``exit_code_table()``, built from the classes below: ``ingestd --help`` ends with
it, and README.md shows it (``tests/unit/test_exit_codes.py`` keeps the two the same).
"""

from __future__ import annotations

import inspect
from typing import NamedTuple


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

    exit_code = 5  # the store's most common failure: the family's code


class ObjectDamaged(StoreError):
    """A stored object no longer hashes to its name."""

    exit_code = 51


class RecorderError(IngestdError):
    """The recorder cannot be read."""

    exit_code = 6


class RecorderNotRegistered(RecorderError):
    """The recorder is not in the registry."""

    exit_code = 6  # the recorder's most common refusal: the family's code


class RecorderRefused(RecorderError):
    """The recorder was turned away (its names disagree, or it is being served already)."""

    exit_code = 61


class SourceReadError(RecorderError):
    """A recorder file could not be read (a bad sector, or the recorder was pulled out)."""

    exit_code = 62


class NotRegularFile(RecorderError):
    """Not a regular file (a FIFO, device, socket or folder): it is never read."""

    exit_code = 63


class RecorderGone(RecorderError):
    """The recorder was removed while it was being read."""

    exit_code = 64


class SourceChanged(RecorderError):
    """A file on the recorder changed while it was being copied."""

    exit_code = 65


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
    """An off-site target cannot be reached or used now (network, credentials, share gone).

    Nothing is known about the copies it holds.
    """

    exit_code = 9  # a target's most common failure: the family's code


class ReplicaMismatch(TargetError):
    """An off-site copy is missing or does not hold the item's bytes."""

    exit_code = 91


class NotFound(IngestdError):
    """Not found."""

    exit_code = 10


class Ambiguous(IngestdError):
    """The prefix matches more than one item."""

    exit_code = 11


class TimestampError(IngestdError):
    """A time-stamping authority did not give a token this station can trust."""

    exit_code = 14


class ShutdownRequested(BaseException):
    """A signal asked the process to stop.

    Derived from BaseException so that ``except Exception`` in work code cannot swallow it.
    """

    exit_code = 13

    def __init__(self, signum: int, *, abort: bool = False) -> None:
        self.signum = signum
        self.abort = abort
        super().__init__(f"signal {signum}: {'abort' if abort else 'finish current work'}")


class ExitCode(NamedTuple):
    code: int
    error: str  # the class's name
    meaning: str  # the first line of its docstring


def exit_code_table() -> list[ExitCode]:
    """Every class of the tree above with its exit code, lowest first (a family's base class
    before its leaf)."""
    classes: list[type[IngestdError] | type[ShutdownRequested]] = [ShutdownRequested]
    pending = [IngestdError]
    while pending:
        cls = pending.pop()
        if cls.__module__ == __name__:
            classes.append(cls)
            pending.extend(cls.__subclasses__())
    return [ExitCode(code=cls.exit_code, error=cls.__name__,
                     meaning=(inspect.getdoc(cls) or cls.__name__).splitlines()[0])
            for cls in sorted(classes, key=lambda c: (c.exit_code, len(c.__mro__)))]
