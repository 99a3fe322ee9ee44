"""didnode: decentralized identity and authentication for IoT devices (the did:dnode method)."""

__version__ = "0.1.0"
