"""Honest and misbehaving tlog-tiles logs for tests, in memory or over HTTP.

:class:`SimulatedLog` is an honest log kept in memory: append entries, publish
a signed (and, with ``cosigners``, witness-cosigned) checkpoint, and it serves
the tlog-tiles read API at the published size. It is a
:class:`~sigledger.client.tiles.TileSource` itself (``await log.tile(path)``),
and after :meth:`SimulatedLog.start` it serves ``/checkpoint``,
``/tile/...`` and ``/proof/consistency`` on 127.0.0.1. It can be told to
misbehave in every way a client must catch:

* :meth:`~SimulatedLog.fork`: a second log with the same key and history so far,
  whose later entries differ (a split view);
* :meth:`~SimulatedLog.rewrite`: change a logged entry (a rewritten history);
* :meth:`~SimulatedLog.corrupt` / ``overrides``: serve other bytes for a tile or bundle;
* ``missing``: answer 404 for some paths;
* ``publish(cosign=False)``: drop the witness cosignatures;
* :meth:`~SimulatedLog.serve_stale_checkpoint`: an older checkpoint in front of newer tiles;
* :meth:`~SimulatedLog.of_tree`: only hash tiles, of a prebuilt tree (large sizes).

:class:`MemoryCheckpointStore` is a :class:`~sigledger.client.trust.CheckpointStore`
in a dict.
"""

from __future__ import annotations

import base64
import json
import time

from aiohttp import web

from sigledger.client.remote import LogClient
from sigledger.ledger import merkle, tiles
from sigledger.ledger.checkpoint import Checkpoint, format_checkpoint, sign_checkpoint
from sigledger.ledger.errors import FormatError
from sigledger.ledger.note import Signer, Verifier, sign_cosignature
from tests.memtree import MemoryTree

FORGED_LOG_KEY = Signer.from_seed("forged.example/log", bytes([14]) * 32)
_JSON = "application/json"


def _not_found(what: str) -> bytes:
    """The log's error body for something it does not serve."""
    return json.dumps({"error": "not_found", "message": f"{what} is not served"}).encode()


class MemoryCheckpointStore:
    """The last trusted checkpoint note per origin, in memory."""

    def __init__(self) -> None:
        self.notes: dict[str, bytes] = {}

    def get(self, origin: str) -> bytes | None:
        return self.notes.get(origin)

    def put(self, origin: str, note: bytes) -> None:
        self.notes[origin] = note


