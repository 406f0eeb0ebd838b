"""The catalog: what is stored, where it came from, its labels, flags, replicas and ledger."""

from .db import Catalog, open_catalog

__all__ = ["Catalog", "open_catalog"]
