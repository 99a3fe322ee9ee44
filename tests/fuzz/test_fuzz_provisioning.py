"""Fuzz targets: provisioning inputs (device public-key files, manifests, transfer offers,
device bundles, ``--bundle-recipient``) and the journal's record reader.

Path-based readers get the fuzzer's bytes written to a file first, as a user's file would be.
Opening a passphrase-protected bundle normally costs one Argon2id per (salt, cost); the
target swaps the KDF for a hash during the call, so every other step (envelope, KDF
object, box, sealed secrets) is fuzzed at full speed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from unittest import mock

import nacl.pwhash.argon2id as argon2id

from didnode.core.encoding import ED25519_PUB, X25519_PUB, b64url, multikey_encode
from didnode.keystore import KdfParams
from didnode.provisioning import bundle as bundle_mod
from didnode.provisioning import journal as journal_mod
from didnode.provisioning.bundle import BundleOpener, Sealer, parse_recipient, read_bundle, secrets_json
from didnode.provisioning.devices import create_signing_bytes, read_public_keys
from didnode.provisioning.transfer import read_manifest, read_offer
from didnode.core.operations import next_commitment
from tests.fuzz import harness
from tests.fuzz.harness import target
from tests.fuzz.samples import DID_TOKENS, JSON_TOKENS, NET, signing_key, world, x25519_key

PV_TOKENS = (
    *JSON_TOKENS,
    *DID_TOKENS,
    *(f'"{m}":' for m in ("serial", "authenticationKey", "keyAgreementKey", "nextKeyCommitment", "nextKey", "createSignature", "did", "opHash", "manufacturer",
                          "format", "version", "network", "from", "to", "count", "payload", "proofs", "keys", "protection", "kdf", "box", "secrets", "recipient",
                          "credential", "node", "salt", "opslimit", "memlimit", "alg")),
    "serial,authenticationKey,nextKey,createSignature", "did,serial,opHash", '"didctl-transfer-offer"', '"didnode-device-bundle"', '"passphrase"', '"recipient"', '"none"',
    '"argon2id"', "\r\n", ",,", '""', "\ufeff",
)


@functools.lru_cache(maxsize=1)
def _dir() -> Path:
    d = harness.scratch_dir("fuzz-provisioning-")
    return d


def _file(name: str, data: bytes) -> Path:
    p = _dir() / name
    p.write_bytes(data)
    return p


# -- device public-key files -------------------------------------------------------


def _device_lines() -> list[dict[str, str]]:
    mfr = world().admin.did
    rows = []
    for i in range(2):
        auth, nxt, ka = signing_key(f"dev{i}/key-1"), signing_key(f"dev{i}/next"), x25519_key(f"dev{i}/ka-1")
        auth_pub, ka_pub = bytes(auth.verify_key), bytes(ka.public_key)
        commitment = next_commitment(bytes(nxt.verify_key))
        sig = auth.sign(create_signing_bytes(NET, mfr, auth_pub, commitment, ka_pub if i == 0 else None)).signature
        row = {"serial": f"SN-{i}", "authenticationKey": multikey_encode(auth_pub, ED25519_PUB), "createSignature": b64url(sig)}
        if i == 0:
            row["keyAgreementKey"] = multikey_encode(ka_pub, X25519_PUB)
            row["nextKeyCommitment"] = commitment
        else:
            row["nextKey"] = multikey_encode(bytes(nxt.verify_key), ED25519_PUB)
        rows.append(row)
    return rows


def _device_files() -> list[bytes]:
    rows = _device_lines()
    jsonl = "# devices\n" + "".join(json.dumps(r) + "\n" for r in rows)
    cols = ["serial", "authenticationKey", "keyAgreementKey", "nextKeyCommitment", "nextKey", "createSignature"]
    csv = ",".join(cols) + "\n" + "".join(",".join(r.get(c, "") for c in cols) + "\n" for r in rows)
    return [jsonl.encode(), csv.encode()]


@target("device_key_file", seeds=_device_files, tokens=PV_TOKENS, max_len=8192)
def fuzz_device_key_file(data: bytes) -> None:
    read_public_keys(_file("devices.in", data), NET, world().admin.did)


# -- manifests and offers ------------------------------------------------------------


def _manifests() -> list[bytes]:
    w = world()
    dids = [op.did for op in w.ops if op.type == "create"]
    jsonl = "".join(json.dumps({"did": d, "serial": f"SN-{i}", "opHash": hashlib.sha256(b"x").hexdigest(), "manufacturer": w.admin.did}) + "\n" for i, d in enumerate(dids))
    csv = "did,serial,opHash\n" + "".join(f"{d},SN-{i},\n" for i, d in enumerate(dids))
    return [jsonl.encode(), csv.encode()]


@target("manifest", seeds=_manifests, tokens=PV_TOKENS, max_len=8192)
def fuzz_manifest(data: bytes) -> None:
    read_manifest(_file("manifest.in", data))


def _offers() -> list[bytes]:
    w = world()
    op = next(o for o in w.ops if o.type == "transfer")
    owner = json.loads(op.payload)["controllers"][0]
    head = {"format": "didctl-transfer-offer", "version": 1, "network": NET, "from": w.admin.did, "to": owner, "count": 1}
    line = {"did": op.did, "payload": b64url(op.payload), "proofs": [[p.kid, b64url(p.signature)] for p in op.proofs]}
    return [(json.dumps(head) + "\n" + json.dumps(line) + "\n").encode()]


@target("transfer_offer", seeds=_offers, tokens=PV_TOKENS, max_len=8192)
def fuzz_transfer_offer(data: bytes) -> None:
    read_offer(_file("offer.in", data), NET)


# -- device bundles and recipients ---------------------------------------------------

RECIPIENT = x25519_key("installer")
PASSPHRASE = "bundle passphrase"
MIN_KDF = KdfParams(argon2id.OPSLIMIT_MIN, argon2id.MEMLIMIT_MIN)


def _cheap_run_key(passphrase: str | bytes, salt: bytes, params: KdfParams) -> bytes:
    secret = passphrase.encode() if isinstance(passphrase, str) else bytes(passphrase)
    return hashlib.blake2b(secret + salt + repr(params).encode(), digest_size=32).digest()


def _bundles() -> list[bytes]:
    w = world()
    did = w.admin.did
    secrets = secrets_json(did, bytes(w.admin.key), bytes(w.admin.ka))  # type: ignore[arg-type]
    with mock.patch.object(bundle_mod, "run_key", _cheap_run_key):
        sealers = [Sealer.passphrase(PASSPHRASE, bytes(16), MIN_KDF), Sealer.recipient(multikey_encode(bytes(RECIPIENT.public_key), X25519_PUB)), Sealer.plain()]
    out = []
    for s in [*sealers, None]:
        doc = {"format": "didnode-device-bundle", "version": 1, "serial": "SN-1", "did": did, "manufacturer": w.issuer.did, "model": "X1", "network": NET, "node": "127.0.0.1:50051",
               "position": 3, "opHash": "00" * 32, "credential": w.tokens[0], "checkpoint": None, "keys": None if s is None else s.seal(did, secrets)}
        out.append(json.dumps(doc, indent=1).encode())
    return out


@target("device_bundle", seeds=_bundles, tokens=PV_TOKENS, max_len=16384)
def fuzz_device_bundle(data: bytes) -> None:
    """A flashing station or device reads a bundle and opens its keys (each protection mode)."""
    bundle = read_bundle(data)
    with mock.patch.object(bundle_mod, "run_key", _cheap_run_key):
        BundleOpener(PASSPHRASE, bytes(RECIPIENT)).open(bundle)


@target("bundle_recipient", seeds=lambda: [multikey_encode(bytes(RECIPIENT.public_key), X25519_PUB).encode()], tokens=("z6LS", "@", *DID_TOKENS), max_len=512)
def fuzz_bundle_recipient(data: bytes) -> None:
    """``--bundle-recipient``: a Multikey, or @FILE holding one."""
    parse_recipient(data.decode("utf-8", "replace").lstrip("@"))
    parse_recipient("@" + str(_file("recipient.in", data)))


# -- the journal --------------------------------------------------------------------------


def _journals() -> list[bytes]:
    recs = [{"type": "header", "format": "didctl-transfer-journal", "version": 1}, {"type": "plan", "chunk": 0, "first": 0, "time": 1}, {"type": "done", "chunk": 0}]
    text = "".join(json.dumps(r) + "\n" for r in recs)
    return [text.encode(), text.encode() + b'{"type": "pla']


@target("journal_records", seeds=_journals, tokens=PV_TOKENS, max_len=8192)
def fuzz_journal(data: bytes) -> None:
    records, end = journal_mod._parse(Path("journal.jsonl"), data)
    assert 0 <= end <= len(data) and all(isinstance(r, dict) for r in records)


test_fuzz = harness.fuzz_tests(__name__)


# Crashes the fuzzers found (each failed with a non-didnode exception before its fix).
def _passphrase_bundle_of(did: str) -> bytes:
    doc = json.loads(_bundles()[0])
    doc["did"] = did
    return json.dumps(doc).encode()


REGRESSIONS = {
    # csv.Error ("new-line character seen in unquoted field") escaped the CSV readers.
    "device-file-bare-cr": ("device_key_file", b"serial,authenticationKey\nSN-1,z6Mk\rx\n"),
    "device-file-huge-field": ("device_key_file", b"serial,authenticationKey\n" + b"a" * 140_000 + b",z\n"),
    "manifest-bare-cr": ("manifest", b"did,seri\ral\ndid:dnode:x,1\n"),
    "manifest-huge-field": ("manifest", b"did\n" + b"a" * 140_000 + b"\n"),
    # A first line that is JSON but not an object: AttributeError ('float' object has no attribute 'get').
    "offer-header-not-object": ("transfer_offer", b"0.5"),
    # A passphrase bundle's DID goes into the per-device key derivation as ASCII: UnicodeEncodeError.
    "bundle-non-ascii-did": ("device_bundle", _passphrase_bundle_of("did:dnode:\u0342")),
}
test_regression = harness.regression_tests(REGRESSIONS)
