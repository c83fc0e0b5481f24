"""requirements.txt, pylock.toml and command-line hash readers (client/lockfiles.py)."""

from __future__ import annotations

import datetime
import hashlib
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigledger.client.install.lockfiles import (
    LockfileError,
    Pin,
    line_of,
    pins_from_args,
    read_pylock,
    read_requirements,
    toml_lines,
)
from sigledger.client.install.verdicts import pin_from_file
from sigledger.ledger.errors import FormatError

DATA = Path(__file__).parent / "data"


def sha(name: str) -> str:
    """The fixtures' digests are SHA-256 of the file name, so tests can recompute them."""
    return hashlib.sha256(name.encode()).hexdigest()


H1, H2 = sha("one"), sha("two")
H512 = hashlib.sha512(b"x").hexdigest()


def marked_line(text: str, marker: str = "# <-") -> int:
    """The 1-based line of ``text`` carrying ``marker``."""
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


# ---------------------------------------------------------------------------
# requirements.txt fixtures


def test_requirements_fixture_pins() -> None:
    pins = read_requirements(DATA / "requirements.txt")
    top, base = str(DATA / "requirements.txt"), str(DATA / "requirements-base.txt")
    got = [(p.project, p.version, p.sha256.hex(), p.source) for p in pins]
    assert got == [
        # The -r include comes first, as in the file.
        ("idna", "3.10", sha("idna-3.10-py3-none-any.whl"), f"{base}:2"),
        ("idna", "3.10", sha("idna-3.10.tar.gz"), f"{base}:2"),
        ("certifi", "2024.8.30", sha("certifi-2024.8.30-py3-none-any.whl"), f"{top}:14"),
        ("certifi", "2024.8.30", sha("certifi-2024.8.30.tar.gz"), f"{top}:14"),
        *[
            ("charset-normalizer", "3.4.0", sha(f"charset_normalizer-3.4.0{suffix}"), f"{top}:18")
            for suffix in (
                "-cp311-cp311-macosx_10_9_universal2.whl",
                "-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
                "-cp311-cp311-win_amd64.whl",
                ".tar.gz",
            )
        ],
        ("pysocks", "1.7.1", sha("PySocks-1.7.1-py3-none-any.whl"), f"{top}:24"),
        ("requests", "2.32.3", sha("requests-2.32.3-py3-none-any.whl"), f"{top}:25"),
        ("requests", "2.32.3", sha("requests-2.32.3.tar.gz"), f"{top}:25"),
        # Its sha512 hash is not indexed by the log and yields no pin.
        ("urllib3", "2.2.3", sha("urllib3-2.2.3-py3-none-any.whl"), f"{top}:29"),
        # A direct reference: the version its filename names ("#egg=" is a fragment).
        ("sampleproject", "4.0.0", sha("sampleproject-4.0.0.tar.gz"), f"{top}:33"),
    ]
    assert all(p.filename is None and p.size is None and len(p.sha256) == 32 for p in pins)


def test_constraints_files_are_not_read() -> None:
    # The fixture's constraints file has no hashes: reading it would fail.
    with pytest.raises(LockfileError, match="not pinned by hash"):
        read_requirements(DATA / "requirements-constraints.txt")
    read_requirements(DATA / "requirements.txt")


def test_include_cycle_fixture() -> None:
    a, b = DATA / "requirements-cycle-a.txt", DATA / "requirements-cycle-b.txt"
    with pytest.raises(LockfileError) as info:
        read_requirements(a)
    assert str(info.value) == f"{b}:2: include cycle: {a} -> {b} -> {a}"


def test_comment_inside_continuation_orphans_hashes() -> None:
    path = DATA / "requirements-broken.txt"
    with pytest.raises(LockfileError) as info:
        read_requirements(path)
    assert str(info.value).startswith(f"{path}:5: --hash without a requirement on its line")


# ---------------------------------------------------------------------------
# requirements.txt syntax


def write(tmp_path: Path, text: str, name: str = "requirements.txt") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


