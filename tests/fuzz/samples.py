"""Valid samples for the fuzz targets' seed corpora, built deterministically (fixed keys, fixed times).

One small ledger history exercises every operation type (create with controllers,
services and a key-agreement key, update, rotate, revoke, publish, recover, transfer,
deactivate); its operations, log entries and state records, and credentials and status
lists of an issuer on it, are the valid samples the fuzzers start from. Everything is
computed once per process.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass

from nacl.public import PrivateKey
from nacl.signing import SigningKey

from didnode.core import builder
from didnode.core import entry as entry_codec
from didnode.core.builder import NewAgreementKey, NewKey, SignedOperation
from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from didnode.core.credentials.status_list import Bitstring
from didnode.core.keystate import DidState
from tests.core.credentials.helpers import T0, TimedLedger
from tests.factory import Identity

NET = "local"
NOW = T0 + 86_400_000  # the verifiers' "now": a day after the history began


def signing_key(label: str) -> SigningKey:
    return SigningKey(hashlib.sha256(b"didnode fuzz " + label.encode()).digest())


def x25519_key(label: str) -> PrivateKey:
    return PrivateKey(hashlib.sha256(b"didnode fuzz x25519 " + label.encode()).digest())


def _create(ledger: TimedLedger, label: str, controllers: tuple[Identity, ...] = (), services: tuple[dict[str, str], ...] = ()) -> tuple[Identity, SignedOperation]:
    auth, nxt, ka = signing_key(label + "/key-1"), signing_key(label + "/next-1"), x25519_key(label + "/ka-1")
    unsigned = builder.create(
        NET,
        [NewKey("key-1", bytes(auth.verify_key))],
        bytes(nxt.verify_key),
        controllers=[c.did for c in controllers],
        services=services,
        key_agreement=NewAgreementKey("ka-1", bytes(ka.public_key)),
    )
    op = builder.sign(unsigned, [(f"{unsigned.did}#key-1", auth)] + [(c.kid, c.key) for c in controllers])
    ledger.submit(op)
    return Identity(unsigned.did, {"key-1": auth}, "key-1", nxt, ka), op


@dataclass(frozen=True)
class World:
    ledger: TimedLedger
    ops: tuple[SignedOperation, ...]
    entries: tuple[bytes, ...]
    states: tuple[DidState, ...]
    admin: Identity
    issuer: Issuer
    tokens: tuple[str, ...]  # credentials of the issuer (with and without status, expiring)
    status_lists: tuple[str, ...]  # status list credentials the issuer published

    @property
    def records(self) -> tuple[bytes, ...]:
        return tuple(s.to_record() for s in self.states)


@functools.lru_cache(maxsize=1)
def world() -> World:
    led = TimedLedger(NET)
    ops: list[SignedOperation] = []
    states: list[DidState] = []

    def submit(op: SignedOperation) -> None:
        states.append(led.submit(op))
        ops.append(op)

    admin, op = _create(led, "admin")
    ops.append(op)
    admin2, op = _create(led, "admin2")
    ops.append(op)
    dev, op = _create(led, "device", controllers=(admin,), services=(builder.service("mqtt", "MQTTBroker", "mqtts://broker.example:8883"),))
    ops.append(op)
    states.append(led.resolve(dev.did))

    s = led.resolve(dev.did)
    submit(builder.sign(builder.update(NET, dev.did, s.seq + 1, s.last, [builder.service("web", "LinkedDomains", "https://example.com/")], NewAgreementKey("ka-2", bytes(x25519_key("device/ka-2").public_key))), [(dev.kid, dev.key)]))
    s = led.resolve(dev.did)
    key2, next2 = signing_key("device/key-2"), signing_key("device/next-2")
    submit(builder.sign(builder.rotate(NET, dev.did, s.seq + 1, s.last, bytes(dev.next_key.verify_key), [NewKey("key-2", bytes(key2.verify_key))], bytes(next2.verify_key)), [(builder.next_kid(dev.did), dev.next_key)]))
    dev.keys["key-2"], dev.current, dev.next_key = key2, "key-2", next2
    s = led.resolve(dev.did)
    submit(builder.sign(builder.revoke(NET, dev.did, s.seq + 1, s.last, "key-1", "compromised"), [(admin.kid, admin.key)]))
    s = led.resolve(dev.did)
    key3, next3 = signing_key("device/key-3"), signing_key("device/next-3")
    submit(builder.sign(builder.recover(NET, dev.did, s.seq + 1, s.last, [NewKey("key-3", bytes(key3.verify_key), ("authentication",))], bytes(next3.verify_key), NewAgreementKey("ka-3", bytes(x25519_key("device/ka-3").public_key))), [(admin.kid, admin.key)]))
    s = led.resolve(dev.did)
    submit(builder.sign(builder.transfer(NET, dev.did, s.seq + 1, s.last, [admin2.did]), [(admin.kid, admin.key), (admin2.kid, admin2.key)]))

    # An issuer: credentials with and without status, its status lists published on the ledger.
    issuer = Issuer(admin.did, "key-1", admin.key)
    bits = Bitstring()
    bits.set(7, True)
    lists = (issuer.status_list("revocation", 1, bits, T0 + 1000, allocated=16), issuer.status_list("suspension", 1, Bitstring(), T0 + 1000))
    for rid, token in zip(("revocation-1", "suspension-1"), lists):
        s = led.resolve(admin.did)
        submit(builder.sign(builder.publish(NET, admin.did, s.seq + 1, s.last, rid, "application/vc+jwt", token), [(admin.kid, admin.key)]))
    claims = device_attestation_claims("X1", "SN-9", "hw2", "fw3", T0 - 86_400_000)
    ids = [f"urn:uuid:00000000-0000-4000-8000-00000000000{i}" for i in range(3)]  # fixed: the samples are the same every run
    tokens = (
        issuer.issue(dev.did, [DEVICE_ATTESTATION], claims, T0 + 2000, credential_id=ids[0]),
        issuer.issue(dev.did, [DEVICE_ATTESTATION], claims, T0 + 2000, valid_until_ms=T0 + 10 * 86_400_000, status=issuer.status_entries(1, 7), credential_id=ids[1]),
        issuer.issue(dev.did, ["ExampleCredential"], {"name": "éè ☃"}, T0 + 3000, status=issuer.status_entries(1, 3), credential_id=ids[2]),
    )

    # A DID without controllers deactivated by its next key.
    lone, op = _create(led, "lone")
    ops.append(op)
    s = led.resolve(lone.did)
    submit(builder.sign(builder.deactivate(NET, lone.did, s.seq + 1, s.last, "retired", bytes(lone.next_key.verify_key)), [(builder.next_kid(lone.did), lone.next_key)]))
    states.extend([led.resolve(admin.did), led.resolve(admin2.did)])

    entries = tuple(entry_codec.encode(i, T0 + 1000 * i, op.payload, op.proofs) for i, op in enumerate(ops))
    return World(led, tuple(ops), entries, tuple(states), admin, issuer, tokens, lists)


# Tokens every JSON-ish dictionary shares.
JSON_TOKENS = ('{"', '":', '",', '"}', "[]", "{}", "null", "true", "false", "-0", "1e5", "0.5", "\\u0000", "\\ud800", "99999999999999999999", "9007199254740993")
DID_TOKENS = ("did:dnode:", "did:dnode:Qm", "#key-1", "#next", "#ka-1", "-jwk", "z6Mk", "z6LS")
