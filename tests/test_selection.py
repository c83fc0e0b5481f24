"""Per-environment selection of locked files (client/install/selection.py), and the
lock readers' requirement records it works on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hs

from sigledger.client.install.environment import (
    TargetEnvironment,
    UndecidableMarkerError,
    choose_file,
)
from sigledger.client.install.inputs import is_uvlock, read_locks
from sigledger.client.install.lockfiles import (
    LockedRequirement,
    LockfileError,
    Pin,
    read_pylock_entries,
    read_requirements_entries,
)
from sigledger.client.install.policy import LogTrust, Policy, SignerRule
from sigledger.client.install.proxy import IndexFile, judge
from sigledger.client.install.selection import (
    NOT_ATTRIBUTABLE,
    NOT_FOR_ENVIRONMENT,
    select,
)
from sigledger.client.install.verdicts import evaluate
from sigledger.client.publish.submit import sign_statement
from sigledger.client.trust import VerifiedEntry
from sigledger.ledger.checkpoint import Checkpoint
from sigledger.ledger.entry import Entry, Statement, encode_entry
from sigledger.ledger.note import Signer

ALICE = Signer.from_seed("alice@example.org", hashlib.sha256(b"alice").digest())
MALLORY = Signer.from_seed("mallory@example.org", hashlib.sha256(b"mallory").digest())
LINUX = TargetEnvironment.from_pip_options(
    python_version="3.11", platforms=["manylinux2014_x86_64"], implementation="cp"
)
WINDOWS = TargetEnvironment.from_pip_options(
    python_version="3.11", platforms=["win_amd64"], implementation="cp"
)
MAC = TargetEnvironment.from_pip_options(
    python_version="3.11", platforms=["macosx_14_0_arm64"], implementation="cp"
)
FILES = [
    "demo-1.0-cp311-cp311-win_amd64.whl",
    "demo-1.0-cp311-cp311-macosx_11_0_arm64.whl",
    "demo-1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "demo-1.0-py3-none-any.whl",
    "demo-1.0.tar.gz",
]
_CP = Checkpoint("test/log", 100, b"\0" * 32)


def digest(name: str) -> bytes:
    return hashlib.sha256(name.encode()).digest()


def named(names: list[str], marker: str = "") -> LockedRequirement:
    pins = tuple(Pin("demo", "1.0", digest(n), n, None, f"pylock.toml:{n}") for n in names)
    return LockedRequirement("demo", "1.0", marker, pins, "pylock.toml:packages[0]")


def bare(names: list[str], marker: str = "") -> LockedRequirement:
    pins = tuple(Pin("demo", "1.0", digest(n), None, None, "requirements.txt:1") for n in names)
    return LockedRequirement("demo", "1.0", marker, pins, "requirements.txt:1")


def logged(names: list[str], signer: Signer = ALICE) -> dict[bytes, list[VerifiedEntry]]:
    out: dict[bytes, list[VerifiedEntry]] = {}
    for index, name in enumerate(names):
        st = Statement.for_file(name, digest(name), 100)
        entry = Entry(sign_statement(signer, st), 1_700_000_000_000)
        out.setdefault(digest(name), []).append(
            VerifiedEntry(index, encode_entry(entry), entry, _CP)
        )
    return out


@pytest.mark.parametrize(
    ("env", "chosen"),
    [(LINUX, FILES[2]), (WINDOWS, FILES[0]), (MAC, FILES[1])],
)
def test_named_files_one_per_environment(env: TargetEnvironment, chosen: str) -> None:
    result = select(env, [named(FILES)])
    assert [p.filename for p in result.pins] == [chosen]
    assert {s.pin.filename for s in result.skipped} == set(FILES) - {chosen}
    assert all(s.kind == NOT_FOR_ENVIRONMENT for s in result.skipped)
    assert not result.failed


def test_bare_hashes_are_attributed_by_the_log() -> None:
    entry = bare([*FILES, "unknown-bytes"])
    result = select(WINDOWS, [entry], logged=logged(FILES))
    assert [p.filename for p in result.pins] == [FILES[0]]
    unknown = [s for s in result.skipped if s.kind == NOT_ATTRIBUTABLE]
    assert [s.pin.sha256 for s in unknown] == [digest("unknown-bytes")]
    assert "installs demo-1.0-cp311-cp311-win_amd64.whl, which is verified" in unknown[0].reason


def test_bare_hashes_nothing_logged_checks_every_hash() -> None:
    result = select(LINUX, [bare(FILES)], logged={})
    assert [p.sha256 for p in result.pins] == [digest(n) for n in FILES]
    assert not result.skipped


def test_nothing_fits_the_environment() -> None:
    only_windows = [FILES[0]]
    result = select(LINUX, [bare(only_windows)], logged=logged(only_windows))
    assert not result.pins
    assert len(result.failed) == 1 and not result.failed[0].ok
    assert "no wheel for cp311-manylinux2014_x86_64 and no sdist" in result.failed[0].reason
    # an unattributable hash might be the file for here: it is checked
    result = select(LINUX, [bare([*only_windows, "x"])], logged=logged(only_windows))
    assert [p.sha256 for p in result.pins] == [digest("x")]


def test_a_hash_logged_for_another_project_is_not_attributed() -> None:
    other = Statement.for_file("other-1.0-py3-none-any.whl", digest(FILES[3]), 100)
    entry = Entry(sign_statement(ALICE, other), 1)
    found = {digest(FILES[3]): [VerifiedEntry(0, encode_entry(entry), entry, _CP)]}
    result = select(LINUX, [bare([FILES[3]])], logged=found)
    assert [p.filename for p in result.pins] == [None]  # checked as is, and fails there


def test_markers() -> None:
    entries = [named(FILES[3:4], "sys_platform == 'win32'"), named(FILES[3:4], "os_name == 'nt'")]
    assert len(select(WINDOWS, entries).pins) == 2
    result = select(LINUX, entries)
    assert not result.pins and len(result.skipped) == 2
    assert "marker sys_platform == 'win32' does not hold for cp311-" in result.skipped[0].reason
    with pytest.raises(UndecidableMarkerError, match=r"requirements.txt:1: cannot decide") as info:
        select(WINDOWS, [bare(FILES[3:4], "platform_release >= '6'")])
    assert "platform_release is not known for this target" in str(info.value)
    with pytest.raises(LockfileError, match="malformed environment marker"):
        select(WINDOWS, [bare(FILES[3:4], "os_name ===")])


def test_all_files_ignores_markers_and_environments() -> None:
    entries = [named(FILES, "platform_release >= '6'"), bare(FILES)]
    result = select(WINDOWS, entries, all_files=True)
    assert len(result.pins) == 2 * len(FILES) and not result.skipped


def test_entries_not_from_an_index(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(
        "-e .\n"
        "--editable ./libs/core\n"
        "./vendored/thing\n"
        "file:///srv/wheels/x-1.0-py3-none-any.whl\n"
        "mylib @ git+https://example.org/mylib.git@v1 ; python_version >= '3'\n"
        "other @ file:///srv/other\n"
        f"demo==1.0 ; sys_platform == 'win32' --hash=sha256:{'ab' * 32}\n"
    )
    entries = read_requirements_entries(reqs)
    assert [e.local for e in entries] == [
        "editable .",
        "editable ./libs/core",
        "directory ./vendored/thing",
        "file file:///srv/wheels/x-1.0-py3-none-any.whl",
        "vcs git+https://example.org/mylib.git@v1",
        "file file:///srv/other",
        None,
    ]
    assert entries[4].project == "mylib" and entries[4].marker == 'python_version >= "3"'
    assert entries[6].marker == 'sys_platform == "win32"' and len(entries[6].pins) == 1
    result = select(LINUX, entries)
    assert result.not_from_index[0] == f". (editable ., {reqs}:1)"
    assert result.not_from_index[4] == f"mylib (vcs git+https://example.org/mylib.git@v1, {reqs}:5)"
    assert len(result.not_from_index) == 6 and not result.pins


def test_pylock_entries_keep_markers_and_directories(tmp_path: Path) -> None:
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "test"\ndefault-groups = ["dev"]\n'
        '[[packages]]\nname = "app"\ndirectory = { path = ".", editable = true }\n'
        '[[packages]]\nname = "demo"\nversion = "1.0"\n'
        "marker = \"'dev' in dependency_groups and sys_platform == 'win32'\"\n"
        f'wheels = [{{ url = "https://x.example/{FILES[0]}", '
        f'hashes = {{ sha256 = "{"ab" * 32}" }} }}]\n'
    )
    app, demo = read_pylock_entries(lock)
    assert app.local == "editable ." and not app.pins
    assert demo.dependency_groups == ("dev",) and demo.pins[0].filename == FILES[0]
    assert [p.filename for p in select(WINDOWS, [app, demo]).pins] == [FILES[0]]
    assert not select(LINUX, [demo]).pins
    assert not is_uvlock(lock) and read_locks([], [lock]).entries == [app, demo]


def test_is_uvlock(tmp_path: Path) -> None:
    odd = tmp_path / "project.lock"
    odd.write_text('version = 1\nrequires-python = ">=3.11"\n[[package]]\nname = "x"\n')
    assert is_uvlock(odd) and is_uvlock(tmp_path / "uv.lock")
    assert not is_uvlock(tmp_path / "missing.lock")


@settings(max_examples=200, deadline=None)
@given(
    names=hs.lists(hs.sampled_from(FILES), min_size=1, unique=True),
    unknown=hs.integers(min_value=0, max_value=2),
    env=hs.sampled_from([LINUX, WINDOWS, MAC, TargetEnvironment.current()]),
    attributable=hs.booleans(),
)
def test_every_listed_hash_is_checked_or_reported(
    names: list[str], unknown: int, env: TargetEnvironment, attributable: bool
) -> None:
    """Each listed hash is exactly once either checked or skipped, unless the
    requirement fails as a whole; at most one attributable file is checked, and it
    is choose_file's choice."""
    extra = [f"unknown-{i}" for i in range(unknown)]
    entry = bare([*names, *extra]) if attributable else named(names)
    result = select(env, [entry], logged=logged(names))
    checked = [p.sha256 for p in result.pins]
    skipped = [s.pin.sha256 for s in result.skipped]
    listed = [p.sha256 for p in entry.pins]
    assert sorted(checked + skipped) == sorted(listed) or result.failed
    assert len(set(checked) & set(skipped)) == 0
    choice = choose_file(env, names).chosen
    known = [p.filename for p in result.pins if p.filename is not None]
    if choice is not None:
        assert known == [choice]
        assert all(s.kind == NOT_ATTRIBUTABLE for s in result.skipped if s.pin.filename is None)
    else:
        assert not known and (checked or result.failed)


