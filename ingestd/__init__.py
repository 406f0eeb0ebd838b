"""ingestd: evidence-grade ingestion and integrity daemon for body-worn recorder docks."""

__version__ = "0.1.0"
