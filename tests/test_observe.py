"""Observers end to end: ``sigledger observe``, the observing proxy, the policy over
observations, ``verify`` and the monitor, against a real log and two real pypiserver
views of one package folder, one of which serves other bytes for one file (a
targeted attack)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from sigledger.client.install.policy import (
    LogTrust,
    Policy,
    SignerRule,
    dump_policy,
    load_policy,
)
from sigledger.client.publish.submit import write_key
from sigledger.ledger.entry import SignedObservation, decode_entry, decode_signed
from sigledger.ledger.note import Signer, Verifier
from tests.helpers import LogProcess, ProxyProcess, run_cli, sigledger_cmd, tree_env
from tests.index import PyPIServer, http_get, pip_install, uv_install, wheel
from tests.test_monitor import monitor

MIRROR = Signer.from_seed("mirror.example/observer", hashlib.sha256(b"mirror").digest())
SECOND = Signer.from_seed("second.example/observer", hashlib.sha256(b"second").digest())
PROXY = Signer.from_seed("proxy.example/observer", hashlib.sha256(b"proxy").digest())
VICTIM = "demo-1.1-py3-none-any.whl"


@dataclass
class Views:
    log: LogProcess
    honest: PyPIServer
    tampered: PyPIServer
    tmp: Path
    files: dict[str, bytes]  # what the honest view serves
    evil: bytes  # what the tampered view serves for VICTIM
    keys: dict[str, Path]

    def observe(self, index: str, key: str, state: str, *projects: str) -> tuple[int, Any]:
        r = run_cli(
            "observe",
            "--json",
            "--index",
            index,
            "--log",
            self.log.url,
            "--log-key",
            self.log.vkey,
            "--key",
            str(self.keys[key]),
            "--state",
            str(self.tmp / state),
            *projects,
            timeout=120,
        )
        assert r.stdout, r.stderr
        return r.returncode, json.loads(r.stdout)

    def policy(self, name: str, *observers: Signer) -> Path:
        verifier = Verifier.from_vkey(self.log.vkey)
        rule = SignerRule(frozenset(), 1, observers=frozenset(o.vkey for o in observers))
        path = self.tmp / name
        path.write_text(
            dump_policy(Policy((LogTrust(self.log.url, verifier, verifier.name),), default=rule))
        )
        return path


@pytest.fixture
def views(tmp_path: Path) -> Iterator[Views]:
    packages = tmp_path / "packages"
    packages.mkdir()
    files = {}
    for name, version in (("demo", "1.0"), ("demo", "1.1"), ("other", "2.0")):
        filename, data = wheel(name, version, f"NAME = {name!r}\nVERSION = {version!r}\n")
        (packages / filename).write_bytes(data)
        files[filename] = data
    copy = tmp_path / "tampered-packages"
    shutil.copytree(packages, copy)
    _, evil = wheel("demo", "1.1", "import os  # not what was published\n")
    (copy / VICTIM).write_bytes(evil)
    keys = {}
    for name, signer in (("mirror", MIRROR), ("second", SECOND), ("proxy", PROXY)):
        keys[name] = tmp_path / f"{name}.key"
        write_key(keys[name], signer)
    log = LogProcess(tmp_path / "log").start()
    honest, tampered = PyPIServer(packages), PyPIServer(copy)
    try:
        honest.start()
        tampered.start()
        yield Views(log, honest, tampered, tmp_path, files, evil, keys)
    finally:
        tampered.stop()
        honest.stop()
        log.stop()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.timeout(300)
def test_targeted_attack_on_observed_files(views: Views) -> None:
    good, evil = _sha(views.files[VICTIM]), _sha(views.evil)

    # A mirror observes the honest view (every project): the first observation wins.
    rc, doc = views.observe(views.honest.url, "mirror", "mirror.json")
    assert rc == 0, doc
    assert sorted(o["filename"] for o in doc["observed"]) == sorted(views.files)
    assert {o["status"] for o in doc["observed"]} == {"added"}
    assert not doc["alarms"] and not doc["errors"]
    # A rerun remembers what it observed: nothing new to submit.
    rc, doc = views.observe(views.honest.url, "mirror", "mirror.json")
    assert rc == 0 and doc["observed"] == [] and doc["files"] == 3, doc

    # The same observer later sees the tampered view: its disagreement is refused by
    # the log and reported as an alarm with both statements; the rest is logged.
    rc, doc = views.observe(views.tampered.url, "mirror", "mirror-tampered.json", "demo")
    assert rc == 1, doc
    assert [o["filename"] for o in doc["observed"]] == ["demo-1.0-py3-none-any.whl"]
    assert doc["observed"][0]["status"] == "existing"
    (alarm,) = doc["alarms"]
    assert alarm["filename"] == VICTIM and "ALARM" in alarm["message"]
    (logged,) = alarm["evidence"]["logged"]
    first = decode_entry(base64.b64decode(logged["entry"]))
    refused = decode_signed(base64.b64decode(alarm["evidence"]["refused"]["signed"]))
    assert isinstance(first.signed, SignedObservation) and first.signed.verify()
    assert isinstance(refused, SignedObservation) and refused.verify()
    assert first.statement.sha256.hex() == good and refused.statement.sha256.hex() == evil
    assert first.signed.signer_vkey() == refused.signer_vkey() == MIRROR.vkey
    assert refused.index_url == views.tampered.url

    # A second observer of the tampered view: the log records its (different) view.
    rc, doc = views.observe(views.tampered.url, "second", "second.json", "demo")
    assert rc == 0 and len(doc["observed"]) == 2, doc

    # A proxy in front of the tampered view, trusting the mirror's observations,
    # refuses the file (409 with the evidence); pip and uv install nothing from it.
    policy = views.policy("policy.toml", MIRROR)
    work = views.tmp / "proxy"
    proxy = ProxyProcess(
        views.tampered.url,
        policy,
        work,
        "--page-ttl",
        "0",
        "--observer-key",
        str(views.keys["proxy"]),
    ).start()
    try:
        index = proxy.url + "/simple/"
        status, body, _ = http_get(f"{proxy.url}/files/demo/{VICTIM}")
        text = body.decode()
        assert status == 409, text
        # (the tampered file is larger: the proxy stops reading at the logged size)
        assert f"for {VICTIM} but the log holds sha256:{good}" in text
        assert f"observed by {MIRROR.vkey}" in text and "Logged entries (evidence)" in text
        (record,) = [
            json.loads(x) for x in (work / "state" / "alarms.jsonl").read_text().splitlines()
        ]
        assert record["served"] == f"more than the {len(views.files[VICTIM])} bytes"
        assert [e["sha256"] for e in record["logged"]] == [good]
        assert record["logged"][0]["kind"] == "observation"
        # The proxy read the refused bytes to the end and logged what it got under its
        # own key before answering: the disagreement is public in the log.
        mine = record["observed"]
        assert mine["logged"] and (mine["sha256"], mine["size"]) == (evil, len(views.evil))
        assert mine["signer"] == PROXY.vkey
        assert f"under its key {PROXY.vkey} (entry #{mine['log_index']})" in text
        status, body, _ = http_get(f"{views.log.url}/lookup?project=demo&filename={VICTIM}")
        assert status == 200
        held = {
            (e.signed.signer_vkey(), e.statement.sha256.hex())
            for item in json.loads(body)["entries"]
            if (e := decode_entry(base64.b64decode(item["entry"])))
        }
        assert held == {(MIRROR.vkey, good), (SECOND.vkey, evil), (PROXY.vkey, evil)}
        for install in (pip_install, uv_install):
            target = views.tmp / f"target-{install.__name__}"
            r = install(index, target, views.tmp, "demo==1.1")
            assert r.returncode != 0, r.stdout + r.stderr
            assert not (target / "demo").exists()
        # What the proxy serves it also logs, under its own key.
        r = pip_install(index, views.tmp / "target-ok", views.tmp, "demo==1.0")
        assert r.returncode == 0, r.stdout + r.stderr
        assert (views.tmp / "target-ok" / "demo" / "__init__.py").exists()
        deadline = time.monotonic() + 20
        health: dict[str, Any] = {}
        while time.monotonic() < deadline:
            health = json.loads(http_get(proxy.url + "/healthz")[1])
            if health["observations_logged"] >= 2:
                break
            time.sleep(0.2)
        assert health["observations_logged"] == 2 and health["observer"] == PROXY.vkey, health
    finally:
        proxy.stop()

    # A proxy whose own key already logged the honest bytes (the mirror's key) refuses
    # the tampered file too; the log refuses its observation of it, which it reports.
    work = views.tmp / "proxy-mirror-key"
    proxy = ProxyProcess(
        views.tampered.url, policy, work, "--observer-key", str(views.keys["mirror"])
    ).start()
    try:
        status, body, _ = http_get(f"{proxy.url}/files/demo/{VICTIM}")
        text = body.decode()
        assert status == 409, text
        assert f"observer {MIRROR.vkey} logged sha256:{good}" in text, text
        lines = [json.loads(x) for x in (work / "state" / "alarms.jsonl").read_text().splitlines()]
        own = [a for a in lines if "evidence" in a]  # the observer's own alarm
        (refusal,) = [a for a in lines if "observed" in a]
        assert not refusal["observed"]["logged"]
        assert refusal["observed"]["alarm"]["evidence"]["refused"]["sha256"] == evil
        assert [e["sha256"] for e in own[0]["evidence"]["logged"]] == [good]
    finally:
        proxy.stop()

    # verify, trusting both observers: the honest file fails with both entries.
    both = views.policy("both.toml", MIRROR, SECOND)
    honest_file = views.tmp / VICTIM
    honest_file.write_bytes(views.files[VICTIM])
    env = {
        "SIGLEDGER_STATE_DIR": str(views.tmp / "verify-state"),
        "SIGLEDGER_CACHE_DIR": str(views.tmp / "verify-cache"),
    }
    r = run_cli("verify", "--json", "--policy", str(both), str(honest_file), env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    (result,) = json.loads(r.stdout)["results"]
    assert result["alarm"] and "ALARM: trusted observer" in result["reason"]
    assert [e["sha256"] for e in result["entries"]] == [good]
    assert [e["sha256"] for e in result["conflicting_entries"]] == [evil]
    assert result["conflicting_entries"][0]["kind"] == "observation"
    # Trusting the mirror alone, the honest file verifies; the tampered one (logged by
    # the untrusted second observer) fails with the mirror's entry as evidence.
    r = run_cli("verify", "--policy", str(policy), str(honest_file), env=env)
    assert r.returncode == 0, r.stderr
    evil_file = views.tmp / "evil" / VICTIM
    evil_file.parent.mkdir()
    evil_file.write_bytes(views.evil)
    r = run_cli("verify", "--policy", str(policy), str(evil_file), env=env)
    assert r.returncode == 1, r.stderr
    assert f"ALARM: trusted observer {MIRROR.vkey} logged a different hash sha256:{good}" in (
        r.stderr
    )

    # The monitor reports the disagreement with both statements as evidence.
    rc, alarms, err = asyncio.run(
        monitor(views.tmp / "monitor", "--log", views.log.url, "--log-key", views.log.vkey)
    )
    # One alarm per disagreeing observer: the second observer's, and the proxy's own
    # observation of the bytes it refused.
    conflicts = [a for a in alarms if a["type"] == "conflicting_observations"]
    assert rc == 1 and len(conflicts) == 2, (alarms, err)
    pairs = set()
    for conflict in conflicts:
        entries = conflict["evidence"]["entries"]
        assert [e["kind"] for e in entries] == ["observation", "observation"]
        pairs.add(tuple((e["signer"], e["sha256"]) for e in entries))
    assert pairs == {
        ((MIRROR.vkey, good), (SECOND.vkey, evil)),
        ((MIRROR.vkey, good), (PROXY.vkey, evil)),
    }


@pytest.mark.timeout(120)
def test_observe_follows_the_index(tmp_path: Path) -> None:
    """``--follow`` observes files as the index gains them, one JSON line per pass,
    until interrupted; a later run resumes from the state file."""
    packages = tmp_path / "packages"
    packages.mkdir()
    first, data = wheel("demo", "1.0")
    (packages / first).write_bytes(data)
    keyfile = tmp_path / "mirror.key"
    write_key(keyfile, MIRROR)
    state = tmp_path / "state.json"
    log = LogProcess(tmp_path / "log").start()
    server = PyPIServer(packages)
    try:
        server.start()
        args = ["--index", server.url, "--log", log.url, "--key", str(keyfile)]
        follow = ["--json", "--follow", "--interval", "0.2", "--state", str(state)]
        proc = subprocess.Popen(
            [*sigledger_cmd(), "observe", *follow, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=tree_env(),
        )
        try:

            def observed() -> set[str]:
                try:
                    return set(json.loads(state.read_text())["files"])
                except (FileNotFoundError, ValueError):
                    return set()

            def wait_for(names: set[str]) -> None:
                deadline = time.monotonic() + 30
                while observed() != names:
                    assert proc.poll() is None and time.monotonic() < deadline, observed()
                    time.sleep(0.1)

            wait_for({first})
            second, data = wheel("demo", "1.1")
            (packages / second).write_bytes(data)
            wait_for({first, second})
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
        assert proc.returncode == 130, err
        passes = [json.loads(line) for line in out.splitlines() if line.startswith('{"version"')]
        logged = [o["filename"] for p in passes for o in p["observed"]]
        assert logged == [first, second], passes
        # Nothing new: a one-off run from the same state submits nothing.
        r = run_cli("observe", "--json", *args, "--state", str(state))
        assert r.returncode == 0 and json.loads(r.stdout)["observed"] == [], r.stderr
    finally:
        server.stop()
        log.stop()


@pytest.mark.timeout(120)
def test_pin_makes_the_logs_own_observation_the_default(tmp_path: Path) -> None:
    """``policy pin`` records the log's observer key (``GET /observer``) and the
    observers of the pinned files; with that default, a file nobody signed verifies
    once the log has observed it (here on demand), and other bytes for it do not."""
    packages = tmp_path / "packages"
    packages.mkdir()
    files = {}
    for name, version in (("demo", "1.0"), ("other", "2.0"), ("other", "1.5")):
        filename, data = wheel(name, version, f"N = {name!r}\n")
        (packages / filename).write_bytes(data)
        files[filename] = data
    keyfile = tmp_path / "mirror.key"
    write_key(keyfile, MIRROR)
    server = PyPIServer(packages).start()
    log = LogProcess(tmp_path / "log", "--observe-index", server.url)
    try:
        log.start()
        observer = http_get(log.url + "/observer")[1].decode().strip()
        env = {
            "SIGLEDGER_STATE_DIR": str(tmp_path / "state"),
            "SIGLEDGER_CACHE_DIR": str(tmp_path / "cache"),
        }
        r = run_cli(
            "observe", "--index", server.url, "--log", log.url, "--key", str(keyfile), "demo",
            "--state", str(tmp_path / "observer.json"), env=env,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        demo = "demo-1.0-py3-none-any.whl"
        req = tmp_path / "requirements.txt"
        req.write_text(f"demo==1.0 --hash=sha256:{_sha(files[demo])}\n")
        policy_file = tmp_path / "policy.toml"
        r = run_cli(
            "policy", "pin", "--json", "-r", str(req), "--log", log.url,
            "--log-key", log.vkey, "--policy", str(policy_file), env=env,
        )  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
        doc = json.loads(r.stdout)
        assert doc["log_observer"] == observer and doc["observers"] == {"demo": [MIRROR.vkey]}
        policy = load_policy(policy_file)
        assert policy.logs[0].observer == Verifier.from_vkey(observer)
        assert policy.default == SignerRule(frozenset(), 1, observers=frozenset({observer}))
        assert policy.projects["demo"].observers == {MIRROR.vkey}

        other = tmp_path / "other-2.0-py3-none-any.whl"
        other.write_bytes(files[other.name])
        r = run_cli("verify", "--policy", str(policy_file), str(other), env=env)
        assert r.returncode == 0, r.stderr
        assert f"observed by 1 of 1 trusted observers (threshold 1): {observer}" in r.stderr
        _, evil = wheel("other", "2.0", "import os  # not what the index served\n")
        other.write_bytes(evil)
        r = run_cli("verify", "--policy", str(policy_file), str(other), env=env)
        assert r.returncode == 1, r.stderr
        assert f"the log holds sha256:{_sha(files[other.name])}" in r.stderr

        # Through the proxy with that policy: an older version nobody asked the log
        # about is observed on demand, then installed.
        proxy = ProxyProcess(server.url, policy_file, tmp_path / "proxy", "--page-ttl", "0")
        proxy.start()
        try:
            target = tmp_path / "target"
            r = pip_install(proxy.url + "/simple/", target, tmp_path, "other==1.5")
            assert r.returncode == 0, r.stdout + r.stderr
            assert (target / "other" / "__init__.py").exists()
        finally:
            proxy.stop()
        status, body, _ = http_get(log.url + "/lookup?project=other&version=1.5")
        (entry,) = json.loads(body)["entries"]
        assert decode_entry(base64.b64decode(entry["entry"])).signed.signer_vkey() == observer
    finally:
        log.stop()
        server.stop()


@pytest.mark.timeout(60)
def test_observe_reports_a_refusing_log(tmp_path: Path) -> None:
    """A log that does not take this observer's key: exit 1 with the log's reason,
    and the state file records nothing (a rerun will try again)."""
    packages = tmp_path / "packages"
    packages.mkdir()
    filename, data = wheel("demo", "1.0")
    (packages / filename).write_bytes(data)
    keyfile = tmp_path / "mirror.key"
    write_key(keyfile, MIRROR)
    allowed = tmp_path / "submitters.txt"
    allowed.write_text(SECOND.vkey + "\n")
    state = tmp_path / "state.json"
    log = LogProcess(tmp_path / "log", env={"SIGLEDGER_SUBMITTERS_FILE": str(allowed)})
    server = PyPIServer(packages)
    try:
        log.start()
        server.start()
        r = run_cli(
            "observe", "--json", "--index", server.url, "--log", log.url,
            "--key", str(keyfile), "--state", str(state),
        )  # fmt: skip
        assert r.returncode == 1, r.stdout + r.stderr
        assert json.loads(r.stdout)["error"] == "signer_not_allowed"
        assert not state.exists()
    finally:
        server.stop()
        log.stop()