def test_warnings_name_other_hashes_of_a_verified_file() -> None:
    policy = Policy(
        (LogTrust("http://log", ALICE.verifier(), "test/log"),),
        projects={"demo": SignerRule(frozenset({ALICE.vkey}), 1)},
    )
    good = logged([FILES[3]])[digest(FILES[3])]
    st = Statement.for_file(FILES[3], digest("other bytes"), 100)
    entry = Entry(sign_statement(MALLORY, st), 1)
    bad = VerifiedEntry(7, encode_entry(entry), entry, _CP)
    same = {good[0].entry.statement.identity.key: [*good, bad]}
    pin = Pin("demo", "1.0", digest(FILES[3]), FILES[3], None, "x")
    outcome = evaluate(policy, pin, good, same)
    assert outcome.ok and outcome.warnings == [bad]
    assert outcome.warning_lines()[0].startswith(f"entry #7: {MALLORY.vkey} (not trusted for demo)")
    assert outcome.to_json()["warnings"][0]["log_index"] == 7
    # a file not in the log whose name is: the log's hash is named
    changed = Pin("demo", "1.0", digest("changed"), FILES[3], None, "x")
    outcome = evaluate(policy, changed, [], same)
    assert not outcome.ok
    assert outcome.reason.startswith(
        f"not in the log: the log holds sha256:{digest(FILES[3]).hex()}"
    )
    assert outcome.reason.endswith(f"for this file, you have sha256:{digest('changed').hex()}")
    # one hash that several signers logged is named once, with each of its entries
    again = Entry(sign_statement(MALLORY, good[0].entry.statement), 2)
    twice = VerifiedEntry(9, encode_entry(again), again, _CP)
    outcome = evaluate(policy, changed, [], {next(iter(same)): [*good, twice]})
    assert (
        f"the log holds sha256:{digest(FILES[3]).hex()} (entries #{good[0].index}, #9) "
        "for this file" in outcome.reason
    )


