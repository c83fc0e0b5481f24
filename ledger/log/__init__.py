"""The log server: durable storage, the sequencer that batches and signs, the tile tree,
witness cosigning, the HTTP app (c2sp.org/tlog-tiles reads, ``/add``, lookups) and the
HTML explorer."""