def pins_of(tmp_path: Path, text: str) -> list[tuple[str, str | None, str, str]]:
    path = write(tmp_path, text)
    return [
        (p.project, p.version, p.sha256.hex(), p.source.rpartition(":")[2])
        for p in read_requirements(path)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # separate and attached option values, upper-case hex, duplicate hashes
        (f"Foo_Bar == 1.0 --hash sha256:{H1.upper()} --hash=sha256:{H1}\n", [("foo-bar", "1.0")]),
        # normalized versions, === and extras and markers
        (f"foo[x,y]==1.0.0a1 ; python_version < '4' --hash=sha256:{H1}\n", [("foo", "1.0.0a1")]),
        (f"foo===01.0 --hash=sha256:{H1}\n", [("foo", "1.0")]),
        (f"foo==1.0.post0-dev1 --hash=sha256:{H1}\n", [("foo", "1.0.post0.dev1")]),
        # per-requirement options that do not matter here
        (f"foo==1 -C key=value --global-option=x --hash=sha256:{H1}\n", [("foo", "1")]),
        # a direct reference: the version its filename names, else none
        (f"foo @ https://example.org/foo-1.0.tar.gz --hash=sha256:{H1}\n", [("foo", "1.0")]),
        (
            f"foo @ https://example.org/f/foo-1.0-py3-none-any.whl --hash=sha256:{H1}\n",
            [("foo", "1.0")],
        ),
        (f"foo @ https://example.org/bar-1.0.tar.gz --hash=sha256:{H1}\n", [("foo", None)]),
        # global options on their own lines are ignored
        (
            "--index-url https://example.org/simple -i https://example.org/s\n"
            "--extra-index-url=https://x.example/simple\n"
            "-f ./wheels -f./more --find-links=../x --no-index\n"
            "--require-hashes --only-binary :all: --no-binary=foo --prefer-binary --pre\n"
            "--trusted-host example.org --use-feature truststore\n"
            "-c missing-constraints.txt --constraint=also-missing.txt -cmissing.txt\n"
            f"foo==1 --hash=sha256:{H1}\n",
            [("foo", "1")],
        ),
        # comments: full line, after white space, with a backslash (which then
        # does not continue the line), and "#" without white space is not one
        (
            "# header \\\n"
            f"foo==1 --hash=sha256:{H1}  # trailing comment\n"
            f"   # indented comment \\\n"
            f"foo @ https://example.org/foo.tar.gz#sha256=abc --hash=sha256:{H1}\n",
            [("foo", "1"), ("foo", None)],
        ),
        # a blank line and a line of white space
        (f"\n   \t\nfoo==1 --hash=sha256:{H1}\n", [("foo", "1")]),
    ],
)
def test_requirement_forms(tmp_path: Path, text: str, expected: list[tuple[str, str]]) -> None:
    got = [(p, v) for p, v, _, _ in pins_of(tmp_path, text)]
    assert got == expected


def test_direct_references_are_named_by_project_and_version(tmp_path: Path) -> None:
    """``name @ URL`` lines read as project and version, never ``name==None``."""
    path = write(
        tmp_path,
        f"urllib3 @ https://files.example/urllib3-2.2.1-py3-none-any.whl --hash=sha256:{H1}\n"
        f"foo @ https://example.org/archive.tar.gz --hash=sha256:{H2}\n",
    )
    named, unnamed = read_requirements(path)
    assert named.name.startswith("urllib3==2.2.1 sha256:")
    assert unnamed.name.startswith("foo sha256:")
    assert "None" not in named.name + unnamed.name


def test_one_pin_per_sha256_hash_and_line_of_first_line(tmp_path: Path) -> None:
    text = (
        "# comment\n"
        "foo==1.0 \\\n"
        f"    --hash=sha256:{H1} \\\n"
        f"    --hash=sha512:{H512} \\\n"
        f"    --hash=sha256:{H2}\n"
        "    # via bar\n"
        f"bar==2 --hash=sha256:{H2}"  # no final newline
    )
    assert pins_of(tmp_path, text) == [
        ("foo", "1.0", H1, "2"),
        ("foo", "1.0", H2, "2"),
        ("bar", "2", H2, "7"),
    ]


def test_crlf_bom_and_trailing_backslash(tmp_path: Path) -> None:
    path = tmp_path / "r.txt"
    path.write_bytes(
        b"\xef\xbb\xbf# windows\r\nfoo==1 \\\r\n  --hash=sha256:" + H1.encode() + b" \\\r\n"
    )
    assert [(p.project, p.sha256.hex(), p.source) for p in read_requirements(path)] == [
        ("foo", H1, f"{path}:2")
    ]


def test_long_lines_of_blanks_are_fast(tmp_path: Path) -> None:
    # A quadratic comment pattern would take minutes here.
    blanks = " " * 400_000
    text = f"foo==1{blanks}--hash=sha256:{H1}{blanks}# comment{blanks}\\\n{blanks}bar==1\n"
    with pytest.raises(LockfileError, match=r":2: bar is not pinned by hash"):
        read_requirements(write(tmp_path, text))


