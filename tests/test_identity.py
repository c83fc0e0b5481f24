"""One file, one identity: the binding rule holds for the file installers see,
whatever the spelling of its name (properties, and the real server)."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sigledger.client.publish.submit import sign_statement
from sigledger.ledger.entry import SignedStatement, Statement, decode_entry, file_identity
from sigledger.ledger.log.app import open_log
from sigledger.ledger.log.sequencer import Sequencer, SequencerConfig
from sigledger.ledger.note import Signer
from sigledger.ledger.service.config import ServerConfig
from tests.helpers import LogProcess, get, post_add, run_cli
from tests.test_monitor import follow_args, monitor, run_sigledger

ALICE = Signer.from_seed("alice", bytes([31]) * 32)
BOB = Signer.from_seed("bob", bytes([32]) * 32)

# -- properties --------------------------------------------------------------------

_name_parts = st.lists(st.sampled_from(["norm", "demo", "x1", "py"]), min_size=1, max_size=3)
_SEPARATORS = ["-", "_", "."]


def _spell_name(parts: list[str], data: st.DataObject, wheel: bool) -> str:
    seps = ["_", "."] if wheel else _SEPARATORS  # wheel names have no dashes
    out = parts[0]
    for p in parts[1:]:
        out += data.draw(st.sampled_from(seps)) + p
    return "".join(c.upper() if data.draw(st.booleans()) else c for c in out)


def _spell_version(release: tuple[int, ...], pre: int | None, data: st.DataObject) -> str:
    parts = [str(n) for n in release]
    parts = [("0" * data.draw(st.integers(0, 2))) + p for p in parts]  # leading zeros
    text = ".".join(parts) + ".0" * data.draw(st.integers(0, 2))  # trailing zeros
    if pre is not None:
        text += data.draw(st.sampled_from(["a", "alpha", ".a", "a."])) + str(pre)
    if data.draw(st.booleans()):
        text = "v" + text
    return text


_releases = st.tuples(st.integers(0, 30), st.integers(0, 30)).map(lambda t: t)
_pre = st.none() | st.integers(0, 5)
_TAG_SETS = [["py2", "py3"], ["py3"], ["cp311", "cp312"]]


@given(_name_parts, _releases, _pre, st.booleans(), st.data())
def test_spellings_of_one_file_have_one_identity(
    parts: list[str], release: tuple[int, ...], pre: int | None, wheel: bool, data: st.DataObject
) -> None:
    canonical_name = "-".join(parts)
    version = ".".join(map(str, release)) + (f"a{pre}" if pre is not None else "")
    pythons = data.draw(st.sampled_from(_TAG_SETS))
    if wheel:
        ref = f"{canonical_name.replace('-', '_')}-{version}-{'.'.join(pythons)}-none-any.whl"
    else:
        ref = f"{canonical_name}-{version}.tar.gz"
    name = _spell_name(parts, data, wheel)
    spelled_version = _spell_version(release, pre, data)
    if wheel:
        order = data.draw(st.permutations(pythons))
        spelled = f"{name}-{spelled_version}-{'.'.join(order)}-none-any.whl"
    else:
        ext = data.draw(st.sampled_from([".tar.gz", ".zip"]))
        spelled = f"{name}-{spelled_version}{ext}"
    assert file_identity(spelled) == file_identity(ref), (spelled, ref)


@given(_name_parts, _releases, _releases, st.data())
def test_different_files_have_different_identities(
    parts: list[str], r1: tuple[int, ...], r2: tuple[int, ...], data: st.DataObject
) -> None:
    name = "_".join(parts)
    v1, v2 = ".".join(map(str, r1)), ".".join(map(str, r2))
    same_version = file_identity(f"{name}-{v1}.tar.gz") == file_identity(f"{name}-{v2}.tar.gz")
    assert same_version == (r1 == r2)
    sdist = file_identity(f"{name}-{v1}.tar.gz")
    wheel = file_identity(f"{name}-{v1}-py3-none-any.whl")
    other_tags = file_identity(f"{name}-{v1}-py2.py3-none-any.whl")
    other_platform = file_identity(f"{name}-{v1}-py3-none-win_amd64.whl")
    build = file_identity(f"{name}-{v1}-1-py3-none-any.whl")
    other_name = file_identity(f"{name}x-{v1}.tar.gz")
    keys = [i.key for i in (sdist, wheel, other_tags, other_platform, build, other_name)]
    assert len(set(keys)) == len(keys)
    assert build.release_file == wheel.release_file  # a rebuild of the same wheel


def test_identity_examples() -> None:
    sdists = ["Norm_Demo-1.0.tar.gz", "norm_demo-1.0.tar.gz", "norm-demo-1.0.tar.gz"]
    sdists += ["norm_demo-1.0.0.tar.gz", "norm.demo-v1.0.zip", "norm_demo-01.0.tar.gz"]
    assert {file_identity(f).key for f in sdists} == {"sdist norm-demo 1"}
    wheels = ["norm_demo-1.0-py2.py3-none-any.whl", "norm_demo-1.0-py3.py2-none-any.whl"]
    assert len({file_identity(f) for f in wheels}) == 1
    assert file_identity("a-1.0rc1.dev0.tar.gz") == file_identity("a-1.0.0c1dev0.tar.gz")
    assert file_identity("a-1.0.post1.tar.gz") == file_identity("a-1.0r1.tar.gz")
    assert file_identity("a-1.0.post1.tar.gz") != file_identity("a-1.0.tar.gz")


# -- the real server ---------------------------------------------------------------


def _statement(signer: Signer, filename: str, content: bytes) -> SignedStatement:
    return sign_statement(
        signer, Statement.for_file(filename, hashlib.sha256(content).digest(), len(content))
    )


SDIST_SPELLINGS = [
    "Norm_Demo-1.0.tar.gz",
    "norm_demo-1.0.tar.gz",
    "norm-demo-1.0.tar.gz",
    "norm_demo-1.0.0.tar.gz",
]


async def test_every_spelling_is_one_file_for_the_binding_rule(tmp_path: Path) -> None:
    log = LogProcess(tmp_path / "log").start()
    try:
        status, doc, _ = await post_add(log.url, [_statement(ALICE, "norm_demo-1.0.tar.gz", b"A")])
        assert status == 200
        first = doc["receipts"][0]["log_index"]
        for i, name in enumerate(SDIST_SPELLINGS):
            status, doc, _ = await post_add(log.url, [_statement(ALICE, name, b"evil %d" % i)])
            assert status == 409, (name, doc)
            assert doc["error"] == "binding_conflict"
            assert [e["log_index"] for e in doc["existing"]] == [first]
            # the same bytes under another spelling: the existing entry
            status, doc, _ = await post_add(log.url, [_statement(ALICE, name, b"A")])
            assert status == 200, (name, doc)
            (receipt,) = doc["receipts"]
            assert receipt["status"] == "existing" and receipt["log_index"] == first

        wheel = "norm_demo-1.0-py2.py3-none-any.whl"
        assert (await post_add(log.url, [_statement(ALICE, wheel, b"W")]))[0] == 200
        status, doc, _ = await post_add(
            log.url, [_statement(ALICE, "norm_demo-1.0-py3.py2-none-any.whl", b"W2")]
        )
        assert status == 409, doc
        # the sdist and the wheel are different files
        # a second signer may disagree: recorded, and shown as a conflict
        status, doc, _ = await post_add(log.url, [_statement(BOB, "norm_demo-1.0.0.tar.gz", b"B")])
        assert status == 200, doc
        bob_index = doc["receipts"][0]["log_index"]
        # a rebuild (other build tag) is a different file
        assert (
            await post_add(log.url, [_statement(ALICE, "norm_demo-1.0-py3-none-any.whl", b"P")])
        )[0] == 200
        status, doc, _ = await post_add(
            log.url, [_statement(ALICE, "norm_demo-1.0-1-py3-none-any.whl", b"P1")]
        )
        assert status == 200, doc
        rebuild_index = doc["receipts"][0]["log_index"]

        # lookups by filename find the file under any spelling
        for name in SDIST_SPELLINGS:
            status, body, _ = await get(f"{log.url}/lookup?project=Norm.Demo&filename={name}")
            assert status == 200
            found = {e["log_index"] for e in json.loads(body)["entries"]}
            assert found == {first, bob_index}, name

        # the explorer shows the disagreement and the rebuild
        status, page, _ = await get(log.url + "/project/norm-demo")
        assert status == 200 and b"conflict: 2 hashes" in page
        status, page, _ = await get(f"{log.url}/entry/{bob_index}")
        assert b'id="conflict"' in page
        status, page, _ = await get(f"{log.url}/entry/{rebuild_index}")
        assert b'id="rebuild"' in page
    finally:
        log.kill()


async def _old_rule_log(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A log written by a sequencer that bound hashes to raw filenames."""
    storage, signer, origin = await open_log(ServerConfig(data=str(data)))

    async def no_bindings(keys: object) -> dict[object, object]:
        return {}  # the old rule: another spelling was another file

    monkeypatch.setattr(storage, "find_bindings", no_bindings)
    seq = Sequencer(storage, signer, origin, SequencerConfig(batch_max_age=0.01))
    await seq.start()
    try:
        await seq.submit([_statement(ALICE, "norm_demo-1.0.tar.gz", b"one")])
        await seq.submit([_statement(ALICE, "Norm_Demo-1.0.0.tar.gz", b"two")])
        await seq.submit([_statement(BOB, "other-2.0.tar.gz", b"fine")])
    finally:
        await seq.stop()
        await storage.close()
    monkeypatch.undo()
    # ... and stored it as schema 1 did: text columns, no identity (the server migrates it).
    as_schema_1(data / "log.db")


