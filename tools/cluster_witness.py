"""The nodes of a cluster cosign each other's checkpoints (issue #17, item 5; docs/cluster.md, "Witnessed checkpoints").

Each node signs its checkpoint notes under its **own origin**,
``didnode.local/<network>/<node name>``, with its own node key: a witness
keeps one latest checkpoint per origin, and the nodes of one cluster sign
checkpoints of the same log at different sizes and times, which under one
shared origin would look like rollbacks to a witness. Each node is started
with ``--origin`` and ``--http``, and for every *other* node with
``--witness URL=VKEY`` (ask it for cosignatures) and ``--witness-for
ORIGIN=VKEY`` (cosign its checkpoints, checking its roots against the log it
replays itself: docs/witness.md). The trust policy of each node
(:func:`write_policies`) names its origin and checkpoint key and lists the
witness keys of all nodes with a threshold of 2: a node's checkpoint is
accepted once both other nodes cosigned it.

A node's log verifier key is its node key under its origin, known only once
``node.key`` exists, which a node creates at its first start (a key file
put there before would be refused as a key whose ledger was lost). So a
node whose data directory has no ``node.key`` is first started once without
the witness options (:func:`first_start_args`), then stopped; the witness
key (``DATA/witness.key``) is made here beforehand, which the node then uses.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nacl.signing import SigningKey  # noqa: E402

from cli.didnode_witnesses import WITNESS_KEY_FILE, witness_key_name  # noqa: E402
from didnode.core import note as note_codec  # noqa: E402
from didnode.core.trust.policy import TrustPolicy, WitnessKey  # noqa: E402
from didnode.witness.keyfile import load_or_create  # noqa: E402

WITNESS_THRESHOLD = 2


@dataclass(frozen=True)
class WitnessedNode:
    """One node of a cluster whose nodes witness each other: its name, data directory, gRPC and HTTP addresses."""

    name: str
    data: Path
    listen: str
    http: str
    network: str

    @property
    def origin(self) -> str:
        return f"didnode.local/{self.network}/{self.name}"

    @property
    def url(self) -> str:
        return f"http://{self.http}"

    @property
    def has_identity(self) -> bool:
        return (self.data / "node.key").exists()

    def log_vkey(self) -> str:
        """The signed-note verifier key of its checkpoints (its node key under its origin); needs ``node.key``."""
        seed = bytes.fromhex((self.data / "node.key").read_text().strip())
        return note_codec.verifier_key(self.origin, bytes(SigningKey(seed).verify_key))

    def witness_vkey(self) -> str:
        """Its witness's cosignature/v1 verifier key; creates ``DATA/witness.key`` when absent."""
        path = self.data / WITNESS_KEY_FILE
        name, key, _ = load_or_create(path, None if path.exists() else witness_key_name(self.origin))
        return note_codec.verifier_key(name, bytes(key.verify_key), note_codec.COSIGNATURE_V1)


def first_start_args(node: WitnessedNode) -> list[str]:
    """The ``didnode serve`` options of every start: its origin and HTTP face."""
    return ["--origin", node.origin, "--http", node.http]


def serve_args(nodes: Sequence[WitnessedNode], node: WitnessedNode) -> list[str]:
    """``didnode serve`` options of ``node``: :func:`first_start_args`, and each other node as witness and as witnessed log."""
    args = first_start_args(node)
    for other in nodes:
        if other.name != node.name:
            args += ["--witness", f"{other.url}={other.witness_vkey()}", "--witness-for", f"{other.origin}={other.log_vkey()}"]
    return args


def policy_for(nodes: Sequence[WitnessedNode], node: WitnessedNode, threshold: int = WITNESS_THRESHOLD) -> TrustPolicy:
    """The trust policy of ``node``: its own (``didnode trust-policy``), plus all nodes' witness keys and ``threshold``."""
    from cli.didnode_trust import policy_from_data

    base = policy_from_data(str(node.data), origin=node.origin)
    witnesses = tuple(WitnessKey.from_vkey(n.witness_vkey()) for n in nodes)
    return TrustPolicy.create(base.network, base.genesis, base.keys, base.threshold, base.max_staleness_ms, origin=node.origin, witnesses=witnesses, witness_threshold=threshold)


def write_policies(nodes: Sequence[WitnessedNode], directory: Path, threshold: int = WITNESS_THRESHOLD) -> dict[str, Path]:
    """Write ``directory/<node name>.trust.json`` for every node (safe while they run); returns the paths by name."""
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for node in nodes:
        path = directory / f"{node.name}.trust.json"
        path.write_text(policy_for(nodes, node, threshold).dumps())
        out[node.name] = path
    return out


__all__ = ["WITNESS_THRESHOLD", "WitnessedNode", "first_start_args", "policy_for", "serve_args", "write_policies"]
