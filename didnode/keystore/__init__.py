"""The client-side encrypted keystore of ``didctl`` (manufacturers, devices, admins).

A keystore is a directory (mode 0700)::

    <dir>/keystore.json          header: KDF parameters and a passphrase check
    <dir>/<sanitized-did>.key    one per DID (mode 0600): the DID in clear,
                                 its secrets in a secretbox

``keystore.json`` (UTF-8 JSON, format version 1)::

    {"format": "didnode-keystore", "version": 1,
     "kdf": {"alg": "argon2id", "salt": B64, "opslimit": int, "memlimit": int},
     "check": B64}

``<sanitized-did>.key`` (UTF-8 JSON, format version 1)::

    {"format": "didnode-keystore-key", "version": 1,
     "did": "did:dnode:...", "box": B64}

``B64`` is unpadded base64url (RFC 4648 section 5). Every ``box`` / ``check``
is a PyNaCl ``SecretBox`` message: 24-byte random nonce followed by the
XSalsa20-Poly1305 ciphertext and tag.

Key derivation. Argon2id (libsodium ``crypto_pwhash``, v1.3) runs **once** per
:meth:`Keystore.open`, turning the passphrase, the header's salt and its
``opslimit``/``memlimit`` into a 32-byte master key. Subkeys are derived
from it with keyed BLAKE2b (key = master key, message = purpose label,
personalization ``b"didnode-keystore"``): ``"check"`` encrypts the fixed
plaintext :data:`CHECK_PLAINTEXT` in the header and ``"files"`` encrypts every
``.key`` file. A third, ``"purpose"``, is never used as a key itself: tools
derive their own keys from it with :meth:`Keystore.purpose_key` (the journal
of ``didctl provision`` is encrypted that way). A wrong passphrase therefore
fails at open time, before any key file is touched, and sealing a file costs one secretbox, not one Argon2id run
(a manufacturer writes tens of thousands of files per run).

The plaintext inside each ``box`` is the compact JSON of :func:`export_plain`
(the "didnode-secrets" object, below). It repeats the DID, which is compared
with the file name on read, so swapping two (individually authentic) files
is detected.

"didnode-secrets" object, format version 1 (also the ``--plain`` export)::

    {"format": "didnode-secrets", "version": 1,
     "did": "did:...",
     "signing_keys": {"key-1": B64(32-byte Ed25519 seed), ...},
     "next_key": {"id": "key-2", "seed": B64(32 bytes)} | null,
     "key_agreement": {"id": "ka-1", "private_key": B64(32-byte X25519)} | null,
     "labels": {"role": "manufacturer-recovery", ...}}

Sealed bundle (:func:`export_sealed`), UTF-8 JSON, format version 1, for
handing a device its keys inside a provisioning bundle::

    {"format": "didnode-sealed-secrets", "version": 1,
     "did": "did:...",
     "kdf": {"alg": "argon2id", "salt": B64, "opslimit": int, "memlimit": int},
     "box": B64}

The bundle key is the keyed-BLAKE2b subkey ``"sealed-secrets"`` of
Argon2id(recipient passphrase, bundle salt, bundle params); ``box`` holds the
"didnode-secrets" object. Salt, parameters and the clear ``did`` are all
authenticated: changing the first two changes the key, and the clear ``did``
must equal the one inside.

Writes are atomic per file: the (already encrypted) content goes to a
temporary file ``.<name>.<random>.tmp`` in the keystore directory, which is
fsync'd, renamed over the target with ``os.replace`` and made durable by an
fsync of the directory. A crash leaves either the old file or the new one,
plus at worst a stray temporary file that :meth:`Keystore.list` ignores.
(The one exception is opt-in: :meth:`Keystore.put_many` with
``durability="batch"``, for bulk writers that journal the same secrets
themselves; see there.)

Python cannot reliably wipe memory: secrets live in ``bytes`` objects until
garbage collected. :meth:`Keystore.close` drops the keystore's own references
to the derived keys.

Modules (everything public is importable from this package):
:mod:`.didsecrets` (:class:`DidSecrets`), :mod:`.encoding` (the JSON
encodings above), :mod:`.kdf` (:class:`KdfParams`, :func:`kdf_from_env`,
Argon2id and the subkeys), :mod:`.exports` (plain export, sealed bundles),
:mod:`.files` (file names, atomic writes), :mod:`.store` (:class:`Keystore`).
"""

from didnode.keystore.didsecrets import DidSecrets
from didnode.keystore.exports import export_plain, export_sealed, import_plain, import_sealed
from didnode.keystore.kdf import KdfName, KdfParams, kdf_from_env
from didnode.keystore.store import CHECK_PLAINTEXT, CREATE_HINT, Keystore

__all__ = [
    "CHECK_PLAINTEXT",
    "CREATE_HINT",
    "DidSecrets",
    "KdfName",
    "KdfParams",
    "Keystore",
    "export_plain",
    "export_sealed",
    "import_plain",
    "import_sealed",
    "kdf_from_env",
]
