"""Integrity: hashing while copying, the station's Ed25519 key, the hash-chained custody ledger."""
