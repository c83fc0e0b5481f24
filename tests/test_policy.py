"""The installer's trust policy (client/policy.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import platformdirs
import pytest
import tomli_w
from hypothesis import given, settings
from hypothesis import strategies as st

from sigledger.client.install.policy import (
    Decision,
    LogTrust,
    Policy,
    PolicyError,
    SignerRule,
    WitnessPolicy,
    default_policy_path,
    default_state_dir,
    dump_policy,
    load_policy,
    parse_policy,
    pin_projects,
)
from sigledger.ledger.errors import ConfigError
from sigledger.ledger.note import ALG_COSIGNATURE_V1, Signer, Verifier

DATA = Path(__file__).parent / "data"


def key(name: str, seed: int, alg: int = 1) -> str:
    return Signer.from_seed(name, bytes([seed]) * 32, alg).vkey


# The keys of tests/data/policy.toml.
LOG = key("log.example.org", 1)
LOG2 = key("log.example.net", 4)
W1 = key("witness1.example", 2, ALG_COSIGNATURE_V1)
W2 = key("witness2.example", 3, ALG_COSIGNATURE_V1)
ALICE = key("alice@example.org", 10)
BOB = key("bob@example.org", 11)
CAROL = key("carol@example.org", 12)
DAVE = key("dave@example.org", 13)
# Same name and type as ALICE, another public key.
MALLORY_AS_ALICE = key("alice@example.org", 99)

MINIMAL = f'version = 1\n[[log]]\nurl = "https://log.example.org"\nkey = "{LOG}"\n'


def marked_line(text: str, marker: str = "# <-") -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if marker in line)


@pytest.fixture
def policy() -> Policy:
    return load_policy(DATA / "policy.toml")


# ---------------------------------------------------------------------------
# Loading


def test_fixture_policy(policy: Policy) -> None:
    assert policy.source == str(DATA / "policy.toml")
    assert policy.logs == (
        LogTrust("https://log.example.org", Verifier.from_vkey(LOG), "log.example.org"),
        LogTrust(
            "https://example.net/transparency/",
            Verifier.from_vkey(LOG2),
            "example.net/transparency",
        ),
    )
    assert policy.witnesses == WitnessPolicy(
        (Verifier.from_vkey(W1), Verifier.from_vkey(W2)), quorum=1
    )
    assert policy.default == SignerRule(frozenset({ALICE}), 1)
    assert policy.projects == {
        "requests": SignerRule(frozenset({ALICE, BOB, CAROL}), 2),
        "sampleproject": SignerRule(frozenset(), 1, any_signer=True),
    }


def test_minimal_policy() -> None:
    policy = parse_policy(MINIMAL)
    assert policy.source == "<memory>"
    assert policy.witnesses == WitnessPolicy((), 0)
    assert policy.default is None
    assert policy.projects == {}
    assert policy.rule_for("anything") is None


def test_rule_for_canonicalizes(policy: Policy) -> None:
    assert policy.rule_for("REQUESTS") is policy.projects["requests"]
    assert policy.rule_for("Sample_Project") is policy.default
    assert policy.rule_for("sample.project") is policy.default
    assert policy.rule_for("sampleproject") is policy.projects["sampleproject"]


def test_log_for(policy: Policy) -> None:
    first, second = policy.logs
    assert policy.log_for("https://log.example.org") is first
    assert policy.log_for("https://log.example.org/") is first
    assert policy.log_for("log.example.org") is first
    assert policy.log_for("https://example.net/transparency") is second
    assert policy.log_for("example.net/transparency") is second
    assert policy.log_for("log.example.net") is None  # the key name is not its origin
    assert policy.log_for("https://other.example") is None


def test_threshold_defaults_to_one_and_witness_keys_may_be_ed25519() -> None:
    policy = parse_policy(
        MINIMAL
        + f'[witnesses]\nkeys = ["{W1}", "{ALICE}"]\nquorum = 0\n'
        + f'[project.foo]\nsigners = ["{ALICE}", "{BOB}"]\n'
    )
    assert policy.projects["foo"] == SignerRule(frozenset({ALICE, BOB}), 1)
    assert policy.witnesses.quorum == 0
    assert [v.vkey for v in policy.witnesses.verifiers] == [W1, ALICE]


# ---------------------------------------------------------------------------
# Decisions


def rule_policy(rule: SignerRule, default: SignerRule | None = None) -> Policy:
    return Policy(
        (LogTrust("https://l.example", Verifier.from_vkey(LOG), "l"),),
        default=default,
        projects={"requests": rule},
    )


TWO_OF_THREE = SignerRule(frozenset({ALICE, BOB, CAROL}), 2)


@pytest.mark.parametrize(
    ("signers", "ok", "trusted", "untrusted"),
    [
        ([ALICE, BOB], True, (ALICE, BOB), ()),
        ([CAROL, ALICE, BOB], True, (ALICE, BOB, CAROL), ()),
        ([BOB, DAVE, CAROL], True, (BOB, CAROL), (DAVE,)),
        ([ALICE], False, (ALICE,), ()),
        ([ALICE, ALICE, ALICE], False, (ALICE,), ()),  # one signer counts once
        ([ALICE, DAVE], False, (ALICE,), (DAVE,)),  # an untrusted signer never counts
        ([ALICE, MALLORY_AS_ALICE], False, (ALICE,), (MALLORY_AS_ALICE,)),  # same name
        ([DAVE], False, (), (DAVE,)),
        ([], False, (), ()),
    ],
)
def test_two_of_three(
    signers: list[str], ok: bool, trusted: tuple[str, ...], untrusted: tuple[str, ...]
) -> None:
    decision = rule_policy(TWO_OF_THREE).evaluate("Requests", iter(signers))
    assert (decision.ok, decision.trusted, decision.untrusted) == (ok, trusted, untrusted)


def test_decision_reasons() -> None:
    policy = rule_policy(TWO_OF_THREE)
    assert policy.evaluate("requests", [ALICE, DAVE]) == Decision(
        False, f"2 of 3 required signers, got 1: {ALICE}", (ALICE,), (DAVE,)
    )
    assert policy.evaluate("requests", [DAVE, MALLORY_AS_ALICE]).reason == (
        f"not signed by any trusted signer (signed only by: {MALLORY_AS_ALICE}, {DAVE})"
    )
    assert policy.evaluate("requests", []).reason == (
        "not signed by any trusted signer (no signer has logged this hash)"
    )
    assert policy.evaluate("requests", [BOB, ALICE]).reason == (
        f"signed by 2 of 3 trusted signers (threshold 2): {ALICE}, {BOB}"
    )
    assert policy.evaluate("Other_Project", [ALICE]) == Decision(
        False, "no policy for project other-project and no [default]", (), (ALICE,)
    )


def test_default_rule_applies_to_unlisted_projects(policy: Policy) -> None:
    assert policy.evaluate("flask", [ALICE]).ok
    decision = policy.evaluate("flask", [BOB])
    assert not decision.ok
    assert decision.untrusted == (BOB,)
    # A listed project does not fall back to the default.
    assert not policy.evaluate("requests", [ALICE]).ok


def test_any_signer(policy: Policy) -> None:
    decision = policy.evaluate("SampleProject", [DAVE, DAVE])
    assert decision.ok
    assert decision.untrusted == (DAVE,)
    assert "proves publication, not authorship" in decision.reason
    assert "1 signer" in decision.reason
    assert policy.evaluate("sampleproject", []) == Decision(
        False, "no signer has logged this hash", (), ()
    )
    listed = rule_policy(SignerRule(frozenset({ALICE}), 1, any_signer=True))
    assert listed.evaluate("requests", [ALICE, BOB]) == Decision(
        True,
        "logged by 2 signer(s) and any-signer is set (this proves publication, not authorship)",
        (ALICE,),
        (BOB,),
    )


# ---------------------------------------------------------------------------
# Errors, each at its line

LOG_TABLE = f'[[log]]\nurl = "https://log.example.org"\nkey = "{LOG}"\n'


def policy_text(*parts: str) -> str:
    return "\n".join(parts)


CASES: list[tuple[str, str]] = [
    # TOML syntax: tomllib's line
    ("version = 1\n" + LOG_TABLE + "[default]\nsigners = [  # <-\n", "invalid TOML: Invalid value"),
    ("version = 1\n" + LOG_TABLE + "[default]\nthreshold = = 1  # <-\nx = 1\n", "(column 13)"),
    ("version = 1\n" + LOG_TABLE + "threshold = 1\nthreshold = 2  # <-\n", "invalid TOML"),
    # version
    (LOG_TABLE, "missing version = 1"),
    ("version = 2  # <-\n" + LOG_TABLE, "version: unsupported policy version 2 (want 1)"),
    ("version = true  # <-\n" + LOG_TABLE, "version: must be an integer, not True"),
    ('version = "1"  # <-\n' + LOG_TABLE, "version: must be an integer, not '1'"),
    # unknown keys and tables
    (MINIMAL + "[defaults]  # <-\nsigners = []\n", "defaults: unknown key (expected one of: "),
    ("verison = 1  # <-\n" + LOG_TABLE, "verison: unknown key"),
    (
        MINIMAL + 'extra = "x"  # <-\n',
        "log[0].extra: unknown key (expected one of: url, key, origin, observer)",
    ),
    # logs
    ("version = 1\n", "no [[log]] table: a policy must trust at least one log"),
    ("version = 1\nlog = []\n", "no [[log]] table"),
    ('version = 1\nlog = "https://log.example.org"  # <-\n', "log: must be an array of tables"),
    ("version = 1\nlog = [1]  # <-\n", "log[0]: must be a table, not 1"),
    (f'version = 1\n[[log]]  # <-\nkey = "{LOG}"\n', "log[0]: missing url"),
    ('version = 1\n[[log]]  # <-\nurl = "https://l.example"\n', "log[0]: missing key"),
    (
        f'version = 1\n[[log]]\nurl = "ftp://log.example.org"  # <-\nkey = "{LOG}"\n',
        "log[0].url: 'ftp://log.example.org' is not an http(s) URL",
    ),
    (f'version = 1\n[[log]]\nurl = "https://"  # <-\nkey = "{LOG}"\n', "is not an http(s) URL"),
    (f'version = 1\n[[log]]\nurl = "http://[::1"  # <-\nkey = "{LOG}"\n', "not an http(s) URL"),
    (f'version = 1\n[[log]]\nurl = "https://a b"  # <-\nkey = "{LOG}"\n', "not an http(s) URL"),
    (f'version = 1\n[[log]]\nurl = 443  # <-\nkey = "{LOG}"\n', "log[0].url: must be a string"),
    (
        'version = 1\n[[log]]\nurl = "https://l.example"\nkey = "log+abcd+AAAA"  # <-\n',
        "log[0].key: 'log+abcd+AAAA' is not a verifier key: verifier key ID 'abcd' is not",
    ),
    (
        f'version = 1\n[[log]]\nurl = "https://l.example"\nkey = "{W1}"  # <-\n',
        f"log[0].key: '{W1}' is a type 0x04 key; a log needs type 0x01",
    ),
    (MINIMAL + 'origin = ""  # <-\n', "log[0].origin: must be a non-empty line of text"),
    (MINIMAL + 'origin = "a\\nb"  # <-\n', "log[0].origin: must be a non-empty line"),
    (
        MINIMAL + f'[[log]]\nurl = "https://other.example"\nkey = "{LOG}"  # <-\n',
        "log[1].key: this log key is listed twice",
    ),
    (
        MINIMAL + f'[[log]]\nurl = "https://log.example.org/"  # <-\nkey = "{LOG2}"\n',
        "log[1].url: this log URL is listed twice",
    ),
    (
        MINIMAL
        + f'[[log]]  # <-\nurl = "https://o.example"\nkey = "{LOG2}"\norigin = "log.example.org"\n',
        "log[1]: origin 'log.example.org' is listed twice",
    ),
    # witnesses
    ("version = 1\nwitnesses = 2  # <-\n" + LOG_TABLE, "witnesses: must be a table, not 2"),
    (MINIMAL + f'[witnesses]  # <-\nkeys = ["{W1}"]\n', "witnesses: missing quorum"),
    (
        MINIMAL + f'[witnesses]\nkeys = ["{W1}"]\nquorum = 2  # <-\n',
        "witnesses.quorum: must be between 0 and 1 (the number of keys)",
    ),
    (MINIMAL + "[witnesses]\nquorum = -1  # <-\n", "witnesses.quorum: must be between 0 and 0"),
    (
        MINIMAL + f'[witnesses]\nquorum = 1\nkeys = [\n  "{W1}",\n  "{W1}",  # <-\n]\n',
        "witnesses.keys[1]: this witness key is listed twice",
    ),
    (
        MINIMAL + '[witnesses]\nquorum = 0\nkeys = ["nope"]  # <-\n',
        "witnesses.keys[0]: 'nope' is not a verifier key",
    ),
    (MINIMAL + '[witnesses]\nquorum = 0\nkeys = "x"  # <-\n', "witnesses.keys: must be an array"),
    (
        MINIMAL + "[witnesses]\nquorum = 0\nkeys = [1]  # <-\n",
        "witnesses.keys[0]: must be a string",
    ),
    (MINIMAL + "[witnesses]\nquorum = 0\nmin = 1  # <-\n", "witnesses.min: unknown key"),
    # signer rules
    (MINIMAL + "[default]  # <-\nthreshold = 1\n", "default: lists no signers (list some, or set"),
    (MINIMAL + "[default]  # <-\nsigners = []\n", "default: lists no signers"),
    ('version = 1\ndefault = "alice"  # <-\n' + LOG_TABLE, "default: must be a table, not 'alice'"),
    (
        MINIMAL + f'[default]\nsigners = ["{ALICE}"]\nthreshold = 0  # <-\n',
        "default.threshold: must be at least 1",
    ),
    (
        MINIMAL + f'[default]\nsigners = ["{ALICE}"]\nthreshold = 2  # <-\n',
        "default.threshold: 2 is more than the 1 listed signer(s)",
    ),
    (
        MINIMAL + f'[default]\nsigners = ["{ALICE}"]\nthreshold = true  # <-\n',
        "default.threshold: must be an integer, not True",
    ),
    (
        MINIMAL + f'[default]\nsigners = ["{ALICE}"]\nthreshold = 1.0  # <-\n',
        "default.threshold: must be an integer, not 1.0",
    ),
    (
        MINIMAL + f'[default]\nsigners = ["{ALICE}"]\nany-signer = "yes"  # <-\n',
        "default.any-signer: must be true or false, not 'yes'",
    ),
    (
        MINIMAL + f'[default]\nsigners = ["{ALICE}"]\nany_signer = true  # <-\n',
        "default.any_signer: unknown key (expected one of: signers, threshold, any-signer, "
        "observers, observer-threshold, require)",
    ),
    (
        MINIMAL + f'[default]\nsigners = "{ALICE}"  # <-\n',
        "default.signers: must be an array of strings",
    ),
    (
        MINIMAL + f'[default]\nsigners = ["{W1}"]  # <-\n',
        f"default.signers[0]: '{W1}' is a type 0x04 key; a release signer needs type 0x01",
    ),
    (
        MINIMAL
        + f'[project."requests"]\nsigners = [\n  "{ALICE}",\n  "{BOB}",\n'
        + f'  "{ALICE[:-2]}",  # <-\n]\n',
        "project.requests.signers[2]: '" + ALICE[:-2] + "' is not a verifier key",
    ),
    (
        MINIMAL + f'[project.requests]\nsigners = [\n  "{ALICE}",\n  "{ALICE}",  # <-\n]\n',
        "project.requests.signers[1]: this signer is listed twice",
    ),
    (
        MINIMAL + f'[project."My.Project"]\nsigners = ["{ALICE}"]\nthreshold = 3  # <-\n',
        'project."My.Project".threshold: 3 is more than the 1 listed signer(s)',
    ),
    # projects
    (
        MINIMAL + f'[project."-bad-"]  # <-\nsigners = ["{ALICE}"]\n',
        "project.-bad-: is not a valid project name",
    ),
    (
        MINIMAL
        + f'[project.Foo_Bar]\nsigners = ["{ALICE}"]\n'
        + f'[project."foo.bar"]  # <-\nsigners = ["{BOB}"]\n',
        'project."foo.bar": names the same project as [project.Foo_Bar] (foo-bar)',
    ),
    ("version = 1\nproject = 3  # <-\n" + LOG_TABLE, 'project: must hold tables [project."NAME"]'),
    (MINIMAL + "[project]\nrequests = 3  # <-\n", "project.requests: must be a table, not 3"),
    (
        MINIMAL + f'[project]\nsigners = ["{ALICE}"]  # <-\n',
        "project.signers: must be a table, not [",
    ),
    (
        f'version = 1\nproject.requests = {{ signers = ["{ALICE}"], threshold = 2 }}  # <-\n'
        + LOG_TABLE,
        "project.requests.threshold: 2 is more than the 1 listed signer(s)",
    ),
    (
        MINIMAL + f'[project.requests]\nsigners = ["{ALICE}"]\n[project.requests.extra]  # <-\n',
        "project.requests.extra: unknown key",
    ),
]


@pytest.mark.parametrize(("text", "message"), CASES)
def test_policy_errors(text: str, message: str) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.toml")
    error = str(info.value)
    line = marked_line(text) if "# <-" in text else 1
    assert error.startswith(f"policy.toml:{line}: "), error
    assert message in error, error
    assert isinstance(info.value, ConfigError)


def test_load_policy_errors(tmp_path: Path) -> None:
    missing = tmp_path / "policy.toml"
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert str(info.value) == f"{missing}: trust policy file does not exist"
    with pytest.raises(PolicyError, match="cannot read the trust policy"):
        load_policy(tmp_path)
    missing.write_bytes(MINIMAL.encode() + b"# \xff\n")
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert str(info.value).startswith(f"{missing}:5: not valid UTF-8")
    missing.write_text(MINIMAL + "[default]\nthreshold = 2\n")
    with pytest.raises(PolicyError) as info:
        load_policy(missing)
    assert str(info.value).startswith(f"{missing}:5: default: lists no signers")


# ---------------------------------------------------------------------------
# Writing and pinning


def test_round_trip_fixture(policy: Policy) -> None:
    text = dump_policy(policy)
    again = parse_policy(text)
    assert again == policy
    assert again.source == "<memory>"  # not compared
    assert dump_policy(again) == text
    assert "origin" not in text.split("[[log]]")[1]  # the default origin is left out
    assert 'origin = "example.net/transparency"' in text
    assert text.index("[project.requests]") < text.index("[project.sampleproject]")


def test_dump_orders_signers_and_projects() -> None:
    a = Policy(
        (LogTrust("https://l.example", Verifier.from_vkey(LOG), "l"),),
        projects={
            "zeta": SignerRule(frozenset({CAROL, ALICE}), 2),
            "alpha": SignerRule(frozenset({BOB}), 1),
        },
    )
    b = Policy(
        a.logs,
        projects={"alpha": SignerRule(frozenset({BOB}), 1), **a.projects},
        source="other.toml",
    )
    assert a == b
    assert dump_policy(a) == dump_policy(b)
    text = dump_policy(a)
    assert text.index("[project.alpha]") < text.index("[project.zeta]")
    assert text.index(ALICE) < text.index(CAROL)


KEY_POOL = [key(f"k{i}.example", 20 + i) for i in range(6)]
WITNESS_POOL = [key(f"w{i}.example", 40 + i, ALG_COSIGNATURE_V1) for i in range(3)]


@st.composite
def rules(draw: st.DrawFn) -> SignerRule:
    signers = draw(st.frozensets(st.sampled_from(KEY_POOL), max_size=4))
    any_signer = draw(st.booleans()) if signers else True
    top = max(1, len(signers)) if not any_signer else 5
    return SignerRule(signers, draw(st.integers(1, top)), any_signer)


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    count = draw(st.integers(1, 3))
    logs = tuple(
        LogTrust(
            f"https://log{i}.example/{draw(st.sampled_from(['', 'x/', 'a b']))}".replace(
                " ", "%20"
            ),
            Verifier.from_vkey(key(f"log{i}.example", 60 + i)),
            draw(st.sampled_from([f"log{i}.example", f"origin {i} ünïcode"])),
        )
        for i in range(count)
    )
    witnesses = draw(st.lists(st.sampled_from(WITNESS_POOL), unique=True))
    names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(
        lambda n: "--" not in n
    )
    return Policy(
        logs,
        WitnessPolicy(
            tuple(Verifier.from_vkey(w) for w in witnesses),
            draw(st.integers(0, len(witnesses))),
        ),
        draw(st.none() | rules()),
        draw(st.dictionaries(names, rules(), max_size=4)),
    )


@settings(max_examples=100, deadline=None)
@given(policies())
def test_round_trip_property(policy: Policy) -> None:
    text = dump_policy(policy)
    assert parse_policy(text) == policy
    assert dump_policy(parse_policy(text)) == text


def test_pin_projects_adds_log_and_rules(policy: Policy) -> None:
    new_log = LogTrust("https://new.example", Verifier.from_vkey(key("new.example", 5)), "new")
    pinned = pin_projects(policy, new_log, {"Flask": [BOB, CAROL], "requests": [DAVE]})
    assert pinned.logs == (*policy.logs, new_log)
    assert pinned.projects["flask"] == SignerRule(frozenset({BOB, CAROL}), 1)
    # Merged with the existing signers; the existing threshold is kept.
    assert pinned.projects["requests"] == SignerRule(frozenset({ALICE, BOB, CAROL, DAVE}), 2)
    assert pinned.projects["sampleproject"] == policy.projects["sampleproject"]
    assert pinned.default == policy.default
    assert pinned.witnesses == policy.witnesses
    assert pinned.source == policy.source
    # The input is unchanged, and the result is a valid policy.
    assert "flask" not in policy.projects
    assert parse_policy(dump_policy(pinned)) == pinned


def test_pin_projects_replaces_log_with_same_key(policy: Policy) -> None:
    moved = LogTrust("https://moved.example", Verifier.from_vkey(LOG), "log.example.org")
    pinned = pin_projects(policy, moved, {})
    assert pinned.logs == (moved, policy.logs[1])
    assert pinned.projects == policy.projects


def test_pin_projects_thresholds(policy: Policy) -> None:
    log = policy.logs[0]
    assert pin_projects(policy, log, {"requests": []}, threshold=3).projects[
        "requests"
    ] == SignerRule(frozenset({ALICE, BOB, CAROL}), 3)
    assert pin_projects(policy, log, {"new": [ALICE, BOB]}, threshold=2).projects[
        "new"
    ] == SignerRule(frozenset({ALICE, BOB}), 2)
    # any-signer rules keep their flag and accept any threshold of at least 1.
    assert pin_projects(policy, log, {"SampleProject": [DAVE]}).projects[
        "sampleproject"
    ] == SignerRule(frozenset({DAVE}), 1, any_signer=True)


@pytest.mark.parametrize(
    ("pins", "threshold", "message"),
    [
        ({"new": [ALICE]}, 2, "project new: threshold 2 is not between 1 and 1"),
        ({"new": [ALICE]}, 0, "project new: threshold 0 is not between 1 and 1"),
        ({"new": []}, None, "project new: no signers to pin"),
        ({"new": ["garbage"]}, None, "project new: 'garbage' is not a verifier key"),
        ({"new": [W1]}, None, "is not an Ed25519 (0x01) key"),
        ({"-x-": [ALICE]}, None, "'-x-' is not a valid project name"),
    ],
)
def test_pin_projects_errors(
    policy: Policy, pins: dict[str, list[str]], threshold: int | None, message: str
) -> None:
    with pytest.raises(PolicyError) as info:
        pin_projects(policy, policy.logs[0], pins, threshold)
    assert str(info.value).startswith(f"{policy.source}: ")
    assert message in str(info.value)


def test_pin_projects_refuses_to_rekey_a_log(policy: Policy) -> None:
    other_key = Verifier.from_vkey(key("log.example.org", 77))
    for log in (
        LogTrust("https://log.example.org/", other_key, "fresh-origin"),
        LogTrust("https://fresh.example", other_key, "log.example.org"),
    ):
        with pytest.raises(PolicyError, match="is trusted with another key"):
            pin_projects(policy, log, {})
    cosigner = Verifier.from_vkey(W1)
    with pytest.raises(PolicyError, match="is not an Ed25519"):
        pin_projects(policy, LogTrust("https://w.example", cosigner, "w"), {})


# ---------------------------------------------------------------------------
# Locations


def test_default_paths_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SIGLEDGER_POLICY", str(tmp_path / "p.toml"))
    monkeypatch.setenv("SIGLEDGER_STATE_DIR", str(tmp_path / "state"))
    assert default_policy_path() == tmp_path / "p.toml"
    assert default_state_dir() == tmp_path / "state"
    monkeypatch.setenv("SIGLEDGER_POLICY", "~/p.toml")
    assert default_policy_path() == Path.home() / "p.toml"


def test_default_paths_from_platformdirs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SIGLEDGER_POLICY", raising=False)
    monkeypatch.setenv("SIGLEDGER_STATE_DIR", "")  # empty means unset
    assert default_policy_path() == Path(platformdirs.user_config_dir("sigledger")) / "policy.toml"
    assert default_state_dir() == Path(platformdirs.user_state_dir("sigledger"))


# ---------------------------------------------------------------------------
# Arbitrary input

POLICY_KEYS = st.sampled_from(
    [
        "version",
        "log",
        "url",
        "key",
        "origin",
        "witnesses",
        "keys",
        "quorum",
        "default",
        "project",
        "signers",
        "threshold",
        "any-signer",
        "requests",
        "Foo_Bar",
        "foo-bar",
        "",
    ]
)
POLICY_SCALARS = st.one_of(
    st.sampled_from([1, 0, 2, -1, True, "https://l.example", LOG, W1, ALICE, BOB, "x+1+A"]),
    st.text(max_size=5),
    st.integers(),
    st.floats(allow_nan=False),
)
POLICY_VALUES = st.recursive(
    POLICY_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(POLICY_KEYS, inner, max_size=4),
    max_leaves=15,
)


@st.composite
def mutated_fixture(draw: st.DrawFn) -> str:
    """The fixture policy with a few keys or values replaced, removed or added."""
    doc: Any = tomllib.loads((DATA / "policy.toml").read_text())
    for _ in range(draw(st.integers(1, 3))):
        node = doc
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                break
            k = draw(st.sampled_from(keys))
            if isinstance(node[k], dict | list) and node[k] and draw(st.booleans()):
                node = node[k]
                continue
            action = draw(st.sampled_from(["replace", "delete", "add"]))
            if action == "replace":
                node[k] = draw(POLICY_VALUES)
            elif action == "delete":
                del node[k]
            elif isinstance(node, dict):
                node[draw(POLICY_KEYS)] = draw(POLICY_VALUES)
            else:
                node.append(draw(POLICY_VALUES))
            break
    return tomli_w.dumps(doc)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.text(max_size=200),
        st.dictionaries(POLICY_KEYS, POLICY_VALUES, max_size=5).map(tomli_w.dumps),
        mutated_fixture(),
    )
)
def test_parse_policy_raises_only_policy_error(text: str) -> None:
    try:
        policy = parse_policy(text, "p.toml")
    except PolicyError as exc:
        policy, error = None, str(exc)
    else:
        error = "p.toml:1: "
    assert error.startswith("p.toml:")
    line = error.split(":")[1]
    assert line.isdigit() and 1 <= int(line) <= text.count("\n") + 1
    if policy is not None:
        assert parse_policy(dump_policy(policy)) == policy


def test_policy_dataclasses_are_frozen(policy: Policy) -> None:
    with pytest.raises(AttributeError):
        policy.default = None  # type: ignore[misc]
    decision: Any = policy.evaluate("requests", [])
    with pytest.raises(AttributeError):
        decision.ok = True


# ---------------------------------------------------------------------------
# Observers

MIRROR = key("mirror.example/observer", 20)
LOGOBS = key("log.example.org/observer", 21)


def test_observer_rules_parse_and_round_trip() -> None:
    text = (
        MINIMAL
        + f'observer = "{LOGOBS}"\n'
        + f'[default]\nobservers = ["{LOGOBS}"]\n'
        + f'[project.both]\nsigners = ["{ALICE}"]\nobservers = ["{LOGOBS}", "{MIRROR}"]\n'
        + 'observer-threshold = 2\nrequire = "both"\n'
        + f'[project.either]\nsigners = ["{ALICE}"]\nobservers = ["{MIRROR}"]\n'
    )
    policy = parse_policy(text)
    assert policy.logs[0].observer == Verifier.from_vkey(LOGOBS)
    assert policy.default == SignerRule(frozenset(), 1, observers=frozenset({LOGOBS}))
    assert policy.default.mode == "observers"
    both = policy.projects["both"]
    assert both.mode == "both" and both.observer_threshold == 2
    assert policy.projects["either"].mode == "either"
    assert parse_policy(dump_policy(policy)) == policy


def test_signer_only_rules_keep_their_meaning() -> None:
    # A policy written before observers existed: signers only, observations never count.
    policy = parse_policy(MINIMAL + f'[default]\nsigners = ["{ALICE}"]\n')
    assert policy.default is not None and policy.default.mode == "signers"
    assert not policy.evaluate("x", [], [ALICE]).ok
    assert policy.evaluate("x", [ALICE]).ok


def test_evaluate_observers() -> None:
    policy = parse_policy(
        MINIMAL
        + f'[default]\nobservers = ["{LOGOBS}"]\n'
        + f'[project.both]\nsigners = ["{ALICE}"]\nobservers = ["{LOGOBS}", "{MIRROR}"]\n'
        + 'observer-threshold = 2\nrequire = "both"\n'
        + f'[project.either]\nsigners = ["{ALICE}"]\nobservers = ["{MIRROR}"]\n'
    )
    ok = policy.evaluate("anything", [], [LOGOBS])
    assert ok.ok and ok.observers == (LOGOBS,)
    assert ok.reason.startswith("observed by 1 of 1 trusted observers")
    # A signature by someone is not an observation by the log.
    no = policy.evaluate("anything", [ALICE], [MIRROR])
    assert not no.ok and f"observed only by: {MIRROR}" in no.reason
    # both: n of m signers and k of n observers
    assert not policy.evaluate("both", [ALICE], [LOGOBS]).ok
    assert not policy.evaluate("both", [], [LOGOBS, MIRROR]).ok
    assert policy.evaluate("both", [ALICE], [LOGOBS, MIRROR]).ok
    # either
    assert policy.evaluate("either", [ALICE], []).ok
    assert policy.evaluate("either", [], [MIRROR]).ok
    failed = policy.evaluate("either", [BOB], [LOGOBS])
    assert not failed.ok and "the policy accepts either" in failed.reason


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ('require = "observers"\nsigners = ["{a}"]  # <-\n', "lists no observers but require"),
        ('observers = ["{o}"]\nrequire = "both"  # <-\n', "lists no signers"),
        ('observers = ["{o}"]\nrequire = "all"  # <-\n', "is not one of signers"),
        ('observers = ["{o}"]\nobserver-threshold = 2  # <-\n', "more than the 1 listed"),
        ('observers = ["{o}", "{o}"]  # <-\n', "this observer is listed twice"),
    ],
)
def test_observer_rule_errors(rule: str, message: str) -> None:
    text = MINIMAL + "[default]\n" + rule.format(a=ALICE, o=MIRROR)
    with pytest.raises(PolicyError) as info:
        parse_policy(text, "policy.toml")
    assert message in str(info.value), info.value


def test_pin_records_observers_and_the_logs_own_observation_as_default() -> None:
    empty = Policy(logs=(), source="p.toml")
    trust = LogTrust(
        "https://log.example.org",
        Verifier.from_vkey(LOG),
        "log.example.org",
        Verifier.from_vkey(LOGOBS),
    )
    pinned = pin_projects(empty, trust, {"demo": [ALICE]}, None, {"demo": [MIRROR], "x": [LOGOBS]})
    assert pinned.logs == (trust,)
    assert pinned.default == SignerRule(frozenset(), 1, observers=frozenset({LOGOBS}))
    assert pinned.projects["demo"] == SignerRule(
        frozenset({ALICE}), 1, observers=frozenset({MIRROR})
    )
    assert pinned.projects["x"].mode == "observers"
    again = parse_policy(dump_policy(pinned))
    assert again == pinned
    # A policy with its own [default] keeps it; a later pin without the observer keeps it.
    own = Policy((trust,), default=SignerRule(frozenset({ALICE}), 1))
    plain = LogTrust("https://log.example.org", Verifier.from_vkey(LOG), "log.example.org")
    kept = pin_projects(own, plain, {"demo": [BOB]})
    assert kept.default == own.default and kept.logs[0].observer == Verifier.from_vkey(LOGOBS)
