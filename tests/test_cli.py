"""The command line's conventions (client/cli/): options before and after the command,
``--json`` errors, usage of the failing command, exit codes, completion scripts; the
publisher's receipts and log-key check; and the library modules the commands call."""

from __future__ import annotations

import glob
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sigledger.client.cli.completion import command_tree, completion_script
from sigledger.client.cli.main import main
from sigledger.client.cli.output import EXIT_MEANINGS
from sigledger.client.cli.parser import build_parser
from sigledger.client.install.lockfiles import Pin
from sigledger.client.install.policy import Policy
from sigledger.client.install.verdicts import pin_from_file
from sigledger.client.install.verify import verify_offline
from sigledger.client.logkey import note_signers, open_with_log_key, parse_log_key
from sigledger.client.publish.files import (
    find_receipt,
    is_receipt,
    receipt_path,
    split_distributions,
)
from sigledger.client.publish.submit import publish
from sigledger.ledger.checkpoint import Checkpoint, format_checkpoint
from sigledger.ledger.errors import ConfigError, VerificationError
from sigledger.ledger.merkle import EMPTY_ROOT
from sigledger.ledger.note import Signer, sign_note
from tests.helpers import LogProcess, get, make_release, run_cli, tree_env

REPORTING = {
    "keygen",
    "migrate",
    "publish",
    "verify",
    "observe",
    "pip install",
    "uv pip install",
    "uv sync",
    "policy pin",
    "checkpoint",
    "monitor",
    "fsck",
}


def _commands() -> dict[str, set[str]]:
    """Every runnable command and its option strings."""
    nodes = command_tree(build_parser()).walk()
    return {
        n.path: {f for flags, _ in n.options for f in flags}
        for n in nodes
        if n.path and not n.subcommands
    }


# --- parsing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "verbose", "quiet"),
    [
        (["publish", "x.whl"], 0, 0),
        (["-v", "publish", "x.whl"], 1, 0),
        (["publish", "-v", "x.whl"], 1, 0),
        (["publish", "x.whl", "--quiet"], 0, 1),
        (["-q", "policy", "pin", "-r", "r.txt"], 0, 1),
        (["policy", "pin", "-qq", "-r", "r.txt"], 0, 2),
        (["witness", "serve", "--verbose"], 1, 0),
        (["-v", "fsck", "http://x", "-q"], 1, 1),
    ],
)
def test_verbose_and_quiet_before_and_after_the_command(
    argv: list[str], verbose: int, quiet: int
) -> None:
    args = build_parser().parse_args(argv)
    assert (args.verbose, args.quiet) == (verbose, quiet)


def test_every_reporting_command_takes_json() -> None:
    commands = _commands()
    assert set(commands) == REPORTING | {"serve", "witness serve", "proxy", "completion"}
    for name, options in commands.items():
        assert {"-v", "--verbose", "-q", "--quiet"} <= options, name
        assert ("--json" in options) == (name in REPORTING), name