def as_schema_1(path: Path) -> None:
    """Rewrite a log database in the layout of schema 1."""
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT idx, data FROM entries ORDER BY idx").fetchall()
        db.executescript(
            """
            DROP TABLE entries; DROP TABLE hash_keys; DROP TABLE file_keys; DROP TABLE signers;
            DELETE FROM meta WHERE key = 'index_salt';
            CREATE TABLE entries (idx INTEGER PRIMARY KEY, data BLOB NOT NULL,
                project TEXT NOT NULL, version TEXT NOT NULL, filename TEXT NOT NULL,
                sha256 BLOB NOT NULL, signer TEXT NOT NULL, time_ms INTEGER NOT NULL);
            CREATE INDEX entries_file ON entries (project, version, filename);
            CREATE INDEX entries_sha256 ON entries (sha256);
            CREATE UNIQUE INDEX entries_binding ON entries (signer, project, version, filename);
            UPDATE meta SET value = '1' WHERE key = 'schema_version';
            """
        )
        for idx, leaf in rows:
            e = decode_entry(leaf)
            s = e.statement
            db.execute(
                "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (idx, leaf, s.project, s.version, s.filename, s.sha256,
                 e.signed.signer_vkey(), e.time_ms),
            )  # fmt: skip


async def test_a_log_written_under_the_old_rule_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _old_rule_log(tmp_path / "log", monkeypatch)
    log = LogProcess(tmp_path / "log").start()
    try:
        # it keeps serving, and says what is wrong, once
        _, metrics, _ = await get(log.url + "/metrics")
        assert b"sigledger_identity_violations 1.0" in metrics
        stdout = (tmp_path / "log.stdout.log").read_text()
        warnings = [ln for ln in stdout.splitlines() if "more than one hash for one file" in ln]
        assert len(warnings) == 1 and '"entries": [0, 1]' in warnings[0]
        # the new rule holds from now on: a third spelling is refused
        status, doc, _ = await post_add(
            log.url, [_statement(ALICE, "norm-demo-1.0.tar.gz", b"three")]
        )
        assert status == 409
        assert [e["log_index"] for e in doc["existing"]] == [0]

        rc, out, err = await run_sigledger("fsck", log.url, "--log-key", log.vkey, "--json")
        assert rc == 1, err
        findings = json.loads(out)["failures"]
        assert [f["type"] for f in findings] == ["identity_equivocation"], findings

        rc, alarms, err = await monitor(tmp_path / "state", *follow_args(log.url, log.vkey))
        assert rc == 4, err
        kinds = [a["type"] for a in alarms]
        assert kinds == ["identity_equivocation"], alarms
        ev = alarms[0]["evidence"]
        assert ev["identity"] == "sdist norm-demo 1"
        assert [e["index"] for e in ev["entries"]] == [0, 1]
    finally:
        log.kill()


