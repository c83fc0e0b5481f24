"""`sigledger verify` and `sigledger policy pin` end to end, against real servers."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from sigledger.client.install.policy import load_policy
from sigledger.client.publish.submit import publish, write_key
from sigledger.client.remote import LogClient
from sigledger.ledger.note import Signer
from tests.helpers import LogProcess, make_release, run_cli, signed

KEYS = {
    n: Signer.from_seed(f"{n}@example.org", hashlib.sha256(n.encode()).digest())
    for n in ("alice", "bob", "carol")
}


def _requirements(path: Path, pins: dict[str, tuple[str, list[Path]]]) -> Path:
    lines = ["# generated with hashes", "--index-url https://pypi.org/simple"]
    for project, (version, files) in pins.items():
        hashes = " \\\n    ".join(
            f"--hash=sha256:{hashlib.sha256(f.read_bytes()).hexdigest()}" for f in files
        )
        lines.append(f"{project}=={version} \\\n    {hashes}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _pylock(path: Path, files: list[tuple[str, str, Path]]) -> Path:
    out = ['lock-version = "1.0"', 'created-by = "test"', ""]
    for project, version, f in files:
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        out += [
            "[[packages]]",
            f'name = "{project}"',
            f'version = "{version}"',
            "[[packages.wheels]]",
            f'name = "{f.name}"',
            f'url = "https://files.example.org/{f.name}"',
            f"size = {f.stat().st_size}",
            f'hashes = {{sha256 = "{digest}"}}',
            "",
        ]
    path.write_text("\n".join(out))
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "SIGLEDGER_STATE_DIR": str(tmp_path / "state"),
        "SIGLEDGER_POLICY": str(tmp_path / "policy.toml"),
        "SIGLEDGER_LOG": "",
    }


async def test_pin_takes_files_and_digests_and_counts_the_whole_policy(
    log_server: LogProcess, tmp_path: Path, env: dict[str, str]
) -> None:
    """``policy pin`` takes what ``verify`` takes; its summary counts every project
    the written policy has a rule for, not only the ones this run changed."""
    url, vkey = log_server.url, log_server.vkey
    whl = make_release(tmp_path, "requests", "2.0.0", "whl")
    other = make_release(tmp_path, "flask", "3.0.0", "whl")
    await publish(url, KEYS["alice"], [whl])
    await publish(url, KEYS["bob"], [other])
    base = ("policy", "pin", "--log", url, "--log-key", vkey)
    r = await asyncio.to_thread(run_cli, *base, str(whl), env=env)
    assert r.returncode == 0, r.stderr
    assert f"pinned requests: {KEYS['alice'].vkey}" in r.stderr
    assert "(1 project(s) in the policy, 1 pinned now)" in r.stderr
    digest = "sha256:" + hashlib.sha256(other.read_bytes()).hexdigest()
    r = await asyncio.to_thread(run_cli, *base, digest, "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["projects"] == {"flask": [KEYS["bob"].vkey]}
    assert doc["policy_projects"] == 2
    policy = load_policy(env["SIGLEDGER_POLICY"])
    assert sorted(policy.projects) == ["flask", "requests"]
    r = await asyncio.to_thread(run_cli, *base, "sha256:" + "ab" * 32, env=env)
    assert r.returncode == 1 and "not in the log, not pinned" in r.stderr
    r = await asyncio.to_thread(run_cli, *base, str(tmp_path / "nope.whl"), env=env)
    assert r.returncode == 2 and "neither a file nor sha256:<hex>" in r.stderr


async def test_pin_then_verify(log_server: LogProcess, tmp_path: Path, env: dict[str, str]) -> None:
    url, vkey = log_server.url, log_server.vkey
    dist = tmp_path / "dist"
    dist.mkdir()
    req_whl = make_release(dist, "requests", "2.0.0", "whl")
    req_sdist = make_release(dist, "requests", "2.0.0", "sdist")
    flask_whl = make_release(dist, "flask", "3.0.0", "whl")
    await publish(url, KEYS["alice"], [req_whl, req_sdist])
    await publish(url, KEYS["bob"], [req_whl, req_sdist])
    await publish(url, KEYS["carol"], [flask_whl])
    reqs = _requirements(
        tmp_path / "requirements.txt",
        {"requests": ("2.0.0", [req_whl, req_sdist]), "flask": ("3.0.0", [flask_whl])},
    )
    r = await asyncio.to_thread(
        run_cli, "policy", "pin", "-r", str(reqs), "--log", url, "--log-key", vkey, env=env
    )
    assert r.returncode == 0, r.stderr
    policy = load_policy(env["SIGLEDGER_POLICY"])
    assert policy.projects["requests"].signers == {KEYS["alice"].vkey, KEYS["bob"].vkey}
    assert policy.projects["flask"].signers == {KEYS["carol"].vkey}

    r = await asyncio.to_thread(run_cli, "verify", "-r", str(reqs), "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["version"] == 1 and doc["ok"] is True
    # pip installs the wheel here: the sdist's hash is not for this environment
    assert [r["filename"] for r in doc["results"]] == [req_whl.name, flask_whl.name]
    assert [s["filename"] for s in doc["not_for_environment"]] == [req_sdist.name]
    assert doc["not_for_environment"][0]["kind"] == "not_for_environment"
    assert doc["log"]["tree_size"] == 5
    r = await asyncio.to_thread(
        run_cli, "verify", "-r", str(reqs), "--all-files", "--json", env=env
    )
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["results"]) == 3

    # files, digests and pylock.toml
    r = await asyncio.to_thread(run_cli, "verify", str(req_whl), str(flask_whl), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("OK: ") == 2
    lock = _pylock(tmp_path / "pylock.toml", [("requests", "2.0.0", req_whl)])
    r = await asyncio.to_thread(run_cli, "verify", "--lock", str(lock), env=env)
    assert r.returncode == 0, r.stderr
    r = await asyncio.to_thread(run_cli, "verify", "sha256:" + "ab" * 32, env=env)
    assert r.returncode == 1 and "not in the log" in r.stderr

    # 2 of 3: passes only where two of the listed signers logged the exact hash
    three = ", ".join(f'"{KEYS[n].vkey}"' for n in ("alice", "bob", "carol"))
    Path(env["SIGLEDGER_POLICY"]).write_text(
        f'version = 1\n[[log]]\nurl = "{url}"\nkey = "{vkey}"\n'
        f"[project.requests]\nsigners = [{three}]\nthreshold = 2\n"
        f'[project.flask]\nsigners = ["{KEYS["carol"].vkey}"]\n'
    )
    r = await asyncio.to_thread(run_cli, "verify", str(req_whl), env=env)
    assert r.returncode == 0, r.stderr  # alice and bob
    new_whl = make_release(dist, "requests", "2.1.0", "whl")
    await publish(url, KEYS["alice"], [new_whl])
    await publish(url, Signer.generate("mallory"), [new_whl])  # untrusted: does not count
    r = await asyncio.to_thread(run_cli, "verify", str(new_whl), "--json", env=env)
    assert r.returncode == 1
    assert "required signers, got 1" in json.loads(r.stdout)["results"][0]["reason"]
    await publish(url, KEYS["carol"], [new_whl])
    r = await asyncio.to_thread(run_cli, "verify", str(new_whl), env=env)
    assert r.returncode == 0, r.stderr
    # policy pin cannot ask for more signers than the log shows
    r = await asyncio.to_thread(
        run_cli,
        "policy",
        "pin",
        "-r",
        str(_requirements(tmp_path / "r2.txt", {"flask": ("3.0.0", [flask_whl])})),
        "--log",
        url,
        "--log-key",
        vkey,
        "--threshold",
        "2",
        env=env,
    )
    assert r.returncode == 2 and "threshold 2" in r.stderr

    # untrusted signer only
    other = make_release(dist, "flask", "3.1.0", "whl")
    await publish(url, Signer.generate("mallory"), [other])
    r = await asyncio.to_thread(run_cli, "verify", str(other), env=env)
    assert r.returncode == 1 and "not signed by any trusted signer" in r.stderr

    # offline, from the receipt written by publish (in dist/.sigledger/)
    receipt = dist / ".sigledger" / f"{flask_whl.name}.json"
    r = await asyncio.to_thread(run_cli, "verify", "--offline", str(flask_whl), env=env)
    assert r.returncode == 0, r.stderr
    tampered = dist / "copy" / flask_whl.name
    tampered.parent.mkdir()
    tampered.write_bytes(b"tampered")
    shutil.copy(receipt, str(tampered) + ".sigledger.json")  # where receipts used to be
    r = await asyncio.to_thread(run_cli, "verify", "--offline", str(tampered), env=env)
    assert r.returncode == 1
    logged = hashlib.sha256(flask_whl.read_bytes()).hexdigest()
    you = hashlib.sha256(b"tampered").hexdigest()
    assert f"the log holds sha256:{logged} for this file (entry #" in r.stderr
    assert f"from the receipt), you have sha256:{you}" in r.stderr
    # online: the log is asked by filename
    r = await asyncio.to_thread(run_cli, "verify", "--json", str(tampered), env=env)
    assert r.returncode == 1
    reason = json.loads(r.stdout)["results"][0]["reason"]
    assert reason.startswith(f"not in the log: the log holds sha256:{logged} (entry #"), reason
    assert reason.endswith(f"for this file, you have sha256:{you}"), reason
    # the receipt location of earlier releases is still read; --receipts DIR first
    legacy = dist / "legacy" / flask_whl.name
    legacy.parent.mkdir()
    shutil.copy(flask_whl, legacy)
    r = await asyncio.to_thread(run_cli, "verify", "--offline", str(legacy), env=env)
    assert r.returncode == 1 and "no receipt" in r.stderr
    shutil.copy(receipt, str(legacy) + ".sigledger.json")
    r = await asyncio.to_thread(run_cli, "verify", "--offline", str(legacy), env=env)
    assert r.returncode == 0, r.stderr
    elsewhere = tmp_path / "receipts"
    elsewhere.mkdir()
    shutil.copy(receipt, elsewhere / receipt.name)
    moved = dist / "moved" / flask_whl.name  # a copy with no receipt next to it
    moved.parent.mkdir()
    shutil.copy(flask_whl, moved)
    args = ("verify", "--offline", "--json", str(moved))
    r = await asyncio.to_thread(run_cli, *args, env=env)
    assert r.returncode == 1 and "no receipt" in json.loads(r.stdout)["results"][0]["reason"]
    r = await asyncio.to_thread(run_cli, *args, "--receipts", str(elsewhere), env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["results"][0]["ok"] is True


async def test_alarm_when_a_trusted_signer_logged_another_hash(
    log_server: LogProcess, tmp_path: Path, env: dict[str, str]
) -> None:
    url = log_server.url
    dist = tmp_path / "dist"
    dist.mkdir()
    good = make_release(dist, "requests", "2.0.0", "whl", content=b"the real wheel")
    await publish(url, KEYS["alice"], [good])
    async with LogClient(url) as log:  # carol, also trusted, logged other bytes for the file
        await log.add([signed(KEYS["carol"], "requests", "2.0.0", content=b"evil wheel")])
    Path(env["SIGLEDGER_POLICY"]).write_text(
        f'version = 1\n[[log]]\nurl = "{url}"\nkey = "{log_server.vkey}"\n'
        f'[project.requests]\nsigners = ["{KEYS["alice"].vkey}", "{KEYS["carol"].vkey}"]\n'
        "threshold = 1\n"
    )
    r = await asyncio.to_thread(run_cli, "verify", str(good), "--json", env=env)
    assert r.returncode == 1
    result = json.loads(r.stdout)["results"][0]
    assert result["alarm"] is True and "ALARM" in result["reason"]
    assert result["conflicting_entries"][0]["signer"] == KEYS["carol"].vkey


async def test_split_view_exits_4_with_evidence(tmp_path: Path, env: dict[str, str]) -> None:
    a = LogProcess(tmp_path / "a").start()
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "log.key", tmp_path / "b" / "log.key")
    b = LogProcess(tmp_path / "b").start()
    try:
        dist = tmp_path / "dist"
        dist.mkdir()
        whl = make_release(dist, "requests", "2.0.0", "whl")
        await publish(a.url, KEYS["alice"], [whl])
        await publish(b.url, KEYS["alice"], [make_release(dist, "other", "1.0", "whl")])
        await publish(b.url, KEYS["alice"], [whl])
        policy = (
            f'version = 1\n[[log]]\nurl = "{{url}}"\nkey = "{a.vkey}"\n'
            f'[default]\nsigners = ["{KEYS["alice"].vkey}"]\n'
        )
        Path(env["SIGLEDGER_POLICY"]).write_text(policy.format(url=a.url))
        r = await asyncio.to_thread(run_cli, "verify", str(whl), env=env)
        assert r.returncode == 0, r.stderr
        Path(env["SIGLEDGER_POLICY"]).write_text(policy.format(url=b.url))
        r = await asyncio.to_thread(run_cli, "verify", str(whl), env=env)
        assert r.returncode == 4, r.stderr
        report = json.loads(r.stdout)
        assert report["error"] == "log_misbehavior"
        assert len(report["evidence"]["checkpoints"]) == 2
    finally:
        a.kill()
        b.kill()


def test_usage_errors(tmp_path: Path, env: dict[str, str]) -> None:
    r = run_cli("verify", "sha256:00", env=env)
    assert r.returncode == 2 and "no trust policy" in r.stderr
    Path(env["SIGLEDGER_POLICY"]).write_text("version = 1\n[[log]]\nurl = 'x'\n")
    r = run_cli("verify", "sha256:" + "0" * 64, env=env)
    assert r.returncode == 2 and "policy.toml:" in r.stderr
    reqs = tmp_path / "r.txt"
    reqs.write_text("requests==2.0\n")
    r = run_cli(
        "policy",
        "pin",
        "-r",
        str(reqs),
        "--log",
        "http://127.0.0.1:1",
        "--log-key",
        KEYS["alice"].vkey,
        env=env,
    )
    assert r.returncode == 2 and "r.txt:1" in r.stderr
    r = run_cli("verify", env=env)
    assert r.returncode == 2


def test_keys_fixture_is_usable(tmp_path: Path) -> None:
    write_key(tmp_path / "k", KEYS["alice"])
    assert (tmp_path / "k").read_text().startswith("PRIVATE+KEY+alice@example.org+")
