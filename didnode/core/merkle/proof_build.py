"""Build RFC 9162 inclusion and consistency proofs from a log tree's node store.

The proofs are exactly RFC 9162 section 2.1.3.1 PATH(m, D[n]) and section
2.1.4.1 PROOF(m, D[n]) = SUBPROOF(m, D[n], true), hashes ordered from the
leaf (or old root) upwards, computed without recursion:

* An audit path for node ``(level, index)`` in a tree of ``size`` leaves has an
  *inner* part, below the point where its path to the root joins the tree's
  right border (the path of leaf ``size - 1``), where every level contributes
  its sibling; and a *border* part above it, where only right children have a
  sibling (a left child on the right border has none: RFC 6962 promotes it).
* Every sibling is a perfect stored node except possibly the topmost inner
  one, which may be cut short by the tree's right edge; that one is composed
  from O(log n) perfect nodes (:func:`~didnode.core.merkle.log_tree.range_hash`).
* A consistency proof from ``size1`` is the audit path, in the tree of
  ``size2``, of the last perfect node of the old tree (the node at level
  ``k = ctz(size1)`` ending at leaf ``size1``), preceded by that node itself
  unless it is the whole old tree (``size1`` a power of two, where the
  verifier already holds it as the old root).

Verification lives in ``proof_verify.py`` and shares no code with this module
on purpose: a bug here must not be masked by the same bug there.
"""

from __future__ import annotations

from didnode.core.merkle.log_tree import NodeStore, get_node, range_hash
from didnode.errors import InvalidArgument


def _path(store: NodeStore, level: int, index: int, size: int) -> list[bytes]:
    """Audit path of node ``(level, index)`` in the tree of ``size`` leaves.

    Precondition: ``index << level < size``.
    """
    out: list[bytes] = []
    # Index, at ``level``, of the node on the right border (holds leaf size-1).
    last = (size - 1) >> level
    inner = (index ^ last).bit_length()
    for j in range(inner):
        lvl = level + j
        sib = (index >> j) ^ 1
        begin = sib << lvl
        if begin + (1 << lvl) <= size:
            out.append(get_node(store, lvl, sib))
        else:
            # Only the topmost inner sibling can reach past the right edge.
            out.append(range_hash(store, begin, size))
    idx = index >> inner
    lvl = level + inner
    while idx:
        if idx & 1:
            out.append(get_node(store, lvl, idx - 1))
        idx >>= 1
        lvl += 1
    return out


def inclusion_proof(store: NodeStore, index: int, size: int) -> list[bytes]:
    """Return PATH(index, D[size]): the audit path of leaf ``index``.

    Preconditions: ``0 <= index < size`` (else :class:`InvalidArgument`); the
    store holds at least ``size`` leaves (else :class:`StoreCorrupted`).
    The result has at most ``ceil(log2(size))`` hashes, leaf level first;
    it is empty for ``size == 1``.
    """
    if not 0 <= index < size:
        raise InvalidArgument(f"leaf index {index} is not below tree size {size}", index=index, size=size)
    return _path(store, 0, index, size)


def consistency_proof(store: NodeStore, size1: int, size2: int) -> list[bytes]:
    """Return PROOF(size1, D[size2]): that the first ``size1`` leaves are a prefix.

    Preconditions: ``0 <= size1 <= size2`` (else :class:`InvalidArgument`);
    the store holds at least ``size2`` leaves.
    For ``size1 == 0`` or ``size1 == size2`` the proof is empty (RFC 9162
    defines PROOF only for ``0 < m < n``; the verifier accepts these two
    trivial cases with an empty proof, see ``proof_verify``).
    """
    if not 0 <= size1 <= size2:
        raise InvalidArgument(f"consistency needs 0 <= size1 <= size2, got size1={size1} size2={size2}", size1=size1, size2=size2)
    if size1 == 0 or size1 == size2:
        return []
    level = (size1 & -size1).bit_length() - 1  # trailing zeros of size1
    index = (size1 >> level) - 1
    proof = [] if index == 0 else [get_node(store, level, index)]
    proof.extend(_path(store, level, index, size2))
    return proof
