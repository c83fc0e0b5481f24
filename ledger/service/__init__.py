"""Plumbing every sigledger service shares: configuration, key files, SQLite, the
process runner, admission control, verification workers and operational logging."""