def test_includes_relative_to_including_file(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub, f"bar==2 --hash=sha256:{H2}\n-r ../common.txt\n", "inner.txt")
    write(tmp_path, f"baz==3 --hash=sha256:{H1}\n", "common.txt")
    top = write(
        tmp_path,
        f"-r sub/inner.txt\n--requirement=common.txt\n-rcommon.txt\nfoo==1 --hash=sha256:{H1}\n",
    )
    pins = read_requirements(top)
    # A file included twice (not a cycle) is read twice, as pip does.
    assert [(p.project, p.source) for p in pins] == [
        ("bar", f"{sub / 'inner.txt'}:1"),
        ("baz", f"{sub / '..' / 'common.txt'}:1"),
        ("baz", f"{tmp_path / 'common.txt'}:1"),
        ("baz", f"{tmp_path / 'common.txt'}:1"),
        ("foo", f"{top}:4"),
    ]
    # An absolute include works too.
    top.write_text(f"-r {tmp_path / 'common.txt'}\n")
    assert [p.project for p in read_requirements(top)] == ["baz"]


def test_self_include_is_a_cycle(tmp_path: Path) -> None:
    path = write(tmp_path, f"foo==1 --hash=sha256:{H1}\n\n-r ./requirements.txt\n")
    with pytest.raises(LockfileError) as info:
        read_requirements(path)
    assert str(info.value) == (
        f"{path}:3: include cycle: {path} -> {tmp_path / 'requirements.txt'}"
    )


def test_include_cycle_through_a_symlink(tmp_path: Path) -> None:
    write(tmp_path, "-r link.txt\n", "a.txt")
    (tmp_path / "link.txt").symlink_to(tmp_path / "a.txt")
    with pytest.raises(LockfileError, match=r"a\.txt:1: include cycle: "):
        read_requirements(tmp_path / "a.txt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("foo==1.0\n", "foo is not pinned by hash (no --hash option)"),
        ("-e ./src  # <-\n", "editable requirement is not pinned by hash"),
        ("--editable=git+https://example.org/foo.git\n", "editable requirement"),
        (f"foo==1 --hash=sha512:{H512}\n", "foo has only sha512 hashes; the log indexes sha256"),
        (
            f"foo==1 --hash=sha384:{H512[:96]} --hash=sha512:{H512}\n",
            "foo has only sha384, sha512 hashes",
        ),
        (f"foo==1 --hash=md5:{H1[:32]}\n", "is not ALG:HEX with ALG sha256, sha384 or sha512"),
        (f"foo==1 --hash={H1}\n", "is not ALG:HEX"),
        (f"foo==1 --hash=sha256:{H1[:-1]}\n", "want 64 hex digits"),
        (f"foo==1 --hash=sha256:{H1[:-1]}g\n", "want 64 hex digits"),
        (f"foo>=1.0 --hash=sha256:{H1}\n", "foo is not pinned to one version with =="),
        (f"foo==1.* --hash=sha256:{H1}\n", "not pinned to one version"),
        (f"foo==1,==1.0 --hash=sha256:{H1}\n", "not pinned to one version"),
        (f"foo --hash=sha256:{H1}\n", "not pinned to one version"),
        (f"foo===latest --hash=sha256:{H1}\n", "version 'latest' is not a PEP 440 version"),
        (f"foo bar==1 --hash=sha256:{H1}\n", "'foo bar==1' is not a PEP 508 requirement"),
        (
            f"https://example.org/foo-1.0.tar.gz --hash=sha256:{H1}\n",
            "a direct URL is written NAME @ URL",
        ),
        (
            f"./foo-1.0-py3-none-any.whl --hash=sha256:{H1}\n",
            "file ./foo-1.0-py3-none-any.whl is not",
        ),
        ("--frobnicate\n", "unknown or unsupported option '--frobnicate'"),
        ("--pre=yes\n", "unknown or unsupported option '--pre=yes'"),
        ("--index-url https://x.example/s extra\n", "unknown or unsupported option 'extra'"),
        (f"foo==1 --install-option=x --hash=sha256:{H1}\n", "option '--install-option=x' after"),
        (f"foo==1 --hash=sha256:{H1} stray\n", "unknown or unsupported option 'stray'"),
        (f"--hash=sha256:{H1}\n", "--hash without a requirement on its line"),
        ("-r\n", "option -r needs a value"),
        ("--index-url\n", "option --index-url needs a value"),
        ("foo==1 --hash\n", "option --hash needs a value"),
        (f"foo==1 --hash='sha256:{H1}\n", "cannot split options"),
        ("-r 'unterminated\n", "cannot split options"),
        ("-r https://example.org/requirements.txt\n", "only local files"),
        ("-r missing.txt\n", "missing.txt' does not exist"),
        ("-r .\n", "is not a regular file"),
        ("-r /dev/null/x\n", "does not exist"),
    ],
)
def test_requirement_errors(tmp_path: Path, text: str, message: str) -> None:
    text = "# leading comment\n\n" + text
    path = write(tmp_path, text)
    with pytest.raises(LockfileError) as info:
        read_requirements(path)
    error = str(info.value)
    assert error.startswith(f"{path}:3: "), error
    assert message in error, error
    assert isinstance(info.value, FormatError)