def test_proxy_verdict_carries_the_warning() -> None:
    policy = Policy(
        (LogTrust("http://log", ALICE.verifier(), "test/log"),),
        projects={"demo": SignerRule(frozenset({ALICE.vkey}), 1)},
    )
    entries = [*logged([FILES[3]])[digest(FILES[3])]]
    st = Statement.for_file(FILES[3], digest("other bytes"), 100)
    entry = Entry(sign_statement(MALLORY, st), 1)
    entries.append(VerifiedEntry(5, encode_entry(entry), entry, _CP))
    verdict = judge(policy, "demo", [IndexFile(FILES[3], f"http://up/{FILES[3]}", {})], entries)
    served = verdict[FILES[3]]
    assert served.served and served.sha256 == digest(FILES[3])
    assert len(served.warnings) == 1 and served.warnings[0].startswith("entry #5: ")


def test_pylock_environments_and_requires_python(tmp_path: Path) -> None:
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\ncreated-by = "test"\n'
        "environments = [\"sys_platform == 'win32'\", \"sys_platform == 'darwin'\"]\n"
        'requires-python = ">=3.11"\n'
        '[[packages]]\nname = "demo"\nversion = "1.0"\nrequires-python = "<3.13"\n'
        f'wheels = [{{ url = "https://x.example/{FILES[3]}", '
        f'hashes = {{ sha256 = "{"ab" * 32}" }} }}]\n'
    )
    entries = read_pylock_entries(lock)
    assert [p.filename for p in select(WINDOWS, entries).pins] == [FILES[3]]
    with pytest.raises(LockfileError, match=r"the lock is for the environments .*; cp311-man"):
        select(LINUX, entries)
    old = TargetEnvironment.from_pip_options(python_version="3.10", platforms=["win_amd64"])
    with pytest.raises(LockfileError, match=r"requires Python >=3.11; .* is Python 3.10.0"):
        select(old, entries)
    new = TargetEnvironment.from_pip_options(python_version="3.13", platforms=["win_amd64"])
    with pytest.raises(LockfileError, match=r"demo==1.0 \(.*\) requires Python <3.13"):
        select(new, entries)
    assert len(select(LINUX, entries, all_files=True).pins) == 1
