"""Tests for sigledger.ledger.merkle: published vectors, exhaustive small trees, properties."""

from __future__ import annotations

import ast
import base64
import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sigledger.ledger import merkle
from sigledger.ledger.errors import VerificationError
from sigledger.ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    check_consistency,
    check_inclusion,
    consistency_nodes,
    consistency_proof_length,
    fold_nodes,
    inclusion_nodes,
    inclusion_proof_length,
    largest_power_of_two_below,
    leaf_hash,
    node_hash,
    prove_consistency,
    prove_inclusion,
    root_from,
    subtree_nodes,
    tree_hash,
    tree_nodes,
)
from tests.memtree import MemoryTree

VECTORS = json.loads((Path(__file__).parent / "vectors" / "merkle.json").read_text())
UINT64_MAX = (1 << 64) - 1


def b64(s: str) -> bytes:
    return base64.b64decode(s, validate=True)


def flip(h: bytes, bit: int) -> bytes:
    """``h`` with one bit inverted (bit 0 = least significant bit of the last byte)."""
    return (int.from_bytes(h, "big") ^ (1 << bit)).to_bytes(len(h), "big")


# --- an independent reference: RFC 6962 §2.1 recursion, written naively -----


def ref_k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def decimal_entry(i: int) -> bytes:
    return str(i).encode("ascii")


MAX_EXHAUSTIVE = 130
DECIMAL_LEAVES = tuple(ref_leaf(decimal_entry(i)) for i in range(2048))