def test_errors_in_included_file_name_that_file(tmp_path: Path) -> None:
    write(tmp_path, f"ok==1 --hash=sha256:{H1}\nbad==1\n", "inner.txt")
    top = write(tmp_path, "-r inner.txt\n")
    with pytest.raises(LockfileError) as info:
        read_requirements(top)
    assert (
        str(info.value)
        == f"{tmp_path / 'inner.txt'}:2: bad is not pinned by hash (no --hash option)"
    )


def test_continued_requirement_reports_its_first_line(tmp_path: Path) -> None:
    path = write(tmp_path, f"ok==1 --hash=sha256:{H1}\nbad>=1 \\\n  --hash=sha256:{H1}\n")
    with pytest.raises(LockfileError, match=r":2: bad is not pinned to one version"):
        read_requirements(path)


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(LockfileError) as info:
        read_requirements(missing)
    assert str(info.value) == f"{missing}: {str(missing)!r} does not exist"
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(f"foo==1 --hash=sha256:{H1}\n# caf\xe9\n".encode("latin-1"))
    with pytest.raises(LockfileError, match=r"latin1\.txt:2: not valid UTF-8"):
        read_requirements(bad)
    with pytest.raises(LockfileError, match="embedded null byte"):
        read_requirements(tmp_path / "a\0b")


# ---------------------------------------------------------------------------
# pylock.toml


def test_pylock_fixture() -> None:
    path = DATA / "pylock.toml"
    pins, unhashed = read_pylock(path)
    got = [
        (p.project, p.version, p.filename, p.size, p.source.removeprefix(f"{path}:")) for p in pins
    ]
    assert got == [
        (
            "certifi",
            "2024.8.30",
            "certifi-2024.8.30-py3-none-any.whl",
            167321,
            "packages[0].wheels[0]",
        ),
        ("certifi", "2024.8.30", "certifi-2024.8.30.tar.gz", 168507, "packages[0].sdist"),
        (
            "charset-normalizer",
            "3.4.0",
            "charset_normalizer-3.4.0-cp311-cp311-macosx_10_9_universal2.whl",
            193339,
            "packages[1].wheels[0]",
        ),
        (
            "charset-normalizer",
            "3.4.0",
            "charset_normalizer-3.4.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
            140395,
            "packages[1].wheels[1]",
        ),
        (
            "charset-normalizer",
            "3.4.0",
            "charset_normalizer-3.4.0-cp311-cp311-win_amd64.whl",
            102062,
            "packages[1].wheels[2]",
        ),
        (
            "charset-normalizer",
            "3.4.0",
            "charset_normalizer-3.4.0.tar.gz",
            106620,
            "packages[1].sdist",
        ),
        (
            "colorama",
            "0.4.6",
            "colorama-0.4.6-py2.py3-none-any.whl",
            25335,
            "packages[2].wheels[0]",
        ),
        ("colorama", "0.4.6", "colorama-0.4.6.tar.gz", 27697, "packages[2].sdist"),
        ("sampleproject", "4.0.0", "sampleproject-4.0.0.tar.gz", 7400, "packages[3].archive"),
    ]
    assert all(p.sha256 == bytes.fromhex(sha(p.filename or "")) for p in pins)
    assert unhashed == [
        f"tomli-helper (vcs, {path}:packages[4])",
        f"myapp (directory, {path}:packages[5])",
    ]


def test_pylock_fixture_missing_hashes() -> None:
    path = DATA / "pylock-broken.toml"
    with pytest.raises(LockfileError) as info:
        read_pylock(path)
    assert str(info.value) == (f"{path}:10: packages[0].wheels[1].hashes: Missing required value")


PYLOCK_HEAD = 'lock-version = "1.0"\ncreated-by = "test"\n'


