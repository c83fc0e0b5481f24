"""The log side of sigledger.

At this package's root live the **pure formats** -- no I/O, no asyncio, only bytes in
and values out (a test enforces it): :mod:`.merkle` (RFC 6962 hashes and proofs),
:mod:`.tiles` (c2sp.org/tlog-tiles paths and tile math), :mod:`.note` (c2sp.org/signed-note
keys and signatures), :mod:`.checkpoint` (c2sp.org/tlog-checkpoint), :mod:`.entry`
(release statements and logged entries), :mod:`.wire` (the HTTP request and answer
bodies), :mod:`.witnessproto` (c2sp.org/tlog-witness) and :mod:`.errors`.

Below it, the services: :mod:`.service` (what every service shares), :mod:`.log` (the
log server) and :mod:`.witness` (the witness server). Services import formats; formats
import nothing but formats.
"""
