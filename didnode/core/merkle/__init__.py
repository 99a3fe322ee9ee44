"""Pure Merkle code for transparency: no store engine, no I/O, no clock.

Modules (import them by name; several define a ``root`` function):

* ``hasher``        -- RFC 6962 SHA-256 leaf/node hashing and ``EMPTY_ROOT``.
* ``log_tree``      -- the append-only log tree over an injected ``NodeStore``.
* ``proof_build``   -- RFC 9162 inclusion and consistency proofs from a store.
* ``proof_verify``  -- their verification (hashes only; raises ``InvalidProof``).
* ``sparse``        -- the state tree: a shortcut sparse Merkle tree over an
  injected ``SparseStore``, with single and batch updates and proofs.
* ``sparse_verify`` -- presence/absence proof verification (hashes only).
* ``encoding``      -- ``SparseProof`` and the byte layouts of all proofs.
* ``reference``     -- naive RFC transcriptions, for tests only.
"""