@functools.cache
def ref_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over the decimal tree, straight from RFC 6962 §2.1."""
    n = hi - lo
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return DECIMAL_LEAVES[lo]
    k = ref_k(n)
    return ref_node(ref_mth(lo, lo + k), ref_mth(lo + k, hi))


def ref_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]), RFC 6962 §2.1.1 (m relative to lo)."""
    n = hi - lo
    if n == 1:
        return []
    k = ref_k(n)
    if m < k:
        return [*ref_path(m, lo, lo + k), ref_mth(lo + k, hi)]
    return [*ref_path(m - k, lo + k, hi), ref_mth(lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b), RFC 6962 §2.1.2."""
    n = hi - lo
    if m == n:
        return [] if b else [ref_mth(lo, hi)]
    k = ref_k(n)
    if m <= k:
        return [*ref_subproof(m, lo, lo + k, b), ref_mth(lo + k, hi)]
    return [*ref_subproof(m - k, lo + k, hi, False), ref_mth(lo, lo + k)]


def ref_proof(m: int, n: int) -> list[bytes]:
    if m in (0, n):
        return []
    return ref_subproof(m, 0, n, True)


@pytest.fixture(scope="module")
def decimal_tree() -> MemoryTree:
    return MemoryTree(DECIMAL_LEAVES)


def recording(get_node: Callable[[int, int], bytes]) -> tuple[list[tuple[int, int]], Any]:
    calls: list[tuple[int, int]] = []

    def wrapped(level: int, index: int) -> bytes:
        calls.append((level, index))
        return get_node(level, index)

    return calls, wrapped


# --- module hygiene --------------------------------------------------------


def test_module_is_pure() -> None:
    tree = ast.parse(Path(merkle.__file__).read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {
        "__future__",
        "hashlib",
        "collections",
        "dataclasses",
        "typing",
        "sigledger",
    }


# --- published vectors -----------------------------------------------------


def test_hasher_vectors() -> None:
    v = VECTORS["hasher"]
    assert bytes.fromhex(v["empty_root"]) == EMPTY_ROOT == tree_hash([])
    for case in v["leaf_hashes"]:
        assert leaf_hash(bytes.fromhex(case["entry_hex"])).hex() == case["hash"]
    for case in v["node_hashes"]:
        left, right = bytes.fromhex(case["left_hex"]), bytes.fromhex(case["right_hex"])
        assert node_hash(left, right).hex() == case["hash"]
    assert HASH_SIZE == 32


def test_reference_tree() -> None:
    v = VECTORS["reference_tree"]
    leaves = [leaf_hash(bytes.fromhex(e)) for e in v["entries_hex"]]
    tree = MemoryTree(leaves)
    for level, row in enumerate(v["levels"]):
        assert [tree.node(level, i).hex() for i in range(len(row))] == row
    for size, root in enumerate(v["roots"]):
        assert tree_hash(leaves[:size]).hex() == root
        assert tree.root(size).hex() == root
        assert root_from(size, tree.node).hex() == root


def reference_tree() -> MemoryTree:
    return MemoryTree(leaf_hash(bytes.fromhex(e)) for e in VECTORS["reference_tree"]["entries_hex"])


INCLUSION = VECTORS["inclusion"]
CONSISTENCY = VECTORS["consistency"]


@pytest.mark.parametrize("case", INCLUSION, ids=[c["source"].split("/", 3)[-1] for c in INCLUSION])
def test_inclusion_vectors(case: dict[str, Any]) -> None:
    leaf, proof, root = b64(case["leafHash"]), [b64(p) for p in case["proof"]], b64(case["root"])
    idx, size = case["leafIdx"], case["treeSize"]
    check_inclusion(idx, size, leaf, proof, root)
    tree = reference_tree()
    if tree.root(size) == root:
        assert tree.node(0, idx) == leaf
        assert tree.prove_inclusion(idx, size) == proof


def inclusion_variants(
    idx: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> list[tuple[str, tuple[int, int, bytes, list[bytes], bytes]]]:
    """The corruptions in transparency-dev/merkle testdata/inclusion/<k>/, plus a few more."""
    garbage = hashlib.sha256(b"garbage").digest()
    out: list[tuple[str, tuple[int, int, bytes, list[bytes], bytes]]] = [
        ("wrong-leaf", (idx, size, ref_leaf(b"WRONG"), proof, root)),
        ("leafIdx-+-1", (idx + 1, size, leaf, proof, root)),
        ("leafIdx---1", (idx - 1, size, leaf, proof, root)),
        ("leafIdx-^-2", (idx ^ 2, size, leaf, proof, root)),
        ("treeSize-*-2", (idx, size * 2, leaf, proof, root)),
        ("treeSize-div-2", (idx, size // 2, leaf, proof, root)),
        ("preceding-garbage", (idx, size, leaf, [garbage, *proof], root)),
        ("trailing-garbage", (idx, size, leaf, [*proof, garbage], root)),
        ("preceding-root", (idx, size, leaf, [root, *proof], root)),
        ("trailing-root", (idx, size, leaf, [*proof, root], root)),
        ("empty-root", (idx, size, leaf, proof, b"")),
        ("empty-tree-root", (idx, size, leaf, proof, EMPTY_ROOT)),
        ("random-root", (idx, size, leaf, proof, hashlib.sha256(b"random").digest())),
        ("swapped leaf and root", (idx, size, root, proof, leaf)),
        ("short root", (idx, size, leaf, proof, root[:-1])),
        ("long leaf", (idx, size, leaf + b"\x00", proof, root)),
    ]
    for i in range(len(proof)):
        out.append((f"modified-proof[{i}]-bit-3", (idx, size, leaf, _replace(proof, i, 3), root)))
        out.append((f"removed-component[{i}]", (idx, size, leaf, proof[:i] + proof[i + 1 :], root)))
        out.append((f"truncated-hash[{i}]", (idx, size, leaf, _truncate(proof, i), root)))
    for i in range(len(proof) + 1):
        out.append(
            (f"inserted-component@{i}", (idx, size, leaf, [*proof[:i], garbage, *proof[i:]], root))
        )
    original = (idx, size, leaf, proof, root)
    return [(name, args) for name, args in out if args != original]


def _replace(proof: list[bytes], i: int, bit: int) -> list[bytes]:
    return [flip(p, bit) if j == i else p for j, p in enumerate(proof)]


def _truncate(proof: list[bytes], i: int) -> list[bytes]:
    return [p[:-1] if j == i else p for j, p in enumerate(proof)]


@pytest.mark.parametrize("case", INCLUSION, ids=[c["source"].split("/", 3)[-1] for c in INCLUSION])
def test_inclusion_vector_negatives(case: dict[str, Any]) -> None:
    leaf, proof, root = b64(case["leafHash"]), [b64(p) for p in case["proof"]], b64(case["root"])
    variants = inclusion_variants(case["leafIdx"], case["treeSize"], leaf, proof, root)
    assert len(variants) >= 10
    for name, args in variants:
        with pytest.raises(VerificationError):
            check_inclusion(*args)
            pytest.fail(f"variant {name!r} was accepted")


@pytest.mark.parametrize(
    "case", CONSISTENCY, ids=[c["source"].split("/", 3)[-1] for c in CONSISTENCY]
)
def test_consistency_vectors(case: dict[str, Any]) -> None:
    m, n = case["size1"], case["size2"]
    r1, r2, proof = b64(case["root1"]), b64(case["root2"]), [b64(p) for p in case["proof"]]
    check_consistency(m, n, r1, r2, proof)
    tree = reference_tree()
    assert tree.root(m) == r1
    assert tree.root(n) == r2
    assert tree.prove_consistency(m, n) == proof


def consistency_variants(
    m: int, n: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]]:
    """The corruptions in transparency-dev/merkle testdata/consistency/<k>/, plus a few more."""
    garbage = hashlib.sha256(b"garbage").digest()
    out: list[tuple[str, tuple[int, int, bytes, bytes, list[bytes]]]] = [
        ("size1-+-1", (m + 1, n, r1, r2, proof)),
        ("size1---1", (m - 1, n, r1, r2, proof)),
        ("size1-^-2", (m ^ 2, n, r1, r2, proof)),
        ("size2-*-2", (m, n * 2, r1, r2, proof)),
        ("size2-div-2", (m, n // 2, r1, r2, proof)),
        ("swapped-roots", (m, n, r2, r1, proof)),
        ("wrong-root1", (m, n, flip(r1, 4), r2, proof)),
        ("wrong-root2", (m, n, r1, flip(r2, 4), proof)),
        ("empty-proof", (m, n, r1, r2, [])),
        ("truncated-proof", (m, n, r1, r2, proof[:-1])),
        ("preceding-garbage", (m, n, r1, r2, [garbage, *proof])),
        ("trailing-garbage", (m, n, r1, r2, [*proof, garbage])),
        ("preceding-proof[0]", (m, n, r1, r2, proof[:1] + proof)),
        ("preceding-root1", (m, n, r1, r2, [r1, *proof])),
        ("preceding-root2", (m, n, r1, r2, [r2, *proof])),
        ("trailing-root1", (m, n, r1, r2, [*proof, r1])),
        ("trailing-root2", (m, n, r1, r2, [*proof, r2])),
        ("swapped sizes", (n, m, r1, r2, proof)),
        ("empty-tree root1", (m, n, EMPTY_ROOT, r2, proof)),
        ("short root1", (m, n, r1[:31], r2, proof)),
    ]
    for i in range(len(proof)):
        out.append((f"modified-proof[{i}]-bit-4", (m, n, r1, r2, _replace(proof, i, 4))))
        out.append((f"removed-component[{i}]", (m, n, r1, r2, proof[:i] + proof[i + 1 :])))
        out.append((f"truncated-hash[{i}]", (m, n, r1, r2, _truncate(proof, i))))
    for i in range(len(proof) + 1):
        out.append((f"inserted-component@{i}", (m, n, r1, r2, [*proof[:i], garbage, *proof[i:]])))
    original = (m, n, r1, r2, proof)
    return [(name, args) for name, args in out if args != original]


@pytest.mark.parametrize(
    "case", CONSISTENCY, ids=[c["source"].split("/", 3)[-1] for c in CONSISTENCY]
)
def test_consistency_vector_negatives(case: dict[str, Any]) -> None:
    m, n = case["size1"], case["size2"]
    r1, r2, proof = b64(case["root1"]), b64(case["root2"]), [b64(p) for p in case["proof"]]
    for name, args in consistency_variants(m, n, r1, r2, proof):
        with pytest.raises(VerificationError):
            check_consistency(*args)
            pytest.fail(f"variant {name!r} was accepted")


def test_decimal_tree_vectors(decimal_tree: MemoryTree) -> None:
    v = VECTORS["decimal_tree"]
    assert decimal_tree.root(256).hex() == v["root_256"]
    assert leaf_hash(b"256").hex() == v["leaf_hash_256"]
    assert decimal_tree.root(257).hex() == v["root_257"]
    assert node_hash(decimal_tree.root(256), leaf_hash(b"256")).hex() == v["root_257"]
    assert decimal_tree.root(300).hex() == v["root_300"]
    assert tree_hash(DECIMAL_LEAVES[:300]).hex() == v["root_300"]


# --- exhaustive small trees ------------------------------------------------


@pytest.mark.parametrize("n", range(1, MAX_EXHAUSTIVE + 1))
def test_exhaustive_inclusion(n: int, decimal_tree: MemoryTree) -> None:
    root = decimal_tree.root(n)
    assert root == tree_hash(DECIMAL_LEAVES[:n]) == root_from(n, decimal_tree.node)
    assert root == ref_mth(0, n)
    for m in range(n):
        want = ref_path(m, 0, n)
        calls, get_node = recording(decimal_tree.node)
        proof = prove_inclusion(m, n, get_node)
        assert proof == want
        assert decimal_tree.prove_inclusion(m, n) == want
        assert len(proof) == inclusion_proof_length(m, n)
        nodes = inclusion_nodes(m, n)
        assert sorted(nodes) == sorted(set(calls))
        assert len(set(nodes)) == len(nodes)
        check_inclusion(m, n, DECIMAL_LEAVES[m], proof, root)


@given(data=st.data())
def test_prove_inclusions_with_a_memo_shared_across_sizes(
    data: st.DataObject, decimal_tree: MemoryTree
) -> None:
    """One memo of right-edge hashes serves proofs in trees of several sizes: every
    proof is the RFC's, and the nodes asked for are exactly those the memo lacks."""
    memo: dict[tuple[int, int], bytes] = {}
    for _ in range(data.draw(st.integers(1, 6))):
        n = data.draw(st.integers(1, len(DECIMAL_LEAVES)))
        leaves = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5))
        nodes = {node for m in leaves for node in inclusion_nodes(m, n, memo)}
        calls, get_node = recording(decimal_tree.node)
        proofs = merkle.prove_inclusions(leaves, n, get_node, memo)
        assert proofs == [ref_path(m, 0, n) for m in leaves]
        assert set(calls) <= nodes
        for (lo, hi), h in memo.items():
            assert h == ref_mth(lo, hi)