def test_pylock_tables_paths_and_derived_versions(tmp_path: Path) -> None:
    text = (
        PYLOCK_HEAD
        + (
            "[[packages]]\n"
            'name = "foo"\n'  # no version: taken from the file names
            "[[packages.wheels]]\n"
            'name = "foo-1.0-py3-none-any.whl"\n'
            'url = "https://example.org/whatever"\n'
            f'hashes = {{ sha256 = "{H1.upper()}", sha512 = "{H512}" }}\n'
            "[packages.sdist]\n"
            'path = "dist\\\\foo-1.0.tar.gz"\n'
            f'hashes = {{ sha256 = "{H2}" }}\n'
            "[[packages]]\n"
            'name = "bar"\n'
            'archive = { url = "https://example.org/a/bar%2B1.zip?x=1#frag", hashes = { sha256 = "'
            + H1
            + '" } }\n'
            "[[packages]]\n"
            'name = "baz"\n'
            'version = "2"\n'
            f'archive = {{ path = "../baz.tar.gz", hashes = {{ sha256 = "{H1}" }} }}\n'
        )
    )
    path = write(tmp_path, text, "pylock.toml")
    pins, unhashed = read_pylock(path)
    assert unhashed == []
    assert pins == [
        Pin(
            "foo",
            "1.0",
            bytes.fromhex(H1),
            "foo-1.0-py3-none-any.whl",
            None,
            f"{path}:packages[0].wheels[0]",
        ),
        Pin("foo", "1.0", bytes.fromhex(H2), "foo-1.0.tar.gz", None, f"{path}:packages[0].sdist"),
        Pin("bar", None, bytes.fromhex(H1), "bar+1.zip", None, f"{path}:packages[1].archive"),
        Pin("baz", "2", bytes.fromhex(H1), "baz.tar.gz", None, f"{path}:packages[2].archive"),
    ]


WHEEL = 'url = "https://example.org/foo-1.0-py3-none-any.whl"'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            'lock-version = "1.0"\ncreated-by = "x"\npackages = [\n  { name = "a", # <-\n',
            "invalid TOML",
        ),
        (
            'lock-version = "2.0"  # <-\ncreated-by = "x"\npackages = []\n',
            "pylock version 2.0 is not supported",
        ),
        (
            'lock-version = 1.0  # <-\ncreated-by = "x"\npackages = []\n',
            "lock-version: Unexpected type float",
        ),
        ('lock-version = "1.0"\npackages = []\n', "created-by: Missing required value"),
        (
            PYLOCK_HEAD + '[[packages]]\nname = "Foo_Bar"  # <-\nversion = "1"\n',
            "packages[0].name: Name 'Foo_Bar' is not normalized",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "ok"\ndirectory = { path = "." }\n'
            + '[[packages]]  # <-\nversion = "1"\n',
            "packages[1].name: Missing required value",
        ),
        (
            PYLOCK_HEAD + '[[packages]]  # <-\nname = "foo"\nversion = "1.0"\n',
            "packages[0]: Exactly one of vcs, directory, archive must be set",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\nwheels = [\n'
            + f'  {{ {WHEEL}, hashes = {{ sha256 = "{H1}" }} }},\n'
            + f'  {{ path = "bar-1.0-py3-none-any.whl", hashes = {{ sha256 = "{H1}" }} }}, # <-\n'
            + "]\n",
            "packages[0].wheels[1]: Name in 'bar-1.0-py3-none-any.whl' is not consistent",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\n[[packages.wheels]]\n'
            + f'{WHEEL}\nhashes = {{ sha512 = "{H512}" }}  # <-\n',
            "packages[0].wheels[0]: has only sha512 hashes; the log indexes sha256",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\n[[packages.wheels]]\n'
            + f'{WHEEL}\nhashes.sha256 = "{H1[:-2]}"  # <-\n',
            "packages[0].wheels[0]: sha256 '" + H1[:-2] + "' is not 64 hex digits",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\n[packages.sdist]\n'
            + 'url = "https://example.org/foo-1.0.tar.gz"\nsize = -1  # <-\n'
            + f'hashes = {{ sha256 = "{H1}" }}\n',
            "packages[0].sdist: size -1 is negative",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\n[packages.sdist]\n'
            + 'url = "https://example.org/foo-1.0.tar.gz"\nupload-time = "2024-01-01"  # <-\n'
            + f'hashes = {{ sha256 = "{H1}" }}\n',
            "packages[0].sdist.upload-time: Unexpected type str (expected datetime)",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\n'
            + 'archive = { url = "https://example.org/foo.zip", hashes = {} }  # <-\n',
            "packages[0].archive.hashes: At least one hash must be provided",
        ),
        (
            PYLOCK_HEAD
            + '[[packages]]\nname = "foo"\nversion = "1.0"\n'
            + 'directory = { path = "." }\n'
            + '[[packages]]\nname = "bar"\nvcs = { type = "git", url = "u" }  # <-\n',
            "packages[1].vcs.commit-id: Missing required value",
        ),
    ],
)
def test_pylock_errors(tmp_path: Path, body: str, message: str) -> None:
    path = write(tmp_path, body, "pylock.toml")
    expected_line = marked_line(body) if "# <-" in body else 1
    with pytest.raises(LockfileError) as info:
        read_pylock(path)
    error = str(info.value)
    assert error.startswith(f"{path}:{expected_line}: "), error
    assert message in error, error


