"""RFC 6962 Merkle trees over journal entry hashes: a daily root and inclusion proofs.

Leaf = SHA-256(0x00 ‖ entry hash); node = SHA-256(0x01 ‖ left ‖ right); a tree of n leaves
splits at the largest power of two below n, so a proof is at most ⌈log2 n⌉ hashes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def leaf_hash(entry_hash_hex: str) -> bytes:
    return hashlib.sha256(b"\x00" + bytes.fromhex(entry_hash_hex)).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    k = 1
    while k << 1 < n:
        k <<= 1
    return k


def _root(leaves: Sequence[bytes]) -> bytes:
    if len(leaves) == 1:
        return leaves[0]
    k = _split(len(leaves))
    return _node(_root(leaves[:k]), _root(leaves[k:]))


def merkle_root(entry_hashes: Sequence[str]) -> str:
    if not entry_hashes:
        return hashlib.sha256(b"").hexdigest()
    return _root([leaf_hash(h) for h in entry_hashes]).hex()


def inclusion_proof(entry_hashes: Sequence[str], index: int) -> list[str]:
    """Audit path for leaf `index`, from the leaf's sibling up to the root's children."""
    leaves = [leaf_hash(h) for h in entry_hashes]
    path: list[str] = []

    def walk(nodes: Sequence[bytes], i: int) -> None:
        if len(nodes) <= 1:
            return
        k = _split(len(nodes))
        if i < k:
            walk(nodes[:k], i)
            path.append(_root(nodes[k:]).hex())
        else:
            walk(nodes[k:], i - k)
            path.append(_root(nodes[:k]).hex())

    walk(leaves, index)
    return path


def verify_inclusion(
    entry_hash: str, index: int, size: int, proof: Sequence[str], root: str
) -> bool:
    """RFC 9162 §2.1.3.2 verification of an inclusion proof."""
    if index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf_hash(entry_hash)
    for p in proof:
        sibling = bytes.fromhex(p)
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = _node(sibling, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root
