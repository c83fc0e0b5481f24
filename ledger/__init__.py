"""sigledger's log: pure wire formats (merkle, note, checkpoint, tiles, entry) and the
services that keep a log (storage, sequencer, server)."""