def test_pylock_minor_version_and_odd_archive_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # packaging accepts any 1.x lock-version and only logs a warning for it.
    text = (
        'lock-version = "1.1"\ncreated-by = "x"\n[[packages]]\nname = "foo"\n'
        f'archive = {{ url = "https://[x/foo.zip", hashes = {{ sha256 = "{H1}" }} }}\n'
    )
    pins, _ = read_pylock(write(tmp_path, text, "pylock.toml"))
    assert [(p.project, p.version, p.filename) for p in pins] == [("foo", None, None)]
    assert "pylock minor version 1.1 is not supported" in caplog.text


def test_pylock_directory_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(LockfileError, match="is not a regular file"):
        read_pylock(tmp_path)
    broken = tmp_path / "pylock.toml"
    broken.write_bytes(b'lock-version = "1.0"\n\ncreated-by = "\xff"\n')
    with pytest.raises(LockfileError, match=r"pylock\.toml:3: not valid UTF-8"):
        read_pylock(broken)


def test_pylock_error_for_a_single_package_copied_from_the_fixture(tmp_path: Path) -> None:
    # Corrupt the third package of a realistic file: the line must be its own.
    text = (DATA / "pylock.toml").read_text()
    text = text.replace('name = "colorama"', 'name = "Colorama"')
    path = write(tmp_path, text, "pylock.toml")
    with pytest.raises(LockfileError) as info:
        read_pylock(path)
    assert str(info.value).startswith(f"{path}:{marked_line(text, 'Colorama')}: packages[2].name:")


# ---------------------------------------------------------------------------
# command-line hashes


def test_pins_from_args() -> None:
    assert pins_from_args([f"sha256:{H1}", f"sha256:{H2}"]) == [
        Pin(None, None, bytes.fromhex(H1), None, None, "argument 1"),
        Pin(None, None, bytes.fromhex(H2), None, None, "argument 2"),
    ]
    assert pins_from_args([]) == []


@pytest.mark.parametrize(
    "value",
    [
        H1,
        f"sha256:{H1.upper()}",
        f"sha256:{H1[:-1]}",
        f"sha256:{H1}0",
        f"sha512:{H512}",
        f"SHA256:{H1}",
        f" sha256:{H1}",
        f"sha256={H1}",
    ],
)
def test_pins_from_args_errors(value: str) -> None:
    with pytest.raises(LockfileError) as info:
        pins_from_args([f"sha256:{H1}", value])
    assert str(info.value).startswith("argument 2: ")
    assert "is not sha256:<64 lowercase hex digits>" in str(info.value)


# ---------------------------------------------------------------------------
# TOML positions


def test_toml_lines() -> None:
    text = (
        'title = "x"  # [not] a = "table"\n'  # 1
        's = """\n'  # 2
        "[[packages]]\n"  # 3: inside a string
        'still = "string" \\""" """\n'  # 4
        "lit = '''a''''\n"  # 5
        "[[packages]]\n"  # 6
        'name = "a"\n'  # 7
        "wheels = [\n"  # 8
        '  { url = "u", hashes = { sha256 = "h" } },  # ] }\n'  # 9
        "  # comment\n"  # 10
        "  { url = 'v' },\n"  # 11
        "]\n"  # 12
        "[[packages]]\n"  # 13
        "[packages.sdist]\n"  # 14
        "when = 1979-05-27 07:32:00Z\n"  # 15
        "\"quoted\\u0041\" . bare . 'lit' = [1, [2,\n3]]\n"  # 16, 17
        "[[packages.wheels]]\n"  # 18
        "[[packages.wheels]]\n"  # 19
        "x.y = { z = true }\n"  # 20
        '[project."my proj"]\n'  # 21
    )
    tomllib.loads(text)
    lines = toml_lines(text)
    assert lines[("title",)] == 1
    assert lines[("s",)] == 2
    assert lines[("lit",)] == 5
    assert lines[("packages",)] == 6
    assert lines[("packages", 0)] == 6
    assert lines[("packages", 0, "name")] == 7
    assert lines[("packages", 0, "wheels")] == 8
    assert lines[("packages", 0, "wheels", 0)] == 9
    assert lines[("packages", 0, "wheels", 0, "hashes", "sha256")] == 9
    assert lines[("packages", 0, "wheels", 1)] == 11
    assert lines[("packages", 0, "wheels", 1, "url")] == 11
    assert lines[("packages", 1)] == 13
    assert lines[("packages", 1, "sdist")] == 14
    assert lines[("packages", 1, "sdist", "when")] == 15
    assert lines[("packages", 1, "sdist", "quotedA", "bare", "lit")] == 16
    assert lines[("packages", 1, "sdist", "quotedA", "bare", "lit", 1, 1)] == 17
    assert lines[("packages", 1, "wheels", 0)] == 18
    assert lines[("packages", 1, "wheels", 1)] == 19
    assert lines[("packages", 1, "wheels", 1, "x", "y", "z")] == 20
    assert lines[("project", "my proj")] == 21
    assert ("still",) not in lines
    assert len([p for p in lines if p[:1] == ("packages",) and len(p) == 2]) == 2
    assert line_of(lines, ("packages", 1, "wheels", 1, "missing", 3)) == 19
    assert line_of(lines, ("nothing",)) == 1
    assert line_of(lines, ()) == 1