@pytest.mark.parametrize("n", range(1, MAX_EXHAUSTIVE + 1))
def test_exhaustive_consistency(n: int, decimal_tree: MemoryTree) -> None:
    new_root = decimal_tree.root(n)
    for m in range(n + 1):
        want = ref_proof(m, n)
        calls, get_node = recording(decimal_tree.node)
        proof = prove_consistency(m, n, get_node)
        assert proof == want
        assert decimal_tree.prove_consistency(m, n) == want
        assert len(proof) == consistency_proof_length(m, n)
        nodes = consistency_nodes(m, n)
        assert sorted(nodes) == sorted(set(calls))
        assert len(set(nodes)) == len(nodes)
        check_consistency(m, n, ref_mth(0, m), new_root, proof)


def test_size_zero(decimal_tree: MemoryTree) -> None:
    assert MemoryTree().root() == EMPTY_ROOT == root_from(0, decimal_tree.node)
    assert decimal_tree.root(0) == EMPTY_ROOT
    assert tree_nodes(0) == []
    assert fold_nodes([]) == EMPTY_ROOT
    assert prove_consistency(0, 5, decimal_tree.node) == []
    assert consistency_nodes(0, 0) == []


BIT_FLIP_MAX = 40
ALL_BITS_MAX = 12
ALL_BITS = range(256)
# Beyond ALL_BITS_MAX: one bit in every fourth byte, each bit position within
# a byte once, plus the last bit.
SPREAD_BITS = [*(32 * j + j for j in range(8)), 255]