def test_a_typo_shows_the_usage_of_its_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", "--lgo", "http://x", "a.whl"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("usage: sigledger publish ")
    assert "sigledger publish: error: unrecognized arguments: --lgo" in err
    assert main(["policy", "pin", "--treshold", "2"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("usage: sigledger policy pin ")
    assert main(["verify", "--offline", "--polcy=p.toml"]) == 2
    _, err = capsys.readouterr()
    assert err.startswith("usage: sigledger verify ") and "--polcy" in err


def test_usage_errors_with_json_are_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fsck", "http://x", "--json", "--bogus"]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["error"] == "usage" and doc["exit_code"] == 2
    assert doc["exit_meaning"] == EXIT_MEANINGS[2]
    assert "--bogus" in doc["message"] and doc["hint"]
    assert err.startswith("usage: sigledger fsck ")


def test_errors_with_json_are_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "policy.toml"
    assert main(["verify", "--json", "--policy", str(missing), "sha256:" + "0" * 64]) == 2
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert set(doc) == {"version", "error", "message", "hint", "exit_code", "exit_meaning"}
    assert doc["error"] == "configuration" and doc["exit_code"] == 2
    assert str(missing) in doc["message"] and doc["hint"]
    assert "no trust policy" in err  # people still read stderr
    # without --json, stdout stays empty
    assert main(["verify", "--policy", str(missing), "sha256:" + "0" * 64]) == 2
    out, _ = capsys.readouterr()
    assert out == ""


def test_quiet_keeps_errors_and_drops_chatter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "k.key"
    assert main(["keygen", "--name", "alice", "--out", str(key), "-q"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("alice+") and err == ""
    whl = make_release(tmp_path, "demo", "1.0", "whl")
    assert main(["publish", "--dry-run", "--key", str(key), str(whl)]) == 0
    assert "would log" in capsys.readouterr().err
    assert main(["publish", "-q", "--dry-run", "--key", str(key), str(whl)]) == 0
    assert capsys.readouterr() == ("", "")
    assert main(["publish", "-q", "--dry-run", "--key", str(tmp_path / "nope"), str(whl)]) == 2
    assert "error:" in capsys.readouterr().err


def test_local_file_errors_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "a.key"  # below a file: cannot be created
    assert main(["keygen", "--name", "a", "--out", str(out), "--json"]) == 1
    stdout, err = capsys.readouterr()
    doc = json.loads(stdout)
    assert doc["error"] == "local_io" and doc["exit_code"] == 1
    assert str(tmp_path / "file") in doc["message"] and "error:" in err
    key = tmp_path / "k.key"
    assert main(["keygen", "--name", "a", "--out", str(key), "-q"]) == 0
    whl = make_release(tmp_path, "demo", "1.0", "whl")
    argv = ["publish", "--log", "http://127.0.0.1:1", "--key", str(key), str(whl)]
    assert main([*argv, "--receipts", str(tmp_path / "file")]) == 2  # before any network I/O
    assert "is not a folder" in capsys.readouterr().err


def test_a_verifier_key_passed_as_key_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The public half saved from keygen's output (mode 0644, as anyone would save
    it) is named for what it is, not refused for its permissions."""
    assert main(["keygen", "--name", "alice", "--out", str(tmp_path / "k.key"), "-q"]) == 0
    vkey = tmp_path / "alice.pub"
    vkey.write_text(capsys.readouterr().out)
    vkey.chmod(0o644)
    whl = make_release(tmp_path, "demo", "1.0", "whl")
    assert main(["publish", "--dry-run", "--key", str(vkey), str(whl)]) == 2
    err = capsys.readouterr().err
    assert "this is a verifier key; pass the signing key file" in err
    assert "readable by other users" not in err


def test_serve_with_a_key_others_can_read_creates_nothing(tmp_path: Path) -> None:
    """A log key file others can read is refused before any database is made, so
    fixing its mode and starting again starts the log it was meant for."""
    data = tmp_path / "log"
    data.mkdir()
    assert (
        main(["keygen", "--name", "localhost/sigledger", "--out", str(data / "log.key"), "-q"]) == 0
    )
    (data / "log.key").chmod(0o644)
    out = run_cli("serve", "--data", str(data), "--listen", "127.0.0.1:0")
    assert out.returncode == 2, out.stderr
    assert f"run: chmod 600 {data / 'log.key'}" in out.stderr
    assert sorted(p.name for p in data.iterdir()) == ["log.key"]
    # The witness alike.
    wdata = tmp_path / "witness"
    wdata.mkdir()
    assert main(["keygen", "--name", "w", "--out", str(wdata / "witness.key"), "-q"]) == 0
    (wdata / "witness.key").chmod(0o644)
    out = run_cli("witness", "serve", "--data", str(wdata), "--listen", "127.0.0.1:0")
    assert out.returncode == 2 and "chmod 600" in out.stderr, out.stderr
    assert sorted(p.name for p in wdata.iterdir()) == ["witness.key"]


def test_exit_codes_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    epilog = out[out.index("exit codes:") :]
    for code, meaning in EXIT_MEANINGS.items():
        assert f"{code}" in epilog and meaning in epilog


def test_help_imports_no_library() -> None:
    """``sigledger --help`` and usage errors stay fast: no aiohttp, no crypto."""
    code = (
        "import sys\n"
        "from sigledger.client.cli.main import main\n"
        "assert main(['publish', '--nope']) == 2\n"
        "heavy = {'aiohttp', 'nacl', 'rich', 'msgpack', 'aiosqlite'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=tree_env(),
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr


# --- completion -------------------------------------------------------------------


def _bash_complete(script: str, words: list[str]) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    program = (
        f"{script}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\n"
        '_sigledger\nprintf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    r = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return r.stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completion(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    r = subprocess.run(
        ["bash", "-n"], input=script, capture_output=True, text=True, timeout=30, check=False
    )
    assert r.returncode == 0, r.stderr
    top = _bash_complete(script, ["sigledger", ""])
    assert {"serve", "publish", "verify", "policy", "fsck", "completion"} <= set(top)
    assert "--version" in _bash_complete(script, ["sigledger", "-"])
    assert _bash_complete(script, ["sigledger", "pol"]) == ["policy"]
    assert _bash_complete(script, ["sigledger", "policy", ""]) == ["pin"]
    assert _bash_complete(script, ["sigledger", "policy", "-"]) == [
        "-h", "--help", "-v", "--verbose", "-q", "--quiet"
    ]  # fmt: skip
    assert sorted(_bash_complete(script, ["sigledger", "policy", "pin", "--lo"])) == [
        "--lock", "--log", "--log-key"
    ]  # fmt: skip
    assert _bash_complete(script, ["sigledger", "-v", "publish", "--dry", ""]) == []  # files
    assert _bash_complete(script, ["sigledger", "publish", "--d"]) == ["--dry-run"]
    assert _bash_complete(script, ["sigledger", "completion", "z"]) == ["zsh"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_list_every_command_and_option(shell: str) -> None:
    script = completion_script(build_parser(), shell)
    for name, options in _commands().items():
        for word in name.split():
            assert word in script, (shell, word)
        for opt in options:
            assert (opt if shell == "zsh" else opt.lstrip("-")) in script, (shell, name, opt)
    found = shutil.which(shell)
    if found:  # a syntax check where the shell is installed
        r = subprocess.run(
            [found, "-n"], input=script, capture_output=True, text=True, timeout=30, check=False
        )
        assert r.returncode == 0, r.stderr


def test_unknown_shell() -> None:
    with pytest.raises(ValueError, match="bash, zsh, fish"):
        completion_script(build_parser(), "tcsh")


# --- library: receipts and distribution files ------------------------------------


def test_receipt_locations(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    whl = make_release(dist, "demo", "1.0", "whl")
    assert receipt_path(whl) == dist / ".sigledger" / f"{whl.name}.json"
    assert receipt_path(whl, tmp_path / "r") == tmp_path / "r" / f"{whl.name}.json"
    assert find_receipt(whl) is None
    legacy = dist / f"{whl.name}.sigledger.json"
    legacy.write_text("{}")
    assert find_receipt(whl) == legacy
    receipt_path(whl).parent.mkdir()
    receipt_path(whl).write_text("{}")
    assert find_receipt(whl) == receipt_path(whl)  # the new place wins
    chosen = tmp_path / "r" / f"{whl.name}.json"
    assert find_receipt(whl, tmp_path / "r") == receipt_path(whl)  # falls back
    chosen.parent.mkdir()
    chosen.write_text("{}")
    assert find_receipt(whl, tmp_path / "r") == chosen
    assert is_receipt(legacy) and is_receipt(receipt_path(whl)) and not is_receipt(whl)
    # what `dist/*` expands to holds no receipt of the new kind
    assert {Path(p).name for p in glob.glob(str(dist / "*"))} == {whl.name, legacy.name}


def test_split_distributions(tmp_path: Path) -> None:
    names = ["a-1.0-py3-none-any.whl", "a-1.0.tar.gz", "a-1.0.zip", "SHA256SUMS", "a.whl.asc"]
    paths = [tmp_path / n for n in names]
    (tmp_path / "folder.whl").mkdir()
    dists, others = split_distributions([*paths, tmp_path / "folder.whl"])
    assert [p.name for p in dists] == names[:3]
    assert [p.name for p in others] == ["SHA256SUMS", "a.whl.asc", "folder.whl"]


def test_offline_needs_files(tmp_path: Path) -> None:
    policy = Policy(logs=())
    with pytest.raises(ConfigError, match="--offline"):
        verify_offline(policy, [Pin(None, None, bytes(32), None, None, "argument 1")])
    whl = make_release(tmp_path, "demo", "1.0", "whl")
    [outcome] = verify_offline(policy, [pin_from_file(whl)])
    assert not outcome.ok and "no receipt" in outcome.reason and ".sigledger" in outcome.reason


# --- library: the log key ---------------------------------------------------------


def test_parse_log_key() -> None:
    key = Signer.generate("log.example")
    assert parse_log_key(key.vkey).vkey == key.vkey
    with pytest.raises(ConfigError, match="--log-key is not a verifier key"):
        parse_log_key("garbage")
    with pytest.raises(ConfigError, match="not an Ed25519"):
        parse_log_key(Signer.generate("w", 0x04).vkey)


def test_wrong_key_names_the_signer() -> None:
    real, other = Signer.generate("log.example"), Signer.generate("log.example")
    text = format_checkpoint(Checkpoint("log.example", 0, EMPTY_ROOT))
    note = sign_note(text, [real])
    assert note_signers(note) == [f"log.example+{real.key_id:08x}"]
    assert open_with_log_key(note, real.verifier(), "http://log")[0].size == 0
    with pytest.raises(VerificationError) as exc:
        open_with_log_key(note, other.verifier(), "http://log")
    message = str(exc.value)
    assert "http://log" in message and other.vkey in message
    assert f"signed by log.example+{real.key_id:08x}" in message
    with pytest.raises(VerificationError, match="malformed"):
        open_with_log_key(b"not a note", real.verifier(), "http://log")


# --- end to end -------------------------------------------------------------------


async def _size(url: str) -> int:
    status, body, _ = await get(url + "/checkpoint")
    assert status == 200
    return int(body.split(b"\n")[1])


def _key_id(vkey: str) -> str:
    """``name+hexid`` of a verifier key, as a note signature line identifies it."""
    name, key_id, _ = vkey.split("+", 2)  # the base64 key may hold "+" too
    return f"{name}+{key_id}"


async def test_a_wrong_log_key_submits_nothing(log_server: LogProcess, tmp_path: Path) -> None:
    url = log_server.url
    key = tmp_path / "alice.key"
    assert run_cli("keygen", "--name", "alice", "--out", str(key)).returncode == 0
    whl = make_release(tmp_path, "demo", "1.0", "whl")
    wrong = Signer.generate("localhost/sigledger").vkey
    args = ("publish", "--log", url, "--key", str(key), str(whl))
    r = run_cli(*args, "--log-key", wrong, "--json")
    assert r.returncode == 1
    doc = json.loads(r.stdout)
    assert doc["error"] == "verification_failed" and doc["exit_code"] == 1
    for text in (doc["message"], r.stderr):
        assert url in text and wrong in text and _key_id(log_server.vkey) in text
    assert await _size(url) == 0
    assert not (tmp_path / ".sigledger").exists()
    # with the right key the file goes in as the first entry: nothing went in before
    r = run_cli(*args, "--log-key", log_server.vkey, "--json")
    assert r.returncode == 0, r.stderr
    [result] = json.loads(r.stdout)["results"]
    assert (result["status"], result["log_index"]) == ("added", 0)
    # the same wrong key, for checkpoint, fsck and policy pin
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(f"demo==1.0 --hash=sha256:{hashlib.sha256(whl.read_bytes()).hexdigest()}\n")
    policy = tmp_path / "policy.toml"
    env = {"SIGLEDGER_STATE_DIR": str(tmp_path / "state")}
    pin = ("policy", "pin", "-r", str(reqs), "--log", url, "--policy", str(policy))
    for cmd in (("checkpoint", "--log", url), ("fsck", url), pin):
        r = run_cli(*cmd, "--log-key", wrong, env=env)
        assert r.returncode == 1 and url in r.stderr and _key_id(log_server.vkey) in r.stderr
    assert not policy.exists()
    r = run_cli(*pin, "--log-key", log_server.vkey, env=env)
    assert r.returncode == 0 and policy.exists(), r.stderr


async def test_the_library_checks_the_log_key_before_submitting(
    log_server: LogProcess, tmp_path: Path
) -> None:
    whl = make_release(tmp_path, "demo", "1.0", "whl")
    wrong = Signer.generate("localhost/sigledger").verifier()
    with pytest.raises(VerificationError, match="is not signed by the log key"):
        await publish(log_server.url, Signer.generate("alice"), [whl], log_key=wrong)
    assert await _size(log_server.url) == 0
    [result] = await publish(
        log_server.url, Signer.generate("alice"), [whl], receipts_dir=tmp_path / "r"
    )
    assert result.receipt_path == tmp_path / "r" / f"{whl.name}.json"
    assert result.receipt_path.is_file() and result.receipt is not None
    assert result.receipt["log_index"] == 0


async def test_publish_dist_glob_twice(log_server: LogProcess, tmp_path: Path) -> None:
    """Receipts do not land in `dist/*`; other files there are skipped with a note."""
    url, vkey = log_server.url, log_server.vkey
    key = tmp_path / "alice.key"
    assert run_cli("keygen", "--name", "alice", "--out", str(key)).returncode == 0
    dist = tmp_path / "dist"
    dist.mkdir()
    whl = make_release(dist, "demo", "1.0", "whl")
    sdist = make_release(dist, "demo", "1.0", "sdist")
    (dist / "SHA256SUMS").write_text("x\n")
    (dist / f"{whl.name}.sigledger.json").write_text("{}")  # from an earlier release

    def publish_glob(*extra: str) -> subprocess.CompletedProcess[str]:
        files = sorted(glob.glob(str(dist / "*")))  # what the shell passes for dist/*
        return run_cli(
            "publish", "--log", url, "--key", str(key), "--log-key", vkey, *extra, *files
        )

    r = publish_glob()
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("note: skipping") == 2 and "SHA256SUMS" in r.stderr
    assert r.stderr.count("OK: ") == 2
    assert {p.name for p in (dist / ".sigledger").iterdir()} == {
        f"{whl.name}.json",
        f"{sdist.name}.json",
    }
    r = publish_glob("--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [x["status"] for x in doc["results"]] == ["existing", "existing"]
    assert sorted(Path(p).name for p in doc["skipped"]) == [
        "SHA256SUMS",
        f"{whl.name}.sigledger.json",
    ]
    assert await _size(url) == 2
    # nothing to publish at all is a usage error
    r = run_cli("publish", "--log", url, "--key", str(key), str(dist / "SHA256SUMS"))
    assert r.returncode == 2 and "not a wheel or sdist" in r.stderr
