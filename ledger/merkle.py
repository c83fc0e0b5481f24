"""RFC 6962 Merkle tree hashing and proofs (pure, no I/O).

Hashes (RFC 6962 §2.1, RFC 9162 §2.1.1), all SHA-256 and 32 bytes:

* leaf hash ``SHA-256(0x00 || entry)``;
* interior node ``SHA-256(0x01 || left || right)``;
* the empty tree's root is ``SHA-256("")``;
* for ``n > 1`` leaves, ``MTH(D[0:n]) = node(MTH(D[0:k]), MTH(D[k:n]))`` where
  ``k`` is the largest power of two strictly less than ``n``.

A *node* ``(level, index)`` is the perfect subtree covering leaves
``[index << level, (index + 1) << level)``; level 0 nodes are leaf hashes. A
tree of any size is the left-to-right list of perfect subtrees given by the set
bits of its size (:func:`tree_nodes`), folded right to left
(:func:`fold_nodes`). Every hash in an inclusion or consistency proof is such a
fold, so proof generation only needs a ``get_node(level, index)`` callable;
:func:`inclusion_nodes` / :func:`consistency_nodes` say in advance which nodes
it will ask for, so storage can fetch them in one read.

Proof generation follows RFC 6962 §2.1.1 (``PATH``) and §2.1.2 (``PROOF``);
checking follows RFC 9162 §2.1.3.2 and §2.1.4.2 step by step, plus strict
length and range checks. Checks raise :class:`~sigledger.ledger.errors.VerificationError`
on any failure and return ``None`` on success; bad arguments to the generating
functions (which come from our own code) raise ``ValueError``.

Sizes and indexes are uint64 on the wire; the checks reject anything outside
``[0, 2**64)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from typing import TypeAlias

from sigledger.ledger.encoding import UINT64_LIMIT
from sigledger.ledger.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "GetNode",
    "Node",
    "check_consistency",
    "check_inclusion",
    "consistency_nodes",
    "consistency_proof_length",
    "fold_nodes",
    "inclusion_nodes",
    "inclusion_proof_length",
    "largest_power_of_two_below",
    "leaf_hash",
    "node_hash",
    "prove_consistency",
    "prove_inclusion",
    "prove_inclusions",
    "root_from",
    "subtree_nodes",
    "tree_hash",
    "tree_nodes",
]

HASH_SIZE = 32

_sha256 = hashlib.sha256

EMPTY_ROOT: bytes = _sha256(b"").digest()
"""MTH of the empty list, RFC 6962 §2.1: ``SHA-256()``."""

Node: TypeAlias = tuple[int, int]
"""A perfect subtree ``(level, index)``."""

GetNode: TypeAlias = Callable[[int, int], bytes]
"""Returns the hash of the perfect node ``(level, index)``."""


# --- hashing ---------------------------------------------------------------


def leaf_hash(entry: bytes) -> bytes:
    """``SHA-256(0x00 || entry)``, the RFC 6962 §2.1 leaf hash."""
    return _sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``, the RFC 6962 §2.1 interior node hash."""
    return _sha256(b"\x01" + left + right).digest()


def largest_power_of_two_below(n: int) -> int:
    """The ``k`` of RFC 6962 §2.1: the power of two with ``k < n <= 2k`` (``n >= 2``)."""
    if n < 2:
        raise ValueError(f"largest_power_of_two_below needs n >= 2, got {n}")
    return 1 << ((n - 1).bit_length() - 1)


