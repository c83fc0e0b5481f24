"""The witness server (c2sp.org/tlog-witness): it cosigns a log's checkpoints only when
each is consistent with the last one it cosigned, and keeps that state durably."""
