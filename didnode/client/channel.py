"""Where and how a client reaches a node: the default address and channel options shared by every client."""

from __future__ import annotations

DEFAULT_ADDRESS = "127.0.0.1:50051"
# A reply may be as large as the node sends (16 MiB, the node's own limit).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
# The fragment of the node DID's key that signs checkpoints (the node's genesis key).
NODE_KEY_FRAGMENT = "key-1"