def rejected(check: Callable[..., None], *args: Any) -> bool:
    try:
        check(*args)
    except VerificationError:
        return True
    return False


@pytest.mark.parametrize("n", range(1, BIT_FLIP_MAX + 1))
def test_inclusion_bit_flips_exhaustive(n: int, decimal_tree: MemoryTree) -> None:
    # Every bit of every input for small trees, a spread of bits beyond that.
    bits = ALL_BITS if n <= ALL_BITS_MAX else SPREAD_BITS
    root = decimal_tree.root(n)
    accepted = []
    for m in range(n):
        leaf = DECIMAL_LEAVES[m]
        proof = decimal_tree.prove_inclusion(m, n)
        for bit in bits:
            if not rejected(check_inclusion, m, n, flip(leaf, bit), proof, root):
                accepted.append((m, "leaf", bit))
            if not rejected(check_inclusion, m, n, leaf, proof, flip(root, bit)):
                accepted.append((m, "root", bit))
            for i in range(len(proof)):
                if not rejected(check_inclusion, m, n, leaf, _replace(proof, i, bit), root):
                    accepted.append((m, f"proof[{i}]", bit))
    assert accepted == []


@pytest.mark.parametrize("n", range(1, BIT_FLIP_MAX + 1))
def test_consistency_bit_flips_exhaustive(n: int, decimal_tree: MemoryTree) -> None:
    bits = ALL_BITS if n <= ALL_BITS_MAX else SPREAD_BITS
    new_root = decimal_tree.root(n)
    accepted = []
    for m in range(n + 1):
        old_root = decimal_tree.root(m)
        proof = decimal_tree.prove_consistency(m, n)
        for bit in bits:
            if not rejected(check_consistency, m, n, flip(old_root, bit), new_root, proof):
                accepted.append((m, "old root", bit))
            # Any new root is consistent with the empty tree.
            if m > 0 and not rejected(
                check_consistency, m, n, old_root, flip(new_root, bit), proof
            ):
                accepted.append((m, "new root", bit))
            for i in range(len(proof)):
                if not rejected(
                    check_consistency, m, n, old_root, new_root, _replace(proof, i, bit)
                ):
                    accepted.append((m, f"proof[{i}]", bit))
    assert accepted == []


