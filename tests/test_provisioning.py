"""didnode.provisioning without a node: the fast encoders against the reference ones, bundles, the journal, input files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from nacl.bindings import crypto_scalarmult_base
from nacl.public import PrivateKey
from nacl.signing import SigningKey

from didnode.core.credentials import DEVICE_ATTESTATION, Issuer, device_attestation_claims
from didnode.core.encoding import X25519_PUB, multikey_encode
from didnode.core.operations import next_commitment
from didnode.errors import BundleInvalid, DeviceKeyFileInvalid, InvalidArgument, JournalCorrupted, RunLocked, WrongPassphrase
from didnode.keystore import DidSecrets, KdfParams, Keystore, export_plain
from didnode.provisioning.attestation import AttestationBatch
from didnode.provisioning.bundle import BundleOpener, Sealer, secrets_json
from didnode.provisioning.devices import FastCreate, create_signing_bytes, device_create, read_public_keys
from didnode.provisioning.journal import Journal

MFR = "did:dnode:QmcBg5HTpiyCcZAep28Rjk5mx9qGjqzxz8Z7rFCbxMkrfE"
DEV = "did:dnode:QmW3YaLxnmQ4SWHngSfjRnmuQ8ahLozrpbSGNiqkWxkRxz"


def test_fast_create_is_the_canonical_create() -> None:
    fast = FastCreate("factory-7", MFR)
    for i in range(200):
        auth, nxt = os.urandom(32), os.urandom(32)
        ka = crypto_scalarmult_base(os.urandom(32)) if i % 2 else None
        commitment = next_commitment(nxt)
        assert fast.payload(auth, commitment, ka) == device_create("factory-7", MFR, auth, commitment, ka).payload


def test_attestation_batch_matches_issuer() -> None:
    key = SigningKey.generate()
    issuer = Issuer(MFR, "key-1", key)
    batch = AttestationBatch(issuer, key, 'Sensor "X1", rev ü', "rev-b", "1.4.2", 1_750_000_000_123)
    for i, (serial, number, index) in enumerate((("SN-1", 1, 0), ("SN-000042", 2, 131071), ("a.b_c-9", 17, 5))):
        token = batch.issue(DEV, serial, f"urn:uuid:0000000{i}-0000-5000-8000-000000000000", number, index)
        claims = device_attestation_claims('Sensor "X1", rev ü', serial, "rev-b", "1.4.2", 1_750_000_000_123)
        ref = issuer.issue(
            DEV, [DEVICE_ATTESTATION], claims, 1_750_000_000_123, status=issuer.status_entries(number, index),
            credential_id=f"urn:uuid:0000000{i}-0000-5000-8000-000000000000",
        )
        assert token == ref
    assert batch._parts is not None  # the fast path was used, not the fallback


def test_alloc_records_replay_random_and_sequential_allocations(tmp_path: Path) -> None:
    from didnode.client import Allocation, Receipt
    from didnode.core.credentials.allocation import AllocationRecord
    from didnode.provisioning.chunks import alloc_record, alloc_statuses

    record = AllocationRecord(bytes(range(32)), 131_072, 40)
    a = Allocation(3, record, 30, 10, Receipt(17, 0, b"", MFR, "publish", 4))
    journaled = json.loads(json.dumps(alloc_record(a)))  # as the journal stores it
    assert alloc_statuses(journaled, tmp_path) == [(3, i) for i in a.indices] and len(set(a.indices)) == 10
    assert alloc_statuses({"t": "alloc", "list": 1, "first": 5, "count": 3, "position": 9}, tmp_path) == [(1, 5), (1, 6), (1, 7)]  # runs before random allocation
    for bad in ({**journaled, "perm": "zz"}, {**journaled, "size": 7}, {**journaled, "count": 10**6}, {"t": "alloc", "list": 1}):
        with pytest.raises(JournalCorrupted):
            alloc_statuses(bad, tmp_path)


def test_secrets_json_is_the_keystore_format() -> None:
    auth, ka = os.urandom(32), os.urandom(32)
    ref = export_plain(DidSecrets(did=DEV, signing_keys={"key-1": auth}, key_agreement_id="ka-1", key_agreement_key=ka))
    assert json.loads(secrets_json(DEV, auth, ka)) == ref
    ref2 = export_plain(DidSecrets(did=DEV, signing_keys={"key-1": auth}))
    assert json.loads(secrets_json(DEV, auth, None)) == ref2


@pytest.mark.parametrize("mode", ["passphrase", "recipient", "none"])
def test_bundle_keys_round_trip(mode: str) -> None:
    auth, ka = os.urandom(32), os.urandom(32)
    station = PrivateKey.generate()
    if mode == "passphrase":
        sealer = Sealer.passphrase("line 3 secret", os.urandom(16), KdfParams.named("interactive"))
        opener = BundleOpener(passphrase="line 3 secret")
        wrong = BundleOpener(passphrase="line 4 secret")
    elif mode == "recipient":
        sealer = Sealer.recipient(multikey_encode(bytes(station.public_key), X25519_PUB))
        opener = BundleOpener(private_key=bytes(station))
        wrong = BundleOpener(private_key=bytes(PrivateKey.generate()))
    else:
        sealer, opener, wrong = Sealer.plain(), BundleOpener(), BundleOpener()
    bundle = {
        "format": "didnode-device-bundle", "version": 1, "serial": "SN-1", "did": DEV, "manufacturer": MFR,
        "credential": "x.y.z", "network": "local", "node": "127.0.0.1:1", "keys": sealer.seal(DEV, secrets_json(DEV, auth, ka)),
    }
    secrets = opener.open(bundle)
    assert secrets is not None and secrets.signing_keys["key-1"] == auth and secrets.key_agreement_key == ka
    assert secrets.next_key_seed is None  # the next key never travels in a bundle
    if mode != "none":
        with pytest.raises(WrongPassphrase):
            wrong.open(bundle)
        # A box moved into another device's bundle does not open (passphrase: per-DID key) or names the other DID.
        other = {**bundle, "did": MFR}
        with pytest.raises((WrongPassphrase, BundleInvalid)):
            opener.open(other)
    with pytest.raises(BundleInvalid):
        opener.open({**bundle, "version": 2})


def test_opening_a_run_costs_one_argon2id() -> None:
    sealer = Sealer.passphrase("pw", os.urandom(16), KdfParams.named("interactive"))
    opener = BundleOpener(passphrase="pw")
    for i in range(20):
        auth = os.urandom(32)
        b = {"format": "didnode-device-bundle", "version": 1, "serial": f"S{i}", "did": DEV, "manufacturer": MFR,
             "credential": "t", "network": "n", "node": "a", "keys": sealer.seal(DEV, secrets_json(DEV, auth, None))}
        assert opener.open(b).signing_keys["key-1"] == auth  # type: ignore[union-attr]
    assert len(opener._run_keys) == 1


def test_journal_drops_a_torn_tail_and_locks(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with Journal.open(path) as j:
        j.append({"t": "run", "n": 1})
        j.append({"t": "plan", "n": 2})
        with pytest.raises(RunLocked):
            Journal.open(path)
    with open(path, "ab") as f:
        f.write(b'{"t":"done","n":')  # killed mid-append
    with Journal.open(path) as j:
        assert [r["n"] for r in j.records] == [1, 2] and j.dropped_tail
        j.append({"t": "done", "n": 3})
    with Journal.open(path) as j:
        assert [r["n"] for r in j.records] == [1, 2, 3] and not j.dropped_tail
    data = path.read_bytes().replace(b'"n":2', b'"n":2,,')
    path.write_bytes(data)
    with pytest.raises(JournalCorrupted):
        Journal.open(path)


def test_purpose_keys(tmp_path: Path) -> None:
    ks = Keystore.open(tmp_path / "ks", "pw", create=True, kdf="interactive")
    a = ks.purpose_key("didctl-provision-journal:1")
    assert len(a) == 32 and a != ks.purpose_key("didctl-provision-journal:2")
    ks.close()
    again = Keystore.open(tmp_path / "ks", "pw")
    assert again.purpose_key("didctl-provision-journal:1") == a
    with pytest.raises(InvalidArgument):
        again.purpose_key("")


def _device_line(network: str, serial: str, with_ka: bool, commit_only: bool) -> tuple[dict[str, str], str]:
    import base64

    auth, nxt = SigningKey.generate(), SigningKey.generate()
    ka = PrivateKey.generate() if with_ka else None
    ka_pub = bytes(ka.public_key) if ka else None
    commitment = next_commitment(bytes(nxt.verify_key))
    sig = auth.sign(create_signing_bytes(network, MFR, bytes(auth.verify_key), commitment, ka_pub)).signature
    row = {"serial": serial, "authenticationKey": multikey_encode(bytes(auth.verify_key)), "createSignature": base64.urlsafe_b64encode(sig).rstrip(b"=").decode()}
    if ka_pub:
        row["keyAgreementKey"] = multikey_encode(ka_pub, X25519_PUB)
    if commit_only:
        row["nextKeyCommitment"] = commitment
    else:
        row["nextKey"] = multikey_encode(bytes(nxt.verify_key))
    return row, device_create(network, MFR, bytes(auth.verify_key), commitment, ka_pub).did


def test_public_key_files_json_lines_and_csv(tmp_path: Path) -> None:
    lines = [_device_line("local", f"D{i}", i % 2 == 0, i % 3 == 0) for i in range(6)]
    jl = tmp_path / "keys.jsonl"
    jl.write_text("# from line 3\n" + "\n".join(json.dumps(r) for r, _ in lines) + "\n\n")
    devs = read_public_keys(jl, "local", MFR)
    assert [d.serial for d in devs] == [f"D{i}" for i in range(6)]
    cols = ["serial", "authenticationKey", "keyAgreementKey", "nextKeyCommitment", "nextKey", "createSignature"]
    csv_path = tmp_path / "keys.csv"
    csv_path.write_text(",".join(cols) + "\n" + "".join(",".join(r.get(c, "") for c in cols) + "\n" for r, _ in lines))
    from_csv = read_public_keys(csv_path, "local", MFR)
    strip = [(d.serial, d.auth_public, d.ka_public, d.commitment, d.signature) for d in from_csv]
    assert strip == [(d.serial, d.auth_public, d.ka_public, d.commitment, d.signature) for d in devs]
    assert [d.line for d in from_csv] == list(range(2, 8))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda r: r.update(createSignature=r["createSignature"][:-2] + ("AA" if r["createSignature"][-2:] != "AA" else "AQ")), "does not verify"),
        (lambda r: r.pop("createSignature"), "createSignature is required"),
        (lambda r: r.update(serial="bad serial!"), "serial"),
        (lambda r: r.update(authenticationKey="z6Mkbad"), "line 2"),
        (lambda r: r.update(nextKeyCommitment="ab" * 32), "exactly one of"),
        (lambda r: r.update(extra="1"), "unknown member"),
    ],
)
def test_public_key_file_errors_name_the_line(tmp_path: Path, change: object, message: str) -> None:
    good, _ = _device_line("local", "D0", True, False)
    bad, _ = _device_line("local", "D1", False, False)
    change(bad)  # type: ignore[operator]
    path = tmp_path / "k.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(DeviceKeyFileInvalid) as exc:
        read_public_keys(path, "local", MFR)
    assert ":2:" in str(exc.value) and message.replace("line 2", ":2:") in str(exc.value)


def test_public_key_file_rejects_repeats_and_other_networks(tmp_path: Path) -> None:
    row, _ = _device_line("local", "D0", True, False)
    path = tmp_path / "k.jsonl"
    path.write_text(json.dumps(row) + "\n" + json.dumps({**row, "serial": "D9"}) + "\n")
    with pytest.raises(DeviceKeyFileInvalid, match="authenticationKey repeats line 1"):
        read_public_keys(path, "local", MFR)
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(DeviceKeyFileInvalid, match="does not verify"):
        read_public_keys(path, "other-net", MFR)


def test_keystore_batch_durability(tmp_path: Path) -> None:
    ks = Keystore.open(tmp_path / "ks", "pw", create=True, kdf="interactive")
    dids = [device_create("local", MFR, os.urandom(32), next_commitment(os.urandom(32))).did for _ in range(40)]
    seeds = [os.urandom(32) for _ in dids]
    seen: list[int] = []
    n = ks.put_many(
        (DidSecrets(did=d, next_key_id="next", next_key_seed=s, labels={"role": "device-recovery"}) for d, s in zip(dids, seeds)),
        chunk_size=16, workers=3, durability="batch", progress=seen.append,
    )  # fmt: skip
    assert n == 40 and seen == [16, 32, 40]
    assert [ks.get(d).next_key_seed for d in dids] == seeds
    assert not [p for p in (tmp_path / "ks").iterdir() if p.name.endswith(".tmp")]
    with pytest.raises(InvalidArgument):
        ks.put_many([], durability="eventually")  # type: ignore[arg-type]