def test_toml_lines_gives_up_quietly_on_invalid_text() -> None:
    assert toml_lines('a = 1\nb = "open\n') == {("a",): 1, ("b",): 2}
    assert toml_lines("[[x\n") == {("x",): 1, ("x", 0): 1}
    assert toml_lines("= 1\n") == {}
    assert toml_lines("a = [1, \n") == {("a",): 1, ("a", 0): 1}


# ---------------------------------------------------------------------------
# properties

TOML_KEYS = st.one_of(
    st.sampled_from(
        [
            "lock-version",
            "created-by",
            "packages",
            "name",
            "version",
            "wheels",
            "sdist",
            "archive",
            "vcs",
            "directory",
            "hashes",
            "sha256",
            "url",
            "path",
            "size",
            "upload-time",
            "marker",
            "type",
            "commit-id",
            "editable",
            "tool",
        ]
    ),
    st.text(max_size=6),
)
TOML_SCALARS = st.one_of(
    st.sampled_from(
        [
            "1.0",
            "foo",
            "foo-1.0-py3-none-any.whl",
            "foo-1.0.tar.gz",
            H1,
            "https://e.org/foo-1.0.tar.gz",
        ]
    ),
    st.text(max_size=8),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.floats(allow_nan=False),
    st.datetimes(timezones=st.just(datetime.UTC)),
    st.dates(),
)


def toml_values() -> st.SearchStrategy[Any]:
    return st.recursive(
        TOML_SCALARS,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TOML_KEYS, inner, max_size=4),
        max_leaves=12,
    )


def leaf_paths(value: Any, path: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in leaf_paths(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in leaf_paths(v, (*path, i))] or [path]
    return [path]


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(TOML_KEYS, toml_values(), max_size=5))
def test_toml_lines_finds_every_value_of_generated_documents(doc: dict[str, Any]) -> None:
    text = tomli_w.dumps(doc)
    assert tomllib.loads(text) == doc
    lines = toml_lines(text)
    count = text.count("\n") + 1
    for path in leaf_paths(doc):
        if path:
            assert path in lines, (path, text)
    assert all(1 <= line <= count for line in lines.values())


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.one_of(
        st.text(max_size=300),
        st.lists(
            st.sampled_from(
                [
                    "foo",
                    "==1.0",
                    "foo==1.0",
                    "@",
                    "https://e.org/f.whl",
                    "--hash",
                    "--hash=",
                    f"sha256:{H1}",
                    f"--hash=sha256:{H1}",
                    "sha512:ab",
                    "-r",
                    "-c",
                    "-e",
                    "requirements.txt",
                    ".",
                    "..",
                    "#",
                    "\\",
                    "\\\n",
                    "\n",
                    " ",
                    "'",
                    '"',
                    ";",
                    "-i",
                    "--pre",
                    "-C",
                    "[x]",
                    "===",
                    "*",
                    "\r\n",
                    "\t",
                    "-",
                    "--",
                ]
            ),
            max_size=25,
        ).map("".join),
    )
)
def test_read_requirements_raises_only_lockfile_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        pins = read_requirements(path)
    except LockfileError as exc:
        pins, error = [], str(exc)
    else:
        error = str(tmp_path)
    assert error.startswith(str(tmp_path))
    assert all(len(p.sha256) == 32 and p.project for p in pins)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=200))