# --- larger trees, sampled -------------------------------------------------

BIG = len(DECIMAL_LEAVES)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_inclusion_bit_flips_sampled(data: st.DataObject, decimal_tree: MemoryTree) -> None:
    n = data.draw(
        st.integers(ALL_BITS_MAX + 1, 100) | st.integers(BIT_FLIP_MAX + 1, BIG), label="size"
    )
    m = data.draw(st.integers(0, n - 1), label="index")
    proof = decimal_tree.prove_inclusion(m, n)
    assert proof == ref_path(m, 0, n)
    root, leaf = decimal_tree.root(n), DECIMAL_LEAVES[m]
    check_inclusion(m, n, leaf, proof, root)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        leaf = flip(leaf, bit)
    elif target == -1:
        root = flip(root, bit)
    else:
        proof = _replace(proof, target, bit)
    with pytest.raises(VerificationError):
        check_inclusion(m, n, leaf, proof, root)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_consistency_bit_flips_sampled(data: st.DataObject, decimal_tree: MemoryTree) -> None:
    n = data.draw(
        st.integers(ALL_BITS_MAX + 1, 100) | st.integers(BIT_FLIP_MAX + 1, BIG), label="new size"
    )
    m = data.draw(st.integers(1, n - 1), label="old size")
    proof = decimal_tree.prove_consistency(m, n)
    assert proof == ref_proof(m, n)
    assert len(proof) == consistency_proof_length(m, n)
    old_root, new_root = decimal_tree.root(m), decimal_tree.root(n)
    check_consistency(m, n, old_root, new_root, proof)
    target = data.draw(st.integers(-2, len(proof) - 1), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == -2:
        old_root = flip(old_root, bit)
    elif target == -1:
        new_root = flip(new_root, bit)
    else:
        proof = _replace(proof, target, bit)
    with pytest.raises(VerificationError):
        check_consistency(m, n, old_root, new_root, proof)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_proof_for_other_position_rejected(data: st.DataObject, decimal_tree: MemoryTree) -> None:
    # A valid proof must not check out for any other (index, size) of the same
    # log. (Against the *original* root it can: the verifier only sees the
    # left/right pattern, and e.g. index 0 has the same pattern in trees of
    # sizes 3 and 4. That is harmless because a signed tree head binds the
    # size to the root.)
    n = data.draw(st.integers(1, 300))
    m = data.draw(st.integers(0, n - 1))
    proof = decimal_tree.prove_inclusion(m, n)
    n2 = data.draw(st.integers(1, 600))
    m2 = data.draw(st.integers(0, n2 - 1) | st.just(m))
    assume((m2, n2) != (m, n) and m2 < n2)
    with pytest.raises(VerificationError):
        check_inclusion(m2, n2, DECIMAL_LEAVES[m], proof, decimal_tree.root(n2))


# --- edge cases and errors -------------------------------------------------


def test_largest_power_of_two_below() -> None:
    expect = {2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 8: 4, 9: 8, 1 << 63: 1 << 62}
    for n, k in expect.items():
        assert largest_power_of_two_below(n) == k
    for n in range(2, 2000):
        assert largest_power_of_two_below(n) == ref_k(n)
    for bad in (1, 0, -5):
        with pytest.raises(ValueError):
            largest_power_of_two_below(bad)


def test_subtree_nodes() -> None:
    assert tree_nodes(7) == [(2, 0), (1, 2), (0, 6)]
    assert tree_nodes(8) == [(3, 0)]
    assert tree_nodes(13) == [(3, 0), (2, 2), (0, 12)]
    assert subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    assert subtree_nodes(5, 6) == [(0, 5)]
    assert subtree_nodes(3, 3) == []
    for start, end in [(-1, 3), (4, 3), (1, 3), (2, 6), (1, 4), (6, 10)]:
        with pytest.raises(ValueError):
            subtree_nodes(start, end)


@settings(max_examples=300, deadline=None)
@given(start=st.integers(0, 300), width=st.integers(0, 300))
def test_subtree_nodes_fold_is_mth(start: int, width: int, decimal_tree: MemoryTree) -> None:
    end = start + width
    try:
        nodes = subtree_nodes(start, end)
    except ValueError:
        # Only ranges not aligned to their largest power of two are refused.
        assert start % (1 << (width.bit_length() - 1)) != 0
        return
    sizes = [1 << level for level, _ in nodes]
    assert sizes == sorted(set(sizes), reverse=True)
    assert sum(sizes) == width
    assert fold_nodes([decimal_tree.node(*nd) for nd in nodes]) == ref_mth(start, end)


def test_prove_errors(decimal_tree: MemoryTree) -> None:
    for idx, size in [(0, 0), (5, 5), (-1, 5), (6, 5)]:
        with pytest.raises(ValueError):
            prove_inclusion(idx, size, decimal_tree.node)
        with pytest.raises(ValueError):
            inclusion_nodes(idx, size)
        with pytest.raises(ValueError):
            inclusion_proof_length(idx, size)
    for old, new in [(6, 5), (-1, 5), (1, 0)]:
        with pytest.raises(ValueError):
            prove_consistency(old, new, decimal_tree.node)
        with pytest.raises(ValueError):
            consistency_nodes(old, new)
        with pytest.raises(ValueError):
            consistency_proof_length(old, new)
    assert prove_consistency(7, 7, decimal_tree.node) == []
    assert consistency_proof_length(7, 7) == 0
    assert consistency_proof_length(0, 9) == 0


def test_check_inclusion_bad_inputs(decimal_tree: MemoryTree) -> None:
    root = decimal_tree.root(5)
    leaf = DECIMAL_LEAVES[2]
    proof = decimal_tree.prove_inclusion(2, 5)
    check_inclusion(2, 5, leaf, proof, root)
    bad: list[tuple[int, int, bytes, Sequence[bytes], bytes]] = [
        (5, 5, leaf, proof, root),
        (-1, 5, leaf, proof, root),
        (2, 1 << 64, leaf, proof, root),
        (2, -5, leaf, proof, root),
        (0, 0, leaf, [], EMPTY_ROOT),
        (2, 5, leaf[:31], proof, root),
        (2, 5, leaf + b"x", proof, root),
        (2, 5, leaf, proof, root[:31]),
        (2, 5, leaf, [*proof[:-1], proof[-1] + b"x"], root),
        (2, 5, leaf, [*proof[:-1], b""], root),
        (2, 5, leaf, proof[:-1], root),
        (2, 5, leaf, [], root),
        (2, 5, leaf, proof, b""),
    ]
    for args in bad:
        with pytest.raises(VerificationError):
            check_inclusion(*args)
    # Single-leaf tree: the root is the leaf hash and the proof is empty.
    check_inclusion(0, 1, leaf, [], leaf)
    with pytest.raises(VerificationError):
        check_inclusion(0, 1, leaf, [leaf], node_hash(leaf, leaf))


def test_check_inclusion_uint64_edge() -> None:
    # The largest uint64 tree: index 2**64 - 2 has a path of 64 hashes with
    # all-left siblings plus the last leaf; length arithmetic must not overflow.
    size, idx = UINT64_MAX, UINT64_MAX - 1
    n = inclusion_proof_length(idx, size)
    assert n == 63
    proof = [bytes([i]) * 32 for i in range(n)]
    with pytest.raises(VerificationError, match="does not match"):
        check_inclusion(idx, size, b"\x00" * 32, proof, b"\x00" * 32)


def test_check_consistency_edge_cases(decimal_tree: MemoryTree) -> None:
    r5, r8 = decimal_tree.root(5), decimal_tree.root(8)
    # old == new: empty proof, equal roots.
    check_consistency(5, 5, r5, r5, [])
    with pytest.raises(VerificationError):
        check_consistency(5, 5, r5, r8, [])
    with pytest.raises(VerificationError):
        check_consistency(5, 5, r5, r5, [r5])
    # old == 0: empty proof and the empty-tree root; any new root.
    check_consistency(0, 8, EMPTY_ROOT, r8, [])
    check_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    with pytest.raises(VerificationError):
        check_consistency(0, 0, EMPTY_ROOT, r8, [])
    with pytest.raises(VerificationError):
        check_consistency(0, 8, r5, r8, [])
    with pytest.raises(VerificationError):
        check_consistency(0, 8, EMPTY_ROOT, r8, [r8])
    with pytest.raises(VerificationError):
        check_consistency(0, 8, EMPTY_ROOT, r8[:5], [])
    # old > new, negative and oversized sizes.
    for old, new in [(8, 5), (-1, 5), (5, 1 << 64), (1 << 64, 1 << 64)]:
        with pytest.raises(VerificationError):
            check_consistency(old, new, r5, r8, [])
    # A non-empty proof is required for 0 < old < new.
    with pytest.raises(VerificationError):
        check_consistency(4, 8, decimal_tree.root(4), r8, [])
    proof = decimal_tree.prove_consistency(5, 8)
    check_consistency(5, 8, r5, r8, proof)
    with pytest.raises(VerificationError):
        check_consistency(5, 8, r5, r8, [*proof[:-1], proof[-1][:16]])


hashes = st.binary(min_size=0, max_size=40) | st.binary(min_size=32, max_size=32)
sizes = st.integers(-3, 20) | st.integers(-(1 << 70), 1 << 70) | st.just(UINT64_MAX)


@settings(max_examples=500, deadline=None)
@given(idx=sizes, size=sizes, leaf=hashes, proof=st.lists(hashes, max_size=70), root=hashes)
def test_check_inclusion_only_raises_verification_error(
    idx: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
) -> None:
    try:
        check_inclusion(idx, size, leaf, proof, root)
    except VerificationError:
        return
    # Random inputs only pass if they really are a valid single-leaf tree.
    assert (idx, size, proof, leaf) == (0, 1, [], root)


@settings(max_examples=500, deadline=None)
@given(old=sizes, new=sizes, r1=hashes, r2=hashes, proof=st.lists(hashes, max_size=70))
def test_check_consistency_only_raises_verification_error(
    old: int, new: int, r1: bytes, r2: bytes, proof: list[bytes]
) -> None:
    try:
        check_consistency(old, new, r1, r2, proof)
    except VerificationError:
        return
    assert proof == []
    assert (old == 0 and r1 == EMPTY_ROOT) or (old == new and r1 == r2)


# --- MemoryTree -----------------------------------------------------------


def test_memory_tree_append_and_nodes() -> None:
    tree = MemoryTree()
    assert tree.size == 0
    for i in range(20):
        assert tree.append(DECIMAL_LEAVES[i]) == i
        assert tree.size == i + 1
        assert tree.root() == ref_mth(0, i + 1)
    assert tree.node(2, 3) == ref_mth(12, 16)
    assert tree.node(4, 0) == ref_mth(0, 16)
    with pytest.raises(KeyError):
        tree.node(2, 5)  # leaves 20..23 are not all there yet
    with pytest.raises(KeyError):
        tree.node(5, 0)
    with pytest.raises(ValueError):
        tree.node(-1, 0)
    with pytest.raises(ValueError):
        tree.root(21)
    with pytest.raises(ValueError):
        tree.prove_inclusion(3, 21)
    with pytest.raises(ValueError):
        tree.prove_consistency(3, 21)
    with pytest.raises(ValueError):
        tree.append(b"short")
    assert tree.prove_inclusion(19) == ref_path(19, 0, 20)
    assert tree.prove_consistency(7) == ref_proof(7, 20)