class SimulatedLog:
    """A tlog-tiles log in memory with whatever history we give it (see the module docstring).

    Only the published size is served. ``overrides`` maps a path to the bytes
    served instead (a tampered response); ``missing`` holds paths answered with
    404; ``fetched`` lists every tile path asked for.
    """

    def __init__(self, key: Signer = FORGED_LOG_KEY, cosigners: tuple[Signer, ...] = ()) -> None:
        self.key = key
        self.cosigners = cosigners  # witnesses (cosignature/v1 keys) cosigning every note
        self.entries: list[bytes] = []
        self.tree = MemoryTree()
        self.size = 0
        self.note = b""
        self.overrides: dict[str, bytes] = {}
        self.missing: set[str] = set()
        self.fetched: list[str] = []
        self.cosigned: list[int] = []  # cosignature timestamps used, one per cosigned publish
        self.url = f"memory://{key.name}"  # until start()
        self._runner: web.AppRunner | None = None

    @classmethod
    def of_tree(cls, tree: MemoryTree, key: Signer = FORGED_LOG_KEY) -> SimulatedLog:
        """A log serving the hash tiles of ``tree`` (shared, not copied), no entry bundles."""
        log = cls(key)
        log.tree = tree
        return log

    @property
    def vkey(self) -> str:
        return self.key.vkey

    @property
    def verifier(self) -> Verifier:
        return self.key.verifier()

    # --- history ------------------------------------------------------------------

    def append(self, *entries: bytes) -> list[int]:
        """Add entries (not yet published); returns their indexes."""
        out = []
        for e in entries:
            self.entries.append(e)
            out.append(self.tree.append(merkle.leaf_hash(e)))
        return out

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        size = self.tree.size if size is None else size
        return Checkpoint(self.key.name, size, self.tree.root(size))

    def publish(self, size: int | None = None, *, cosign: bool = True) -> bytes:
        """Sign (and cosign) a checkpoint of the first ``size`` leaves (default: all) and
        serve it.

        Publishing again without new entries re-cosigns the same checkpoint: the
        cosignature timestamps, and so the note, change. ``cosign=False`` drops the
        cosignatures."""
        cp = self.checkpoint(size)
        self.size = cp.size
        note = sign_checkpoint(cp, self.key)
        if cosign and self.cosigners:
            stamp = int(time.time()) + len(self.cosigned)
            self.cosigned.append(stamp)
            text = format_checkpoint(cp)
            lines = "".join(sign_cosignature(w, text, stamp).line() for w in self.cosigners)
            note += lines.encode()
        self.note = note
        return note

    def serve_stale_checkpoint(self, size: int) -> bytes:
        """Serve a signed checkpoint of the first ``size`` leaves while the tiles stay at
        the published size (a cache in front of ``/checkpoint`` that lags behind)."""
        self.note = sign_checkpoint(self.checkpoint(size), self.key)
        return self.note

    # --- misbehaviour ---------------------------------------------------------------

    def fork(self) -> SimulatedLog:
        """Another log under the same key with the same entries (and published note) so far."""
        other = SimulatedLog(self.key, self.cosigners)
        other.append(*self.entries)
        other.size, other.note = self.size, self.note
        return other

    def rewrite(self, index: int, entry: bytes) -> None:
        """Replace logged entry ``index``: the tree is rebuilt, the next publish signs it."""
        self.entries[index] = entry
        self.tree = MemoryTree(merkle.leaf_hash(e) for e in self.entries)

    def corrupt(self, path: str) -> bytes:
        """Serve ``path`` with its first byte flipped; returns the bytes served."""
        good = self.honest(path)
        assert good is not None, f"{path} is not served at size {self.size}"
        self.overrides[path] = bytes([good[0] ^ 1]) + good[1:]
        return self.overrides[path]

    # --- the read API -----------------------------------------------------------------

    def honest(self, path: str) -> bytes | None:
        """What an honest log serves at ``path`` (None: not found)."""
        try:
            ref = tiles.parse_tile_path(path)
        except FormatError:
            return None
        level = 0 if ref.is_entries else ref.level
        if tiles.tile_width(level, ref.n, self.size) < ref.width:
            return None
        first = ref.n * tiles.TILE_WIDTH
        if ref.is_entries:
            if len(self.entries) < first + ref.width:
                return None
            return tiles.encode_entry_bundle(self.entries[first : first + ref.width])
        return b"".join(self.tree.node(8 * ref.level, first + i) for i in range(ref.width))

    def served(self, path: str) -> bytes | None:
        """What this log serves at ``path`` (None: not found)."""
        if path in self.missing:
            return None
        if path in self.overrides:
            return self.overrides[path]
        return self.honest(path)

    async def tile(self, path: str) -> bytes:
        """The :class:`~sigledger.client.tiles.TileSource` method: what the HTTP client
        answers for this log, a missing path included."""
        self.fetched.append(path)
        data = self.served(path)
        if data is None:
            # The very error the HTTP client raises for this 404 answer.
            LogClient(self.url)._raise_for(404, _not_found(path), f"fetching {path}")
            raise AssertionError("a 404 answer must raise")
        return data

    def consistency_proof(self, old: int, new: int) -> list[bytes]:
        """What ``/proof/consistency`` answers (this log's own tree)."""
        return self.tree.prove_consistency(old, new)

    # --- HTTP -------------------------------------------------------------------------

    async def _checkpoint(self, request: web.Request) -> web.Response:
        return web.Response(body=self.note, content_type="text/plain")

    async def _tile(self, request: web.Request) -> web.Response:
        path = "tile/" + request.match_info["path"]
        self.fetched.append(path)
        body = self.served(path)
        if body is None:
            return web.Response(status=404, body=_not_found(path), content_type=_JSON)
        return web.Response(body=body)

    async def _consistency(self, request: web.Request) -> web.Response:
        if "/proof/consistency" in self.missing:
            return web.Response(status=404, body=_not_found("proof"), content_type=_JSON)
        try:
            old, new = int(request.query["old"]), int(request.query["new"])
            proof = self.consistency_proof(old, new)
        except (KeyError, ValueError):
            return web.json_response({"error": "bad_request", "message": "bad sizes"}, status=400)
        return web.json_response({"hashes": [base64.b64encode(h).decode() for h in proof]})

    async def start(self) -> SimulatedLog:
        app = web.Application()
        app.router.add_get("/checkpoint", self._checkpoint)
        app.router.add_get("/tile/{path:.+}", self._tile)
        app.router.add_get("/proof/consistency", self._consistency)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