def test_read_requirements_bytes_raise_only_lockfile_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "requirements.txt"
    path.write_bytes(data)
    try:
        read_requirements(path)
    except LockfileError:
        pass


def pylock_docs() -> st.SearchStrategy[dict[str, Any]]:
    """Documents near the pylock schema, so that many get past validation."""
    digests = st.sampled_from([H1, H2, H1.upper(), H1[:-1], "zz", ""])
    file_table = st.fixed_dictionaries(
        {
            "url": st.sampled_from(
                [
                    "https://e.org/foo-1.0-py3-none-any.whl",
                    "https://e.org/foo-1.0.tar.gz",
                    "https://e.org/foo-1.0-py3-none-any.whl?x#y",
                    "https://[x",
                    "u",
                ]
            ),
            "hashes": st.one_of(
                st.fixed_dictionaries({"sha256": digests}),
                st.dictionaries(st.sampled_from(["sha256", "sha512"]), TOML_SCALARS, max_size=2),
            ),
        },
        optional={
            "name": st.sampled_from(["foo-1.0-py3-none-any.whl", "foo-1.0.zip", "x"]),
            "path": st.sampled_from(["foo-1.0.tar.gz", "a\\foo-1.0-py3-none-any.whl", "", "/"]),
            "size": st.integers(min_value=-2, max_value=2**63 - 1),
            "upload-time": TOML_SCALARS,
        },
    )
    package = st.fixed_dictionaries(
        {"name": st.sampled_from(["foo"] * 6 + ["bar", "Foo"])},
        optional={
            "version": st.sampled_from(["1.0", "1", "2.0", "x"]),
            "wheels": st.lists(file_table, max_size=3),
            "sdist": file_table,
            "archive": file_table,
            "vcs": st.fixed_dictionaries(
                {"type": st.just("git"), "commit-id": st.just("ab")},
                optional={"url": st.just("https://e.org/x.git"), "path": TOML_SCALARS},
            ),
            "directory": st.fixed_dictionaries({"path": st.just(".")}),
            "marker": st.sampled_from(["python_version > '3'"] * 4 + ["bad marker"]),
            "attestation-identities": st.lists(
                st.dictionaries(st.sampled_from(["kind", "x"]), TOML_SCALARS), max_size=2
            ),
        },
    )
    return st.fixed_dictionaries(
        {
            "lock-version": st.sampled_from(["1.0"] * 8 + ["1.1", "2.0", "x"]),
            "created-by": st.just("test"),
            "packages": st.lists(package, max_size=3),
        },
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=st.one_of(pylock_docs(), st.dictionaries(TOML_KEYS, toml_values(), max_size=4)))
def test_read_pylock_raises_only_lockfile_error(tmp_path: Path, doc: dict[str, Any]) -> None:
    path = tmp_path / "pylock.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8", errors="surrogatepass")
    try:
        pins, unhashed = read_pylock(path)
    except LockfileError as exc:
        pins, unhashed, error = [], [], str(exc)
    else:
        error = f"{path}:"
    assert error.startswith(f"{path}:")
    assert all(len(p.sha256) == 32 and (p.size is None or p.size >= 0) for p in pins)
    assert all(isinstance(name, str) for name in unhashed)


def test_pin_sources_name_the_path_read(tmp_path: Path) -> None:
    # Pin sources name the path they were read from, whatever the directory.
    shutil.copy(DATA / "requirements.txt", tmp_path)
    shutil.copy(DATA / "requirements-base.txt", tmp_path)
    pins = read_requirements(tmp_path / "requirements.txt")
    assert pins[0].source == f"{tmp_path / 'requirements-base.txt'}:2"


def test_pin_names_say_what_is_checked(tmp_path: Path) -> None:
    digest = bytes.fromhex(H1)
    assert Pin(None, None, digest, None, None, "argument 1").name == f"sha256:{H1}"
    assert (
        Pin("foo", "1.0", digest, None, None, "r.txt:3").name
        == f"foo==1.0 sha256:{H1[:16]}… (r.txt:3)"
    )
    assert Pin("foo", "1.0", digest, "foo-1.0.tar.gz", 5, "p:x").name == "foo-1.0.tar.gz (p:x)"
    # A file on disk is named by its path, and known by its release name when it has one.
    wheel = tmp_path / "Foo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")
    pin = pin_from_file(wheel)
    assert (pin.name, pin.project, pin.version, pin.size) == (str(wheel), "foo", "1.0", 5)
    other = tmp_path / "notes.txt"
    other.write_bytes(b"x")
    assert (pin_from_file(other).project, pin_from_file(other).filename) == (None, None)
