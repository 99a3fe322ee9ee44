"""Generate the checkpoint signature vectors in ``vectors/``: one JSON file per mutation.

Run ``python -m tests.core.checkpoint.make_vectors`` from the repository root
to rewrite the directory; ``test_vectors.py`` checks that the committed files
are exactly what this script produces and that each verifies or fails as it
says. Ed25519 signatures are deterministic, so a fixed seed gives fixed files.

File schema (byte strings lowercase hex)::

    {"name": <file stem>, "description": ..., "expect": "ok" | <InvalidProof subclass name>,
     "signer_public_key": <32 bytes>, "signer_did": <DID the kid must name> | null,
     "signing_bytes": <the exact bytes the valid checkpoint signs>,
     "checkpoint": <the checkpoint JSON form (core.checkpoint.SignedCheckpoint.to_json)>}
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from nacl.signing import SigningKey

from didnode.core.checkpoint import Checkpoint, SignedCheckpoint, sign
from didnode.core.operations import signing_bytes as operation_signing_bytes

VECTOR_DIR = Path(__file__).with_name("vectors")
SEED = hashlib.sha256(b"didnode checkpoint test vectors").digest()
OTHER_SEED = hashlib.sha256(b"didnode checkpoint test vectors: another key").digest()
NODE_DID = "did:dnode:QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG"
KID = f"{NODE_DID}#key-1"

BASE = Checkpoint(
    network="local",
    tree_size=1000,
    log_root=hashlib.sha256(b"log root").digest(),
    state_root=hashlib.sha256(b"state root").digest(),
    time_ms=1_700_000_000_000,
)


def _flip(b: bytes, index: int = 0, bit: int = 0) -> bytes:
    return b[:index] + bytes((b[index] ^ (1 << bit),)) + b[index + 1 :]


def build() -> dict[str, dict[str, Any]]:
    """All vectors by name (the file stem), each with its ``name`` field set."""
    key = SigningKey(SEED)
    other = SigningKey(OTHER_SEED)
    pub = bytes(key.verify_key).hex()
    good = sign(BASE, key, KID)
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, description: str, expect: str, signed: SignedCheckpoint | dict[str, Any], signer_did: str | None = None) -> None:
        out[name] = {
            "description": description,
            "expect": expect,
            "signer_public_key": pub,
            "signer_did": signer_did,
            "signing_bytes": BASE.signing_bytes().hex(),
            "checkpoint": signed.to_json() if isinstance(signed, SignedCheckpoint) else signed,
        }

    bad = "BadCheckpointSignature"
    add("checkpoint_valid", "a valid checkpoint signed by the node key", "ok", good)
    add("checkpoint_valid_signer_did", "valid, and the kid names the expected node DID", "ok", good, NODE_DID)
    add("checkpoint_flipped_signature_bit", "lowest bit of the signature's first byte flipped", bad, replace(good, signature=_flip(good.signature)))
    add("checkpoint_flipped_signature_last_bit", "top bit of the signature's last byte flipped", bad, replace(good, signature=_flip(good.signature, 63, 7)))
    add("checkpoint_wrong_key", "signed by another key than the pinned one", bad, sign(BASE, other, KID))
    add("checkpoint_altered_network", "network changed after signing", bad, replace(good, checkpoint=replace(BASE, network="locam")))
    add("checkpoint_altered_tree_size", "tree size + 1 after signing", bad, replace(good, checkpoint=replace(BASE, tree_size=1001)))
    add("checkpoint_altered_log_root", "one bit of the log root flipped", bad, replace(good, checkpoint=replace(BASE, log_root=_flip(BASE.log_root))))
    add("checkpoint_altered_state_root", "one bit of the state root flipped", bad, replace(good, checkpoint=replace(BASE, state_root=_flip(BASE.state_root, 31, 7))))
    add("checkpoint_altered_time", "time + 1 ms after signing", bad, replace(good, checkpoint=replace(BASE, time_ms=BASE.time_ms + 1)))
    add("checkpoint_swapped_roots", "log and state roots exchanged", bad, replace(good, checkpoint=replace(BASE, log_root=BASE.state_root, state_root=BASE.log_root)))
    op_sig = key.sign(operation_signing_bytes("local", "create", BASE.body())).signature
    add("checkpoint_operation_context_signature", "the body signed under the operation context instead", bad, replace(good, signature=bytes(op_sig)))
    no_ctx = key.sign(BASE.body()).signature
    add("checkpoint_no_context_signature", "the body signed without the checkpoint context", bad, replace(good, signature=bytes(no_ctx)))
    add("checkpoint_kid_of_another_did", "valid signature, but the kid names another DID than the expected signer", bad,
        replace(good, kid="did:dnode:QmNLei78zWmzUdbeRB3CiUfAizWUrbeeZh5K1rhAQKCh51#key-1"), NODE_DID)
    truncated = good.to_json()
    truncated["signature"] = good.signature[:63].hex()
    add("checkpoint_truncated_signature", "signature of 63 bytes", "MalformedProof", truncated)
    upper = good.to_json()
    upper["logRoot"] = upper["logRoot"].upper()
    add("checkpoint_uppercase_hex", "log root in uppercase hex (not the canonical form)", "MalformedProof", upper)
    extra = good.to_json()
    extra["comment"] = "unsigned text riding along"
    add("checkpoint_extra_member", "an unknown member next to the signed ones", "MalformedProof", extra)
    for name, v in out.items():
        v["name"] = name
    return out


def render(vector: dict[str, Any]) -> str:
    """The exact file text of one vector."""
    return json.dumps(vector, indent=2, sort_keys=True) + "\n"


def main() -> None:
    """Rewrite ``vectors/``: one file per vector, stale files removed."""
    VECTOR_DIR.mkdir(exist_ok=True)
    vectors = build()
    for stale in VECTOR_DIR.glob("*.json"):
        if stale.stem not in vectors:
            stale.unlink()
    for name, v in vectors.items():
        (VECTOR_DIR / f"{name}.json").write_text(render(v))
    print(f"wrote {len(vectors)} vectors to {VECTOR_DIR}")


if __name__ == "__main__":
    main()
