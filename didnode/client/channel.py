"""Where and how a client reaches a node: the default address, the channel options and :func:`open_channel`, shared by every client."""

from __future__ import annotations

from typing import Any, Literal, overload

import grpc

from didnode.wire.tls import TlsClientConfig

DEFAULT_ADDRESS = "127.0.0.1:50051"
# A reply may be as large as the node sends (16 MiB, the node's own limit).
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
]
# The fragment of the node DID's key that signs checkpoints (the node's genesis key).
NODE_KEY_FRAGMENT = "key-1"


@overload
def open_channel(address: str, tls: TlsClientConfig | None, aio: Literal[False]) -> grpc.Channel: ...
@overload
def open_channel(address: str, tls: TlsClientConfig | None, aio: Literal[True]) -> grpc.aio.Channel: ...
def open_channel(address: str, tls: TlsClientConfig | None, aio: bool) -> Any:
    """A channel to ``address`` (HOST:PORT) with :data:`CHANNEL_OPTIONS`: TLS with ``tls``, plaintext without.

    ``aio``: a ``grpc.aio`` channel (precondition: opened on the event loop
    that uses it) instead of a blocking one.
    """
    if tls is None:
        return grpc.aio.insecure_channel(address, options=CHANNEL_OPTIONS) if aio else grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    options = CHANNEL_OPTIONS + tls.channel_options()
    creds = tls.channel_credentials()
    return grpc.aio.secure_channel(address, creds, options=options) if aio else grpc.secure_channel(address, creds, options=options)