def tree_hash(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH over a list of *leaf hashes* (not entries); ``EMPTY_ROOT`` for ``[]``.

    Computed bottom-up: pair neighbours level by level and carry an odd last
    node up unchanged. That builds exactly the RFC 6962 tree, whose left
    subtrees are always perfect.
    """
    if not leaf_hashes:
        return EMPTY_ROOT
    level = list(leaf_hashes)
    sha = _sha256
    while len(level) > 1:
        n = len(level)
        nxt = [sha(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, n - 1, 2)]
        if n & 1:
            nxt.append(level[-1])
        level = nxt
    return level[0]


# --- subtree decomposition -------------------------------------------------


def subtree_nodes(start: int, end: int) -> list[Node]:
    """Decompose leaves ``[start, end)`` into maximal aligned perfect subtrees.

    Left to right, with strictly decreasing sizes (one node per set bit of
    ``end - start``, largest first). Only ranges whose ``start`` is a multiple
    of the largest power of two ``<= end - start`` have such a decomposition;
    they are exactly the ranges whose MTH is the right fold of those nodes
    (``[0, size)`` and every range in the RFC 6962 ``PATH``/``PROOF``
    recursion). Anything else raises ``ValueError``. ``start == end`` gives
    ``[]``.
    """
    if start < 0 or end < start:
        raise ValueError(f"invalid leaf range [{start}, {end})")
    width = end - start
    if width == 0:
        return []
    top = width.bit_length() - 1
    if start & ((1 << top) - 1):
        raise ValueError(f"leaf range [{start}, {end}) has no decreasing subtree decomposition")
    nodes: list[Node] = []
    pos = start
    while width:  # one step per set bit (proofs call this for every sibling)
        level = width.bit_length() - 1
        nodes.append((level, pos >> level))
        pos += 1 << level
        width -= 1 << level
    return nodes


def tree_nodes(size: int) -> list[Node]:
    """The perfect subtrees making up a tree of ``size`` leaves (``subtree_nodes(0, size)``)."""
    return subtree_nodes(0, size)


def fold_nodes(hashes: Sequence[bytes]) -> bytes:
    """Combine the hashes of a :func:`subtree_nodes` list into the MTH of its range.

    Folds right to left (``h = last; h = node(prev, h)``), because in RFC 6962
    the smaller subtrees hang off the right edge. ``EMPTY_ROOT`` for ``[]``.
    """
    if not hashes:
        return EMPTY_ROOT
    h = hashes[-1]
    sha = _sha256
    for i in range(len(hashes) - 2, -1, -1):
        h = sha(b"\x01" + hashes[i] + h).digest()
    return h


def root_from(size: int, get_node: GetNode) -> bytes:
    """The root of the tree of ``size`` leaves from its perfect subtrees; ``EMPTY_ROOT`` for 0."""
    return fold_nodes([get_node(level, index) for level, index in tree_nodes(size)])


# --- proof generation (RFC 6962 §2.1.1, §2.1.2) ----------------------------


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form ``PATH(index, D[0:size])``, leaf sibling first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    ranges: list[tuple[int, int]] = []
    lo, hi = 0, size
    # RFC 6962 §2.1.1, unrolled from the root down; the recursion appends the
    # sibling after the deeper part of the path, so reverse at the end.
    while hi - lo > 1:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if index < lo + k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
    ranges.reverse()
    return ranges


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form ``PROOF(old_size, D[0:new_size])``, in proof order."""
    if old_size < 0 or new_size < old_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    ranges: list[tuple[int, int]] = []
    if old_size in (0, new_size):
        return ranges
    # SUBPROOF(m, D[lo:hi], b) of RFC 6962 §2.1.2, unrolled from the root down.
    m, lo, hi, whole = old_size, 0, new_size, True
    while m != hi - lo:
        k = 1 << ((hi - lo - 1).bit_length() - 1)
        if m <= k:
            ranges.append((lo + k, hi))
            hi = lo + k
        else:
            ranges.append((lo, lo + k))
            lo += k
            m -= k
            whole = False
    if not whole:
        # SUBPROOF(m, D[0:m], false) = [MTH(D[0:m])]: the old tree is not a
        # prefix-subtree the verifier already knows the hash of.
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def _nodes_of(ranges: list[tuple[int, int]]) -> list[Node]:
    # The ranges of one proof are disjoint, so their nodes are distinct.
    nodes: list[Node] = []
    for lo, hi in ranges:
        node = _perfect(lo, hi)  # every range but the right edge
        if node is not None:
            nodes.append(node)
        else:
            nodes += subtree_nodes(lo, hi)
    return nodes


def _perfect(lo: int, hi: int) -> Node | None:
    """The one node of leaves [lo, hi) when they form a perfect subtree, else None."""
    width = hi - lo
    if width & (width - 1):
        return None
    level = width.bit_length() - 1
    return level, lo >> level


def _hashes_of(
    ranges: list[tuple[int, int]],
    get_node: GetNode,
    memo: dict[tuple[int, int], bytes] | None = None,
) -> list[bytes]:
    proof: list[bytes] = []
    for lo, hi in ranges:
        node = _perfect(lo, hi)
        if node is not None:  # one stored node, no hashing
            proof.append(get_node(*node))
        elif memo is not None and (lo, hi) in memo:
            proof.append(memo[lo, hi])
        else:
            h = fold_nodes([get_node(lv, i) for lv, i in subtree_nodes(lo, hi)])
            if memo is not None:
                memo[lo, hi] = h
            proof.append(h)
    return proof


def inclusion_nodes(
    index: int, size: int, memo: Container[tuple[int, int]] | None = None
) -> list[Node]:
    """Every node :func:`prove_inclusion` will ask ``get_node`` for (distinct); with the
    ``memo`` given to :func:`prove_inclusions`, none of the ranges hashed in it."""
    ranges = _inclusion_ranges(index, size)
    if memo:
        ranges = [r for r in ranges if r not in memo]
    return _nodes_of(ranges)


def prove_inclusion(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """RFC 6962 §2.1.1 ``PATH(index, D[0:size])``; ``ValueError`` unless ``0 <= index < size``."""
    return _hashes_of(_inclusion_ranges(index, size), get_node)


def prove_inclusions(
    indexes: Iterable[int],
    size: int,
    get_node: GetNode,
    memo: dict[tuple[int, int], bytes] | None = None,
) -> list[list[bytes]]:
    """:func:`prove_inclusion` for many leaves of one tree.

    Proofs in one tree share their right-edge (non-perfect) subtrees, so each
    of those is hashed once for the whole batch rather than once per proof.
    ``memo`` (range -> MTH) keeps those hashes for later calls: the MTH of leaves
    ``[lo, hi)`` never changes once the log holds them, so one memo serves every
    tree of the same log.
    """
    memo = {} if memo is None else memo
    return [_hashes_of(_inclusion_ranges(i, size), get_node, memo) for i in indexes]


def consistency_nodes(old_size: int, new_size: int) -> list[Node]:
    """Every node :func:`prove_consistency` will ask ``get_node`` for (distinct)."""
    return _nodes_of(_consistency_ranges(old_size, new_size))


def prove_consistency(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """RFC 6962 §2.1.2 ``PROOF(old_size, D[0:new_size])``.

    ``[]`` when ``old_size == new_size`` or ``old_size == 0`` (nothing to
    prove); ``ValueError`` if ``old_size > new_size`` or a size is negative.
    """
    return _hashes_of(_consistency_ranges(old_size, new_size), get_node)


def inclusion_proof_length(index: int, size: int) -> int:
    """Length of ``PATH(index, D[0:size])`` (``ValueError`` unless ``0 <= index < size``).

    The path has one hash per level where the index and the last leaf diverge
    (``inner``), plus one per left sibling above that (``border``).
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is not in a tree of size {size}")
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def consistency_proof_length(old: int, new: int) -> int:
    """Length of ``PROOF(old, D[0:new])``; 0 when ``old == 0`` or ``old == new``."""
    if old < 0 or new < old:
        raise ValueError(f"no consistency proof from size {old} to size {new}")
    if old in (0, new):
        return 0
    fork = ((old - 1) ^ (new - 1)).bit_length()
    border = ((old - 1) >> fork).bit_count()
    shift = (old & -old).bit_length() - 1
    # A power-of-two old tree is a node the verifier already has (its root),
    # so PROOF omits it.
    seed = 0 if old & (old - 1) == 0 else 1
    return seed + fork - shift + border


# --- proof checking (RFC 9162 §2.1.3.2, §2.1.4.2) --------------------------


def _check_size(name: str, value: int) -> None:
    if not 0 <= value < UINT64_LIMIT:
        raise VerificationError(f"{name} {value} is outside the uint64 range")


def _check_hash(name: str, value: bytes) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{name} is {len(value)} bytes, not {HASH_SIZE}")


def _check_proof_hashes(proof: Sequence[bytes], want: int) -> None:
    if len(proof) != want:
        raise VerificationError(f"proof has {len(proof)} hashes, expected {want}")
    for i, p in enumerate(proof):
        if len(p) != HASH_SIZE:
            raise VerificationError(f"proof hash {i} is {len(p)} bytes, not {HASH_SIZE}")


def _rfc9162_path(
    fn: int, sn: int, proof: Sequence[bytes], too_long: str, mismatch: str
) -> Iterator[tuple[bytes, bool]]:
    """The proof walk both RFC 9162 verifications share (§2.1.3.2 and §2.1.4.2):
    each proof hash with True when it is the left sibling of the path so far
    (hash it in front), False when the right one (hash it behind).

    ``fn``/``sn`` are the RFC's starting node and last node. Raises
    VerificationError(``too_long``) at a hash past the root, and
    VerificationError(``mismatch``) when the proof ends before the root (the
    caller raises the same on a root that differs: one answer for both).
    """
    for p in proof:
        if sn == 0:
            raise VerificationError(too_long)
        left = bool(fn & 1) or fn == sn
        yield p, left
        if left:
            # If fn was a right-edge node (fn == sn, even), skip the levels where
            # it has no right sibling. The loop must stop at fn == 0, or it never ends.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        fn >>= 1
        sn >>= 1
    # In the bare RFC algorithm sn == 0 is what rejects a short proof that
    # reaches the root of a smaller tree.
    if sn != 0:
        raise VerificationError(mismatch)


def check_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    RFC 9162 §2.1.3.2, after rejecting out-of-range sizes, hashes that are not
    32 bytes and proofs of the wrong length. Raises ``VerificationError`` on
    any failure.
    """
    _check_size("tree size", size)
    _check_size("leaf index", index)
    if index >= size:
        raise VerificationError(f"leaf index {index} is not in a tree of size {size}")
    _check_hash("leaf hash", leaf_hash)
    _check_hash("root hash", root)
    _check_proof_hashes(proof, inclusion_proof_length(index, size))

    # RFC 9162 §2.1.3.2 as written. The length check above already makes the
    # "proof too long" and final sn == 0 conditions unreachable; they stay as
    # the RFC's own guards.
    sha = _sha256
    mismatch = f"inclusion proof for leaf {index} does not match the root"
    r = leaf_hash
    for p, left in _rfc9162_path(index, size - 1, proof, "inclusion proof is too long", mismatch):
        r = sha(b"\x01" + p + r).digest() if left else sha(b"\x01" + r + p).digest()
    if r != root:
        raise VerificationError(mismatch)


def check_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    For ``0 < old_size < new_size`` this is RFC 9162 §2.1.4.2 (after length and
    range checks). The RFC leaves the other cases undefined; we follow C2SP
    tlog-witness:

    * ``old_size == new_size``: the proof must be empty and the roots equal;
    * ``old_size == 0``: the proof must be empty and ``old_root`` must be
      ``EMPTY_ROOT``; any ``new_root`` is consistent with the empty tree;
    * ``old_size > new_size``: always fails.

    Raises ``VerificationError`` on any failure.
    """
    _check_size("old tree size", old_size)
    _check_size("new tree size", new_size)
    if old_size > new_size:
        raise VerificationError(f"old tree size {old_size} exceeds new tree size {new_size}")
    _check_hash("old root hash", old_root)
    _check_hash("new root hash", new_root)
    _check_proof_hashes(proof, consistency_proof_length(old_size, new_size))
    if old_size == 0:
        if old_root != EMPTY_ROOT:
            raise VerificationError("a tree of size 0 must have the empty-tree root")
        if new_size == 0 and new_root != EMPTY_ROOT:
            raise VerificationError("a tree of size 0 must have the empty-tree root")
        return
    if old_size == new_size:
        if old_root != new_root:
            raise VerificationError(f"two different roots for tree size {old_size}")
        return

    # RFC 9162 §2.1.4.2 step 2: a power-of-two old tree is itself a node of
    # the new tree; its hash (old_root) is the implicit first proof element.
    if old_size & (old_size - 1) == 0:
        fr = sr = old_root
        rest = proof
    else:
        fr = sr = proof[0]
        rest = proof[1:]
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    sha = _sha256
    mismatch = f"consistency proof from size {old_size} to {new_size} does not match the roots"
    for c, left in _rfc9162_path(fn, sn, rest, "consistency proof is too long", mismatch):
        if left:
            fr = sha(b"\x01" + c + fr).digest()
            sr = sha(b"\x01" + c + sr).digest()
        else:
            sr = sha(b"\x01" + sr + c).digest()
    if fr != old_root or sr != new_root:
        raise VerificationError(mismatch)
