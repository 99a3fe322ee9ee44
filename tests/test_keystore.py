"""Tests of didnode.keystore: the client-side encrypted keystore of didctl.

All keystores here use kdf="interactive" (64 MiB, ~0.1 s) to stay fast.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from didnode.core.did import validate_key_id
from didnode.errors import (
    InvalidArgument,
    InvalidDid,
    KeyNotInKeystore,
    KeystoreCorrupted,
    KeystoreError,
    WrongPassphrase,
)
from didnode.keystore import (
    DidSecrets,
    KdfParams,
    Keystore,
    export_plain,
    export_sealed,
    import_plain,
    import_sealed,
    kdf_from_env,
)
from didnode.keystore import didsecrets as ks_secrets
from didnode.keystore import files as ks_mod

PASS = "correct horse battery staple"
DID_A = "did:dnode:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"
DID_B = "did:dnode:zQ3shtxV1FrJfhqE1dvxYRcCknWNjHc3c5X1y3ZSoPDi2aur2"


def make_secrets(did: str = DID_A, *, role: str = "device") -> DidSecrets:
    return DidSecrets(
        did=did,
        signing_keys={"key-1": os.urandom(32), "key-0": os.urandom(32)},
        next_key_id="key-2",
        next_key_seed=os.urandom(32),
        key_agreement_id="ka-1",
        key_agreement_key=os.urandom(32),
        labels={"role": role},
    )


def secret_byte_strings(s: DidSecrets) -> list[bytes]:
    out = list(s.signing_keys.values())
    out += [b for b in (s.next_key_seed, s.key_agreement_key) if b is not None]
    return out


@pytest.fixture
def store(tmp_path: Path) -> Keystore:
    return Keystore.open(tmp_path / "ks", PASS, create=True, kdf="interactive")


# --------------------------------------------------------------------------
# Opening
# --------------------------------------------------------------------------


def test_round_trip_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ks"
    secrets = make_secrets()
    with Keystore.open(path, PASS, create=True, kdf="interactive") as ks:
        ks.put(secrets)
        assert ks.get(DID_A) == secrets
    reopened = Keystore.open(path, PASS)
    got = reopened.get(DID_A)
    assert got == secrets
    assert got.signing_keys["key-1"] == secrets.signing_keys["key-1"]
    assert got.next_key_seed == secrets.next_key_seed
    assert got.key_agreement_key == secrets.key_agreement_key
    assert dict(got.labels) == {"role": "device"}
    # The helpers give working keys.
    sig = got.signing_key("key-1").sign(b"m")
    nacl.signing.SigningKey(secrets.signing_keys["key-1"]).verify_key.verify(sig)
    assert bytes(got.key_agreement_private_key()) == secrets.key_agreement_key
    assert bytes(got.next_signing_key()) == secrets.next_key_seed


def test_bytes_passphrase_and_nfc_normalization(tmp_path: Path) -> None:
    # "é" precomposed (NFC) vs e + combining acute (NFD) is the same passphrase.
    nfc, nfd = "caf\u00e9-pass", "cafe\u0301-pass"
    Keystore.open(tmp_path / "ks", nfd, create=True, kdf="interactive").put(make_secrets())
    assert Keystore.open(tmp_path / "ks", nfc).has(DID_A)
    assert Keystore.open(tmp_path / "ks", nfc.encode()).has(DID_A)


def test_wrong_passphrase_detected_at_open(tmp_path: Path) -> None:
    Keystore.open(tmp_path / "ks", PASS, create=True, kdf="interactive").put(make_secrets())
    with pytest.raises(WrongPassphrase, match="wrong passphrase for keystore") as info:
        Keystore.open(tmp_path / "ks", PASS + "x")
    assert str(tmp_path / "ks") in str(info.value)
    # create=True on an existing keystore opens it: still the passphrase check.
    with pytest.raises(WrongPassphrase):
        Keystore.open(tmp_path / "ks", "other", create=True, kdf="interactive")


def test_empty_passphrase_rejected(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="empty"):
        Keystore.open(tmp_path / "ks", "", create=True, kdf="interactive")
    assert not (tmp_path / "ks").exists()


def test_missing_keystore_without_create(tmp_path: Path) -> None:
    with pytest.raises(KeystoreError, match=r"no keystore at .*; create one with") as info:
        Keystore.open(tmp_path / "nope", PASS)
    assert type(info.value) is KeystoreError
    assert not (tmp_path / "nope").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(KeystoreError, match="holds no keystore.json"):
        Keystore.open(tmp_path / "empty", PASS)
    assert not Keystore.exists(tmp_path / "empty")


def test_create_refuses_dir_with_orphan_key_files(tmp_path: Path) -> None:
    (tmp_path / "ks").mkdir()
    (tmp_path / "ks" / "did_dnode_abc.key").write_text("{}")
    with pytest.raises(KeystoreCorrupted, match="no keystore.json"):
        Keystore.open(tmp_path / "ks", PASS, create=True, kdf="interactive")
    assert not (tmp_path / "ks" / "keystore.json").exists()


def test_kdf_params_stored_and_reused(tmp_path: Path) -> None:
    Keystore.open(tmp_path / "ks", PASS, create=True, kdf="interactive")
    header = json.loads((tmp_path / "ks" / "keystore.json").read_text())
    assert header["format"] == "didnode-keystore" and header["version"] == 1
    assert header["kdf"]["alg"] == "argon2id"
    assert (header["kdf"]["opslimit"], header["kdf"]["memlimit"]) == (
        KdfParams.named("interactive").opslimit,
        KdfParams.named("interactive").memlimit,
    )
    # Opening with the default ("moderate") uses the stored interactive cost.
    assert Keystore.open(tmp_path / "ks", PASS).kdf_params == KdfParams.named("interactive")


def test_unknown_kdf_name(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="unknown KDF cost 'fast'"):
        Keystore.open(tmp_path / "ks", PASS, create=True, kdf="fast")  # type: ignore[arg-type]


def test_kdf_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DIDCTL_KDF", raising=False)
    assert kdf_from_env() == "moderate"
    monkeypatch.setenv("DIDCTL_KDF", "interactive")
    assert kdf_from_env() == "interactive"
    monkeypatch.setenv("DIDCTL_KDF", "cheap")
    with pytest.raises(InvalidArgument, match="DIDCTL_KDF='cheap'"):
        kdf_from_env()


def test_tampered_header_params_rejected(tmp_path: Path) -> None:
    Keystore.open(tmp_path / "ks", PASS, create=True, kdf="interactive")
    header_path = tmp_path / "ks" / "keystore.json"
    header = json.loads(header_path.read_text())
    header["kdf"]["memlimit"] = 1 << 40  # a crafted header must not demand 1 TiB
    header_path.write_text(json.dumps(header))
    with pytest.raises(KeystoreCorrupted, match="memlimit"):
        Keystore.open(tmp_path / "ks", PASS)
    header_path.write_text("not json")
    with pytest.raises(KeystoreCorrupted, match="keystore.json"):
        Keystore.open(tmp_path / "ks", PASS)


def test_altered_salt_looks_like_wrong_passphrase(tmp_path: Path) -> None:
    Keystore.open(tmp_path / "ks", PASS, create=True, kdf="interactive")
    header_path = tmp_path / "ks" / "keystore.json"
    header = json.loads(header_path.read_text())
    header["kdf"]["salt"] = base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()
    header_path.write_text(json.dumps(header))
    with pytest.raises(WrongPassphrase):
        Keystore.open(tmp_path / "ks", PASS)


# --------------------------------------------------------------------------
# Files on disk
# --------------------------------------------------------------------------


def test_file_modes(tmp_path: Path) -> None:
    old = os.umask(0o022)  # a permissive umask must not loosen the modes
    try:
        ks = Keystore.open(tmp_path / "a" / "ks", PASS, create=True, kdf="interactive")
        ks.put(make_secrets())
        ks.put_many([make_secrets(DID_B)])
    finally:
        os.umask(old)
    root = tmp_path / "a" / "ks"
    assert stat.S_IMODE(root.stat().st_mode) == 0o700
    assert stat.S_IMODE((root / "keystore.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(ks.file_for(DID_A).stat().st_mode) == 0o600
    assert stat.S_IMODE(ks.file_for(DID_B).stat().st_mode) == 0o600


def test_existing_empty_dir_is_initialized_0700(tmp_path: Path) -> None:
    root = tmp_path / "ks"
    root.mkdir(mode=0o755)
    Keystore.open(root, PASS, create=True, kdf="interactive")
    assert stat.S_IMODE(root.stat().st_mode) == 0o700


def test_key_file_format_has_did_in_clear_and_no_secret(store: Keystore) -> None:
    secrets = make_secrets()
    store.put(secrets)
    path = store.file_for(DID_A)
    assert path.name == "did_dnode_" + DID_A.split(":")[2] + ".key"
    raw = path.read_bytes()
    doc = json.loads(raw)
    assert set(doc) == {"format", "version", "did", "box"}
    assert doc["did"] == DID_A and doc["format"] == "didnode-keystore-key"
    for secret in secret_byte_strings(secrets):
        assert secret not in raw
        assert base64.urlsafe_b64encode(secret).rstrip(b"=") not in raw
        assert secret.hex().encode() not in raw
    assert b"device" not in raw  # labels are inside the box too


def test_tampered_file(store: Keystore) -> None:
    store.put(make_secrets())
    path = store.file_for(DID_A)
    doc = json.loads(path.read_text())
    box = bytearray(base64.urlsafe_b64decode(doc["box"] + "=" * (-len(doc["box"]) % 4)))
    box[40] ^= 0x01
    doc["box"] = base64.urlsafe_b64encode(bytes(box)).rstrip(b"=").decode()
    path.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorrupted, match="does not decrypt") as info:
        store.get(DID_A)
    assert isinstance(info.value, KeystoreError)
    assert str(path) in str(info.value)
    path.write_text("garbage")
    with pytest.raises(KeystoreCorrupted, match=str(path.name)):
        store.get(DID_A)


def test_swapped_file_detected(store: Keystore) -> None:
    store.put(make_secrets(DID_A))
    store.put(make_secrets(DID_B))
    a, b = store.file_for(DID_A), store.file_for(DID_B)
    # Authentic file of B under A's name, clear DID edited to match.
    doc = json.loads(b.read_text())
    doc["did"] = DID_A
    a.write_text(json.dumps(doc))
    with pytest.raises(KeystoreCorrupted, match=f"holds the secrets of {DID_B}"):
        store.get(DID_A)
    # Unedited copy: the clear DID already disagrees with the name.
    a.write_bytes(b.read_bytes())
    with pytest.raises(KeystoreCorrupted, match="its file name is for"):
        store.get(DID_A)


def test_file_from_another_keystore_detected(tmp_path: Path, store: Keystore) -> None:
    other = Keystore.open(tmp_path / "other", PASS, create=True, kdf="interactive")
    other.put(make_secrets())
    store.file_for(DID_A).write_bytes(other.file_for(DID_A).read_bytes())
    with pytest.raises(KeystoreCorrupted, match="another keystore"):
        store.get(DID_A)


def test_interrupted_write_leaves_old_file_and_is_not_listed(store: Keystore, monkeypatch: pytest.MonkeyPatch) -> None:
    old = make_secrets()
    store.put(old)
    # 1. A crash after the temp file was written, before the rename: simulate
    #    the leftover (truncated garbage) temp file.
    leftover = store.path / f".{store.file_for(DID_A).name}.0123456789abcdef.tmp"
    leftover.write_bytes(b'{"format": "didnode-keysto')
    (store.path / ".keystore.json.0011223344556677.tmp").write_bytes(b"")
    assert store.list() == [DID_A]
    assert store.get(DID_A) == old

    # 2. The rename itself fails: old content survives, temp file removed.
    def failing_replace(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ks_mod.os, "replace", failing_replace)
    with pytest.raises(KeystoreError, match="No space left on device") as info:
        store.put(make_secrets())
    assert str(store.file_for(DID_A)) in str(info.value)
    monkeypatch.undo()
    assert store.get(DID_A) == old
    temps = sorted(p.name for p in store.path.iterdir() if p.name.endswith(".tmp"))
    assert temps == sorted([leftover.name, ".keystore.json.0011223344556677.tmp"])
    # A later put works despite the leftovers.
    new = make_secrets()
    store.put(new)
    assert store.get(DID_A) == new


# --------------------------------------------------------------------------
# Operations
# --------------------------------------------------------------------------


def test_missing_did(store: Keystore) -> None:
    with pytest.raises(KeyNotInKeystore, match=DID_A) as info:
        store.get(DID_A)
    assert info.value.details["did"] == DID_A
    assert not store.has(DID_A)
    with pytest.raises(KeyNotInKeystore, match=DID_A):
        store.delete(DID_A)


def test_invalid_did(store: Keystore) -> None:
    for bad in ["", "did:dnode:", "DID:dnode:abc", "did:dnode:a b", "did:dnode:abc#key-1", "../../etc/passwd"]:
        with pytest.raises(InvalidDid):
            store.get(bad)


def test_overwrite(store: Keystore) -> None:
    first, second = make_secrets(role="first"), make_secrets(role="second")
    store.put(first)
    store.put(second)
    assert store.get(DID_A) == second
    assert store.list() == [DID_A]


def test_list_has_delete(store: Keystore) -> None:
    assert store.list() == []
    store.put(make_secrets(DID_B))
    store.put(make_secrets(DID_A))
    odd = "did:example:a_b%20c:d"  # '_' and '%' escape reversibly
    store.put(make_secrets(odd))
    (store.path / "notes.txt").write_text("x")
    (store.path / "stray.key").write_text("x")  # not the encoding of a DID
    assert store.list() == sorted([DID_A, DID_B, odd])
    assert store.has(DID_A) and store.has(odd)
    assert store.get(odd).did == odd
    store.delete(DID_A)
    assert not store.has(DID_A)
    assert store.list() == sorted([DID_B, odd])


def test_put_many_2000(store: Keystore) -> None:
    items = [
        DidSecrets(
            did=f"did:dnode:z{i:06d}",
            next_key_id="key-2",
            next_key_seed=os.urandom(32),
            labels={"role": "manufacturer-recovery"},
        )
        for i in range(2000)
    ]
    seen: list[int] = []
    start = time.perf_counter()
    written = store.put_many(iter(items), progress=seen.append)
    elapsed = time.perf_counter() - start
    print(f"\nput_many(2000) took {elapsed:.3f}s ({2000 / elapsed:.0f} files/s)")
    assert written == 2000
    assert seen[-1] == 2000 and seen == sorted(seen)
    assert store.list() == sorted(s.did for s in items)
    for s in items[::97]:
        assert store.get(s.did) == s
    assert not [p for p in store.path.iterdir() if p.name.endswith(".tmp")]


def test_put_many_last_duplicate_wins_and_bad_item(store: Keystore) -> None:
    a1, a2, b = make_secrets(role="a1"), make_secrets(role="a2"), make_secrets(DID_B)
    assert store.put_many([a1, a2], chunk_size=10) == 1
    assert store.get(DID_A) == a2
    store.delete(DID_A)
    with pytest.raises(InvalidArgument, match="not dict"):
        store.put_many([a1, b, {"did": DID_A}], chunk_size=10)  # type: ignore[list-item]
    # The items before the bad one were stored.
    assert store.list() == sorted([DID_A, DID_B])


def test_closed_keystore(store: Keystore) -> None:
    store.put(make_secrets())
    store.close()
    with pytest.raises(KeystoreError, match="is closed"):
        store.get(DID_A)
    assert "closed" in repr(store)


# --------------------------------------------------------------------------
# DidSecrets
# --------------------------------------------------------------------------


def test_repr_and_str_do_not_leak(store: Keystore) -> None:
    secrets = make_secrets()
    for text in (repr(secrets), str(secrets), f"{secrets}", repr([secrets]), repr(store)):
        for secret in secret_byte_strings(secrets):
            assert repr(secret)[2:-1] not in text
            assert secret.hex() not in text
            assert base64.urlsafe_b64encode(secret).rstrip(b"=").decode() not in text
    assert "key-1" in repr(secrets) and "<redacted>" in repr(secrets)


def test_didsecrets_validation() -> None:
    with pytest.raises(InvalidArgument, match="32 bytes, got 31"):
        DidSecrets(did=DID_A, signing_keys={"key-1": b"\x00" * 31})
    with pytest.raises(InvalidArgument, match="set together"):
        DidSecrets(did=DID_A, next_key_id="key-2")
    with pytest.raises(InvalidArgument, match="no secret"):
        DidSecrets(did=DID_A)
    with pytest.raises(InvalidArgument, match="not unique"):
        DidSecrets(did=DID_A, signing_keys={"key-1": bytes(32)}, next_key_id="key-1", next_key_seed=bytes(32))
    with pytest.raises(InvalidArgument, match="bad key id"):
        DidSecrets(did=DID_A, signing_keys={"#key-1": bytes(32)})
    with pytest.raises(InvalidDid):
        DidSecrets(did="dnode:abc", signing_keys={"key-1": bytes(32)})
    s = DidSecrets(did=DID_A, signing_keys={"key-1": bytearray(32)})
    assert type(s.signing_keys["key-1"]) is bytes
    with pytest.raises(TypeError):
        s.signing_keys["key-2"] = bytes(32)  # type: ignore[index]
    with pytest.raises(KeyNotInKeystore, match="key-9"):
        s.signing_key("key-9")
    with pytest.raises(KeyNotInKeystore, match="next"):
        s.next_signing_key()


# One key-id syntax: the ledger's (didnode.core.did.KEY_ID_RE). The first three
# were accepted by the keystore's own, looser rule, under ids no operation can name.
@pytest.mark.parametrize(
    "key_id",
    ["key.1", "key~1", "k" * 33, "#key-1", "key 1", "k\u00e9y-1", ""],
    ids=["dot", "tilde", "33-chars", "fragment", "space", "non-ascii", "empty"],
)
def test_key_id_the_ledger_rejects_is_refused(key_id: str, store: Keystore) -> None:
    with pytest.raises(InvalidDid):
        validate_key_id(key_id)  # the ledger refuses it
    for fields in (
        {"signing_keys": {key_id: bytes(32)}},
        {"next_key_id": key_id, "next_key_seed": bytes(32)},
        {"key_agreement_id": key_id, "key_agreement_key": bytes(32)},
    ):
        with pytest.raises(InvalidArgument, match="bad key id"):
            DidSecrets(did=DID_A, **fields)  # type: ignore[arg-type]
    # Nor does it come in through an import.
    plain = export_plain(DidSecrets(did=DID_A, signing_keys={"key-1": bytes(32)}))
    plain["signing_keys"] = {key_id: plain["signing_keys"]["key-1"]}
    with pytest.raises(InvalidArgument, match="bad key id"):
        import_plain(plain)
    assert store.list() == []


def test_key_id_the_ledger_accepts_is_stored(store: Keystore) -> None:
    for key_id in ("_key", "-1", "k" * 32, "KEY_1", "next"):  # the first two were refused before
        validate_key_id(key_id)
        secrets = DidSecrets(did=DID_A, signing_keys={key_id: os.urandom(32)})
        store.put(secrets)
        assert store.get(DID_A) == secrets


@settings(max_examples=300, deadline=None)
@given(key_id=st.one_of(st.text(max_size=40), st.text(alphabet="aZ09_-.~#:%", max_size=40)))
def test_keystore_and_ledger_agree_on_key_ids(key_id: str) -> None:
    try:
        validate_key_id(key_id)
        ledger_accepts = True
    except InvalidDid:
        ledger_accepts = False
    try:
        DidSecrets(did=DID_A, signing_keys={key_id: bytes(32)})
        keystore_accepts = True
    except InvalidArgument:
        keystore_accepts = False
    assert keystore_accepts == ledger_accepts


# --------------------------------------------------------------------------
# Exports
# --------------------------------------------------------------------------


def test_sealed_round_trip_and_wrong_passphrase() -> None:
    secrets = make_secrets()
    blob = export_sealed(secrets, "device-pass", kdf="interactive")
    doc = json.loads(blob)
    assert doc["format"] == "didnode-sealed-secrets" and doc["did"] == DID_A
    for secret in secret_byte_strings(secrets):
        assert secret not in blob and base64.urlsafe_b64encode(secret).rstrip(b"=") not in blob
    assert import_sealed(blob, "device-pass") == secrets
    assert import_sealed(blob, b"device-pass") == secrets
    with pytest.raises(WrongPassphrase, match=DID_A):
        import_sealed(blob, "wrong")
    # Two exports of the same secrets differ (fresh salt and nonce).
    assert export_sealed(secrets, "device-pass", kdf="interactive") != blob


def test_sealed_tampering() -> None:
    blob = export_sealed(make_secrets(), "device-pass", kdf="interactive")
    doc = json.loads(blob)
    relabelled = dict(doc, did=DID_B)
    with pytest.raises(KeystoreCorrupted, match=f"labelled '{DID_B}'"):
        import_sealed(json.dumps(relabelled).encode(), "device-pass")
    with pytest.raises(KeystoreCorrupted, match="version"):
        import_sealed(json.dumps(dict(doc, version=2)).encode(), "device-pass")
    with pytest.raises(KeystoreCorrupted, match="opslimit"):
        import_sealed(json.dumps(dict(doc, kdf=dict(doc["kdf"], opslimit=10**9))).encode(), "device-pass")
    with pytest.raises(KeystoreCorrupted, match="not UTF-8 JSON"):
        import_sealed(blob[:-5], "device-pass")


def test_plain_export_round_trip() -> None:
    secrets = make_secrets()
    plain = export_plain(secrets)
    assert plain["format"] == "didnode-secrets" and plain["did"] == DID_A
    assert plain["next_key"]["id"] == "key-2"
    assert import_plain(json.loads(json.dumps(plain))) == secrets
    with pytest.raises(InvalidArgument, match="not canonical base64url|not unpadded"):
        import_plain(dict(plain, signing_keys={"key-1": plain["signing_keys"]["key-1"] + "="}))


# --------------------------------------------------------------------------
# File-name encoding
# --------------------------------------------------------------------------

_DID_CHARS = st.sampled_from(list("abcXYZ019._-:") + ["%20", "%3A", "%5f"])


@settings(max_examples=300, deadline=None)
@given(
    method=st.from_regex(r"[a-z0-9]{1,8}", fullmatch=True),
    body=st.lists(_DID_CHARS, min_size=1, max_size=30).map("".join),
)
def test_filename_encoding_is_reversible(method: str, body: str) -> None:
    did = f"did:{method}:{body}"
    if ks_secrets._DID_RE.fullmatch(did) is None:
        return  # e.g. ends with ':'; not a DID
    stem = ks_mod._did_stem(did)
    assert not stem.startswith(".")
    assert set(stem) <= set(ks_mod._FILENAME_SAFE) | {"_", "%"}
    assert ks_mod._stem_to_did(stem) == did