async def test_publishing_the_same_bytes_under_another_spelling(tmp_path: Path) -> None:
    log = LogProcess(tmp_path / "log").start()
    try:
        key = tmp_path / "alice.key"
        assert run_cli("keygen", "--name", "alice@example.org", "--out", str(key)).returncode == 0
        first, second = tmp_path / "a", tmp_path / "b"
        first.mkdir()
        second.mkdir()
        (first / "norm_demo-1.0.tar.gz").write_bytes(b"the sdist")
        (second / "Norm.Demo-1.0.0.tar.gz").write_bytes(b"the sdist")
        args = ("publish", "--log", log.url, "--key", str(key), "--log-key", log.vkey)
        r = run_cli(*args, str(first / "norm_demo-1.0.tar.gz"))
        assert r.returncode == 0, r.stderr
        r = run_cli(*args, "--json", str(second / "Norm.Demo-1.0.0.tar.gz"))
        assert r.returncode == 0, r.stderr
        (result,) = json.loads(r.stdout)["results"]
        assert result["status"] == "existing" and result["log_index"] == 0
        assert result["logged_as"] == "norm_demo-1.0.tar.gz"
        (second / "Norm.Demo-1.0.0.tar.gz").write_bytes(b"other bytes")
        r = run_cli(*args, str(second / "Norm.Demo-1.0.0.tar.gz"))
        assert r.returncode == 1 and "409 binding_conflict" in r.stderr
        assert "logged as norm_demo-1.0.tar.gz" in r.stderr
    finally:
        log.kill()
